import Foundation
import UpkeepCore
import UpkeepHTTP
import UpkeepKube
import UpkeepPKI
import UpkeepPOSIX
import UpkeepStore
import UpkeepTLS
import UpkeepUpdates

/// One `upkeep check`: builds the release source and the Kubernetes client from the
/// configuration (the file with the options' overrides), reads, plans, prints, records, and
/// returns the exit code. Every outcome, failures included, is recorded in the history.
struct CheckRun {
    let config: ControllerConfig
    let options: CheckOptions
    let components: Set<Component>
    let format: OutputFormat
    /// Where to tell of updates found (`update.available`, once per component and version); nil: nowhere.
    var notifications: StateStore? = nil
    /// Print the report (and a failure) as `upkeep check` does; `serve` logs its own lines.
    var echo = true

    /// Connections opened on the way, closed at the end whatever happened.
    private struct Connections {
        var http: HTTPClient?
        var kube: KubeClient?
    }

    func execute() async -> Int32 {
        await run().code
    }

    /// The exit code, and the report when the check succeeded (else why it failed).
    func run() async -> (code: Int32, report: CheckReport?, failure: String?) {
        var connections = Connections()
        var report: CheckReport?
        var failure: String?
        let code = await perform(&connections, report: &report, failure: &failure)
        await connections.http?.shutdown()
        await connections.kube?.shutdown()
        return (code, report, failure)
    }

    private func perform(_ connections: inout Connections, report answer: inout CheckReport?, failure: inout String?) async -> Int32 {
        let stateDirectory = config.resolvedStateDirectory()
        let history = JSONLinesCheckHistory(stateDirectory: stateDirectory)
        let started = HTTPDate.iso8601(HTTPClock.system.now())
        var sourceName = config.releases.mirror.map { "mirror \($0)" } ?? "GitHub (\(config.releases.githubAPI))"
        do {
            try ReleaseAccess.ensureStateDirectory(stateDirectory)
            let access = ReleaseAccess(config.releases, timeoutSeconds: options.timeoutSeconds, userAgent: "upkeep-check/0.1")
            let http = try access.makeHTTPClient(stateDirectory: stateDirectory)
            connections.http = http
            let source = try access.makeSource(client: http)
            sourceName = source.description
            let cluster = try makeKubeClient()
            connections.kube = cluster
            let installed = try await ClusterInventory(client: cluster).read(components)
            let table = try compatibilityTable()
            let settings = CheckSettings(components: components, channel: options.channel,
                                         filter: ReleaseFilter(includePreReleases: options.preReleases, includeDrafts: options.drafts))
            let report = try await UpdateChecker(source: source, compatibility: table).check(installed: installed, settings: settings)
            let code = report.updatesAvailable ? CheckExitCode.updatesAvailable : CheckExitCode.upToDate
            if echo { print(render(report), terminator: "") }
            answer = report
            notifyUpdates(report)
            do {
                try history.record(CheckRecord(report: report, exitCode: code))
            } catch {
                failure = "\(error)"
                return fail(error, code: CheckExitCode.history, printJSON: false)
            }
            return code
        } catch {
            let code = CheckExitCode.code(for: error)
            try? history.record(.failure(checkedAt: started, exitCode: code, releaseSource: sourceName, error: "\(error)"))
            failure = "\(error)"
            return fail(error, code: code, printJSON: format == .json)
        }
    }

    /// One `update.available` per component and target version, however often checks find it.
    private func notifyUpdates(_ report: CheckReport) {
        guard let store = notifications else { return }
        for component in report.components where component.updateAvailable {
            guard let target = component.target else { continue }
            let installed = component.installed.version?.description ?? component.installed.state.rawValue
            let name = component.component.rawValue
            do {
                try store.emit(.updateAvailable, summary: "\(name) \(target) is available (installed: \(installed)); `upkeep plan` shows the path",
                               details: ["component": name, "installed": installed, "available": target.description,
                                         "hops": "\(component.path.count)"],
                               once: "update.available \(name) \(target)", now: .wallClockNow())
            } catch {
                fflush(nil)  // every stream: what went to stdout before goes out first
                FileHandle.standardError.write(Data("warning: cannot record the update.available notification: \(error)\n".utf8))
            }
        }
    }

    private func render(_ report: CheckReport) -> String {
        switch format {
        case .table:
            return ReportTable.render(report)
        case .json:
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            return String(decoding: (try? encoder.encode(report)) ?? Data(), as: UTF8.self) + "\n"
        }
    }

    /// Says what went wrong on stderr (and, for `-o json`, as a JSON object on stdout).
    private func fail(_ error: any Error, code: Int32, printJSON: Bool) -> Int32 {
        guard echo else { return code }
        fflush(nil)  // every stream: what went to stdout before goes out first
        FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
        if printJSON {
            let object: [String: Any] = ["schemaVersion": CheckReport.currentSchemaVersion, "error": ["exitCode": code, "message": "\(error)"]]
            if let data = try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]) {
                print(String(decoding: data, as: UTF8.self))
            }
        }
        return code
    }

    private func makeKubeClient() throws -> KubeClient {
        do {
            return try KubeClient(kubeconfig: config.kubeconfig, context: config.context)
        } catch {
            throw ClusterReadError(problem: "\(error)")
        }
    }

    private func compatibilityTable() throws -> CompatibilityTable {
        guard let path = options.compatibility else { return .builtIn }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CheckConfigurationError(description: "cannot read the compatibility file \(path)")
        }
        do {
            return CompatibilityTable.builtIn.replacing(with: try CompatibilityTable.entries(fromJSON: Array(data), source: path))
        } catch {
            throw CheckConfigurationError(description: "\(error)")
        }
    }
}
