import ArgumentParser
import Foundation
import NIOConcurrencyHelpers
import UpkeepCore
import UpkeepFleet
import UpkeepHTTP
import UpkeepHTTPServer
import UpkeepKube
import UpkeepNotify
import UpkeepStore
import UpkeepUpdates
import UpkeepPOSIX

enum MetricsSource {
    static let version = Upkeep.configuration.version

    /// The exposition for the state directory of `config`; with `limits`, the bounds the
    /// running serve reached too.
    static func exposition(_ config: ControllerConfig, limits: ServeLimits = ServeLimits()) throws -> String {
        let store = try openStateStore(config)
        let checks = JSONLinesCheckHistory(stateDirectory: config.resolvedStateDirectory())
        var snapshot: MetricsSnapshot
        do {
            snapshot = try MetricsSnapshot.gather(store: store, checks: checks, now: .wallClockNow(), sinks: config.notifications.map(\.key))
        } catch {
            throw CommandFailure(code: RolloutExitCode.state, message: error.description)
        }
        snapshot.certificateExpiries = try certificateExpiries(config)
        return snapshot.exposition(version: version, limits: limits)
    }
}

extension MetricsSource {
    /// notAfter of every unrevoked certificate `pki status` lists, by identity; when two files
    /// hold the same identity (a copy beside upkeep.yaml), the earlier expiry counts.
    static func certificateExpiries(_ config: ControllerConfig) throws -> [String: Double] {
        var expiries: [String: Double] = [:]
        let inventory: PKIInventory
        do { inventory = try PKIInventory.read(directory: nil, config: config) } catch {
            throw CommandFailure(code: RolloutExitCode.usage, message: "pki: \(error)")
        }
        for entry in inventory.entries where !entry.revoked {
            guard let notAfter = entry.notAfter?.timeIntervalSince1970 else { continue }
            expiries[entry.identity] = min(expiries[entry.identity] ?? notAfter, notAfter)
        }
        return expiries
    }
}

/// `upkeep metrics`: the Prometheus exposition once, for node_exporter's textfile collector; or,
/// with `--query`, one PromQL instant query against the configured Prometheus.
struct Metrics: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print Upkeep's Prometheus metrics once (rollouts, updates, node upgrades, backups, the last check), or write them to a file; "
            + "or run a PromQL query against Prometheus.",
        discussion: "For node_exporter's textfile collector: `upkeep metrics --output /var/lib/node_exporter/textfile/upkeep.prom` from a timer. "
            + "`upkeep serve` serves the same over HTTP. docs/metrics.md lists the metrics. "
            + "With --query: an instant query to gates.prometheus.url (or --prometheus), printed as a table or as JSON (Prometheus's `data`); "
            + "exit 0 with a result, 1 when it matched nothing, 2 for a query Prometheus refused (its error shown) or bad usage, "
            + "8 when Prometheus cannot be reached or cannot answer. docs/metrics.md, \"Queries\"."
    )

    @OptionGroup var configOption: ConfigOption

    @Option(name: .shortAndLong, help: ArgumentHelp("Without --query: write to this file (atomically, mode 0644) instead of standard output. "
                                                    + "With --query: table (default) or json.", valueName: "PATH|FORMAT"))
    var output: String?

    @Option(name: .long, help: ArgumentHelp("Run this PromQL instant query against Prometheus and print its result.", valueName: "PROMQL"))
    var query: String?

    @Option(name: .long, help: ArgumentHelp("With --query: evaluate at this time, RFC 3339 or Unix seconds (default: Prometheus's now).", valueName: "TIME"))
    var time: String?

    @Option(name: .long, help: ArgumentHelp("With --query: Prometheus's base URL (default: gates.prometheus.url).", valueName: "URL"))
    var prometheus: String?

    @Option(name: .customLong("timeout"), help: ArgumentHelp("With --query: bound on the query, 1-120 s (default: gates.prometheus.timeout, else 10).",
                                                             valueName: "SECONDS"))
    var timeoutSeconds: Int?

    func validate() throws {
        guard query != nil else {
            if time != nil || prometheus != nil || timeoutSeconds != nil { throw ValidationError("--time, --prometheus and --timeout go with --query") }
            return
        }
        if let output, OutputFormat(rawValue: output) == nil {
            throw ValidationError("with --query, -o is table or json (not \(output)); redirect standard output to keep the result in a file")
        }
        if query?.trimmingCharacters(in: .whitespaces).isEmpty == true { throw ValidationError("--query is empty") }
        if let time, !PrometheusQuery.isTime(time) {
            throw ValidationError("--time \(time): write RFC 3339 (2026-12-07T10:00:00Z) or Unix seconds (1796637600)")
        }
        if let timeoutSeconds, !(1...120).contains(timeoutSeconds) { throw ValidationError("--timeout must be 1...120 seconds") }
    }

    func run() async throws {
        let config = try configOption.load()
        guard let query else {
            let text = try MetricsSource.exposition(config)
            guard let output else {
                print(text, terminator: "")
                return
            }
            try writeReplacing(output, with: text)
            return
        }
        let gate = config.gates.prometheus
        guard let base = prometheus ?? gate?.url else { throw CommandFailure(code: RolloutExitCode.usage, message: "\(PrometheusQueryError.notConfigured)") }
        let request = PrometheusQuery(base: base, query: query, time: time, timeoutSeconds: timeoutSeconds ?? gate?.timeoutSeconds ?? 10)
        let result: PrometheusResult
        do {
            // The gate's CA file only for the gate's own server.
            result = try await request.run(caFile: prometheus == nil ? gate?.caFile : nil)
        } catch {
            throw CommandFailure(code: error.exitCode, message: error.description)
        }
        for warning in result.warnings { FileHandle.standardError.write(Data("warning: Prometheus: \(warning)\n".utf8)) }
        if output == OutputFormat.json.rawValue {
            print(result.data.description)
        } else if !result.isEmpty {
            print(result.table(), terminator: "")
        }
        if result.isEmpty {
            throw CommandFailure(code: 1, message: "the query matched nothing\(time.map { " at \($0)" } ?? ""): no series has samples "
                                     + "(check the metric's name and labels, e.g. --query 'count by (__name__) ({__name__=~\"upkeep_.*\"})')")
        }
    }
}

extension PrometheusQuery {
    /// Asks Prometheus once, with a client of its own (no retry), https trusting `caFile`'s CAs or the system's.
    func run(caFile: String?) async throws(PrometheusQueryError) -> PrometheusResult {
        let request = try request()
        let url = request.url.description
        let client: HTTPClient
        do {
            client = try HTTPClient.oneShot(caFile: caFile, timeoutSeconds: timeoutSeconds, responseBytesMax: Self.responseBytesMax)
        } catch {
            throw .unusableURL(base, "gates.prometheus.caFile: \(error)")
        }
        let response: HTTPResponse
        do {
            response = try await client.send(request)
        } catch let error as HTTPClientError {
            await client.shutdown()
            if case .responseTooLarge = error { throw .tooLarge(url: url, bytesMax: Self.responseBytesMax) }
            throw .unreachable(url: url, reason: "\(error)")
        } catch {
            await client.shutdown()
            throw .unreachable(url: url, reason: "\(error)")
        }
        await client.shutdown()
        return try Self.answer(status: response.status, body: response.body, url: url)
    }
}
