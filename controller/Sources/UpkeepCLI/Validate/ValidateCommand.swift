import ArgumentParser
import UpkeepCore
import UpkeepFleet
import UpkeepRollout
import UpkeepStore
import UpkeepYAML

/// `upkeep validate`: the cluster's health on demand, each check with its verdict, evidence and
/// what to do (docs/validate.md). Reads only; the verdicts are `ValidationVerdicts`'.
struct ValidateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Check the cluster's health: nodes, versions, cordons, etcd; --flux, --storage (Longhorn), --networking, --applications, --post-update.",
        discussion: "Each check prints its verdict, the evidence and what to do. A check that cannot read what it judges is unknown, "
            + "which counts as unhealthy. Exit codes: 0 every check healthy, 1 some check unhealthy or unknown, 2 usage or configuration."
    )

    @OptionGroup var configOption: ConfigOption

    @Flag(help: "Also Flux: controllers available, every GitRepository, Kustomization and HelmRelease Ready at its generation, none suspended but by maintenance mode.")
    var flux = false

    @Flag(help: "Also Longhorn: manager and instance manager on every node, volumes healthy, detached volumes with every replica, no long rebuild, the drain policy.")
    var storage = false

    @Flag(help: "Also networking: k3s's CoreDNS and Traefik Deployments available, the API's Service name resolving from every node, every node reaching every other's kubelet port (both asked of the agents).")
    var networking = false

    @Flag(help: "Also the checks validate.applications in upkeep.yaml declares: Deployments, DaemonSets and StatefulSets rolled out, URLs answering, Prometheus queries below a threshold.")
    var applications = false

    @Flag(help: "Every check: the same as --flux --storage --networking, and --applications when upkeep.yaml declares some.")
    var all = false

    @Flag(name: .customLong("post-update"),
          help: "After a rollout or update: every check of --all, and every component at the version the last rollout or update of it meant.")
    var postUpdate = false

    @Option(name: .customLong("rebuild-max"), help: ArgumentHelp("A replica rebuilding longer than this is unhealthy: 90s, 30m, 2h.", valueName: "DURATION"))
    var rebuildMax = "30m"

    @Option(name: .shortAndLong, help: "table or json.")
    var output = OutputFormat.table

    /// --rebuild-max's default, also the post-update validation's bound (30m).
    static let rebuildSecondsDefault = 1800

    /// Bounds of --rebuild-max.
    static let rebuildSecondsRange = 1...7 * 86_400

    func validate() throws {
        guard let seconds = DurationText.seconds(rebuildMax), Self.rebuildSecondsRange.contains(seconds) else {
            throw ValidationError("--rebuild-max \(rebuildMax): write a duration of 1s to 7d, e.g. 90s, 30m")
        }
    }

    /// The groups to run; `--all` (and `--post-update`) include the applications only when some
    /// are declared.
    func areas(declared: ApplicationChecks) -> [ValidationArea] {
        let every = all || postUpdate
        return [.cluster] + (flux || every ? [.flux] : []) + (storage || every ? [.storage] : []) + (networking || every ? [.networking] : [])
            + (applications || (every && !declared.checks.isEmpty) ? [.applications] : []) + (postUpdate ? [.versions] : [])
    }

    /// The JSON `-o json` prints (docs/validate.md, "JSON").
    struct Report: Encodable {
        var healthy: Bool
        var areas: [ValidationArea]
        /// The names of the checks that are not healthy, e.g. `cluster/cordons`.
        var failing: [String]
        var checks: [Check]

        /// A result as `ValidationResult` encodes it, with its `name` beside.
        struct Check: Encodable {
            var result: ValidationResult

            private enum Keys: String, CodingKey { case name }

            func encode(to encoder: any Encoder) throws {
                try result.encode(to: encoder)
                var container = encoder.container(keyedBy: Keys.self)
                try container.encode(result.name, forKey: .name)
            }
        }

        init(areas: [ValidationArea], results: [ValidationResult]) {
            healthy = results.allHealthy
            self.areas = areas
            failing = results.filter { !$0.isHealthy }.map(\.name)
            checks = results.map(Check.init)
        }
    }

    func run() async throws {
        let config = try configOption.load()
        let opened = Result { try openStateStoreForReading(config) }
        let store = try? opened.get()
        var storeProblem: String?
        if case .failure(let error) = opened { storeProblem = (error as? CommandFailure)?.message ?? "\(error)" }
        let rebuildSeconds = DurationText.seconds(rebuildMax) ?? Self.rebuildSecondsDefault
        if applications && config.applicationChecks.checks.isEmpty {
            throw CommandFailure(code: RolloutExitCode.usage, message: "--applications: \(config.source ?? "upkeep.yaml") declares no checks; "
                                 + "list them under validate.applications (docs/validate.md, \"Applications\")")
        }
        let areas = self.areas(declared: config.applicationChecks)
        let results = try await ClusterSession.with(config) { session in
            try await Self.results(areas, reader: ValidationReader(session: session, store: store, storeProblem: storeProblem), rebuildSecondsMax: rebuildSeconds,
                                   declared: config.applicationChecks)
        }
        let report = Report(areas: areas, results: results)
        print(output == .json ? try jsonText(report) : Self.render(results), terminator: "")
        if !report.healthy { throw ExitCode(1) }
    }

    /// Every check of `areas`, in order.
    static func results(_ areas: [ValidationArea], reader: ValidationReader, rebuildSecondsMax: Int,
                        declared: ApplicationChecks) async throws -> [ValidationResult] {
        var results: [ValidationResult] = []
        // Read once for every area that needs the nodes: `--networking` alone (or
        // `validate.afterChange: [networking]`) asks the agents too.
        let needsNodes = areas.contains(.cluster) || areas.contains(.storage) || areas.contains(.networking)
        let read = needsNodes ? await reader.nodes() : nil
        let reading = try? read?.get()
        if areas.contains(.cluster), let read { results += ValidationVerdicts.cluster(await reader.cluster(read)) }
        if areas.contains(.flux) { results += ValidationVerdicts.flux(await reader.flux()) }
        if areas.contains(.storage) {
            let nodes = reading?.nodes.map(\.node.name) ?? []
            results += ValidationVerdicts.storage(await reader.storage(nodes: nodes, rebuildSecondsMax: rebuildSecondsMax))
        }
        if areas.contains(.networking) {
            results += ValidationVerdicts.networking(await reader.networking())
            results.append(ValidationVerdicts.dnsFromNodes(await reader.dnsFromNodes(reading)))
            results.append(ValidationVerdicts.nodeToNode(await reader.nodeToNode(reading)))
        }
        if areas.contains(.applications) { results += ValidationVerdicts.applications(await reader.applications(declared)) }
        if areas.contains(.versions) { results += ValidationVerdicts.versions(await reader.versions()) }
        return results
    }

    /// One block per check: the verdict and the check's name, its summary, the evidence, what to
    /// do; then, with `summary`, a blank line and the sum.
    static func render(_ results: [ValidationResult], summary: Bool = true) -> String {
        var text = ""
        for result in results {
            let verdict = switch result.verdict {
            case .healthy: "healthy  "
            case .unhealthy: "UNHEALTHY"
            case .unknown: "UNKNOWN  "
            }
            text += "\(verdict) \(result.name): \(result.summary)\n"
            for line in result.evidence { text += "            \(line)\n" }
            if let action = result.action { text += "          what to do: \(action)\n" }
        }
        guard summary else { return text }
        let failing = results.filter { !$0.isHealthy }
        text += failing.isEmpty ? "\nhealthy: \(results.count) of \(results.count) checks\n"
            : "\nunhealthy: \(failing.map(\.name).joined(separator: ", ")) (\(failing.count) of \(results.count) checks)\n"
        return text
    }
}
