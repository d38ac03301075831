import ArgumentParser
import Foundation
import UpkeepRollout
import UpkeepCore
import UpkeepFleet
import UpkeepKube
import UpkeepUpdates
import UpkeepYAML

/// What `plan`, `apply` and `rollback` share: where to go and how wide.
struct TargetOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The k3s version to reach, e.g. v1.31.4+k3s1.", valueName: "VERSION"))
    var to: String?

    @Option(name: .long, help: ArgumentHelp("Reach the version this channel points at: stable, latest, v1.31, … (default: stable).",
                                            valueName: "NAME"))
    var channel: String?

    @Option(name: .long, help: "Agents upgraded at once (default: policy.concurrency in upkeep.yaml). Servers always go one at a time.")
    var concurrency: Int?

    @Flag(name: .customLong("allow-downgrade"), help: "Allow a target older than some nodes (read the datastore caveat first).")
    var allowDowngrade = false

    @Flag(name: .customLong("pre-releases"), help: "Consider release candidates when choosing hop versions.")
    var preReleases = false

    @Option(name: .long, help: ArgumentHelp("Change only these nodes (comma-separated; default: policy.nodes, else every node).", valueName: "NAMES"))
    var nodes: String?

    @Option(name: .long, help: ArgumentHelp("Leave these nodes alone (comma-separated; default: policy.exclude).", valueName: "NAMES"))
    var exclude: String?

    @Option(name: .long, help: ArgumentHelp("Change only nodes matching this label selector, e.g. pool=blue (default: policy.selector).",
                                            valueName: "SELECTOR"))
    var selector: String?

    @Option(name: .long, help: ArgumentHelp("The first N agents go alone, then a soak and the gates, then the rest (default: policy.canary).",
                                            valueName: "N"))
    var canary: Int?

    @Option(name: .customLong("canary-soak"), help: ArgumentHelp("How long the rest waits after the canaries: 90s, 10m, 1h (default: policy.canarySoak, 10m).",
                                                                 valueName: "DURATION"))
    var canarySoak: String?

    func validate() throws {
        if to != nil && channel != nil { throw ValidationError("use either --to or --channel") }
        if let concurrency, !(1...PlanPolicy.agentConcurrencyMax).contains(concurrency) {
            throw ValidationError("--concurrency must be between 1 and \(PlanPolicy.agentConcurrencyMax)")
        }
        if let canary, !(0...PlanPolicy.canaryAgentsMax).contains(canary) {
            throw ValidationError("--canary must be between 0 and \(PlanPolicy.canaryAgentsMax)")
        }
        if let canarySoak, (DurationText.seconds(canarySoak).map { $0 > PlanPolicy.canarySoakSecondsMax } ?? true) {
            throw ValidationError("--canary-soak \(canarySoak): write a duration up to 7d, e.g. 90s, 10m, 1h")
        }
        if let selector {
            do { _ = try LabelSelector.parse(selector) } catch { throw ValidationError("--selector \(selector): \(error)") }
        }
        for (flag, names) in [("--nodes", nodes), ("--exclude", exclude)] {
            if let names, Self.names(names).isEmpty { throw ValidationError("\(flag) needs node names, comma-separated") }
        }
    }

    /// `a,b, c` as names.
    static func names(_ text: String) -> [String] {
        text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// The configuration's choice of nodes with these flags over each of its fields.
    func choice(_ config: ControllerConfig) -> NodeChoice {
        var choice = config.nodeChoice
        if let nodes { choice.nodes = Self.names(nodes) }
        if let exclude { choice.exclude = Self.names(exclude) }
        if let selector { choice.selector = selector }
        return choice
    }
}

/// A plan with the cluster it was made for and what the agents said.
struct PlannedRollout {
    var reading: FleetReading
    var plan: Plan
    var agents: [AgentRow]
    /// The configured gates as read with the plan (`plan` only; `apply` reads them itself).
    var gates: String? = nil
    /// Why the compatibility table refuses the target, when it does.
    var compatibility: CompatibilityRefusal? = nil

    /// Agents of nodes the plan changes that are not fit to take part.
    var blockingAgents: [AgentRow] {
        let changed = Set(plan.waves.flatMap(\.nodes))
        return agents.filter { changed.contains($0.node) && !$0.isGood }
    }

    struct JSON: Encodable {
        var plan: Plan
        var agents: [AgentRow]
        var blocked: Bool
        /// One line per gate read with the plan, when gates are configured.
        var gates: [String]?
        /// Why the compatibility table refuses the target (its entry's source named), when it does.
        var compatibilityRefusal: String?
        /// The predicted schedule without wave barriers, its length and critical path.
        var schedule: PlanSchedule
    }

    /// The plan's predicted schedule over the cluster it was made for.
    var schedule: PlanSchedule { PlanSchedule.predict(plan, inventory: reading.inventory) }

    /// The gates' lines, for `-o json`.
    var gateLines: [String]?

    func jsonText() throws -> String {
        try UpkeepCLI.jsonText(JSON(plan: plan, agents: agents, blocked: !blockingAgents.isEmpty, gates: gateLines,
                                    compatibilityRefusal: compatibility?.description, schedule: schedule))
    }

    func table() -> String {
        var text = plan.table()
        if !plan.waves.isEmpty { text += "\n" + schedule.summary + "\n" }
        let blocking = blockingAgents
        if blocking.isEmpty {
            text += "\nagents: \(agents.filter(\.isGood).count) of \(agents.count) reachable and in agreement with the API\n"
        } else {
            text += "\nagents that block this rollout (fix them, then plan again):\n" + AgentRow.table(blocking)
        }
        if let gates { text += "\n" + gates }
        if let compatibility { text += "\ncompatibility: \(compatibility)\n" }
        return text
    }
}

extension ClusterSession {
    /// Reads the cluster, resolves the target, plans, and asks every agent the plan needs.
    /// `compatibilityFile`: `--compatibility FILE` over the built-in table.
    func plan(_ options: TargetOptions, target explicitTarget: K3sVersion? = nil, allowDowngrade: Bool? = nil,
              compatibilityFile: String? = nil) async throws -> PlannedRollout {
        let reading = try await read()
        let target: K3sVersion
        if let explicitTarget { target = explicitTarget } else { target = try await resolveTarget(to: options.to, channel: options.channel) }
        let oldest = reading.nodes.map(\.node.version).min()
        var available = try await availableVersions(includePreReleases: options.preReleases || target.isPreRelease, oldestInstalled: oldest)
        // What runs already is a valid point on a path even if the source no longer lists it.
        for node in reading.nodes where !available.contains(node.node.version) { available.append(node.node.version) }
        let selection: NodeSelection?
        do {
            selection = try options.choice(config).resolve(reading.nodes.map { ($0.node.name, $0.labels) })
        } catch {
            throw CommandFailure(code: RolloutExitCode.usage, message: "selector: \(error)")
        }
        let policy = PlanPolicy(agentConcurrency: options.concurrency ?? config.concurrency,
                                allowDowngrade: allowDowngrade ?? options.allowDowngrade, selection: selection,
                                canaryAgents: options.canary ?? config.canaryAgents,
                                canarySoakSeconds: options.canarySoak.flatMap(DurationText.seconds) ?? config.canarySoakSeconds)
        let plan: Plan
        do {
            plan = try Planner.plan(inventory: reading.inventory, target: target, available: available, policy: policy)
        } catch {
            throw CommandFailure(code: RolloutExitCode.refused, message: "no safe plan to \(target): \(error)")
        }
        // The Kubernetes minors the rollout brings nodes to, against the Flux and Longhorn that run.
        let refusal = plan.waves.isEmpty ? nil
            : try await CompatibilityGate.judge(k3sTarget: target, hops: plan.hops.map(\.version), session: self, file: compatibilityFile)
        return PlannedRollout(reading: reading, plan: plan, agents: try await inspectAgents(reading), compatibility: refusal)
    }

    /// Every node's agent, asked in parallel (Hello cross-checked against the API).
    func inspectAgents(_ reading: FleetReading) async throws -> [AgentRow] {
        let fleet = try await fleet(for: reading)
        let roles = Dictionary(reading.nodes.map { ($0.node.name, $0.node.role) }, uniquingKeysWith: { first, _ in first })
        return await fleet.inspect(reading.nodes.map(\.node)).map { AgentRow($0, role: roles[$0.node]) }
    }
}

/// `upkeep plan`: what `apply` would do, without doing it.
struct PlanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Show the safe path to a k3s version: hops, waves, each node's from -> to, and the Longhorn constraints.",
        discussion: """
            Reads the cluster and the releases and asks every agent; changes nothing.
            Exit codes: 0 a plan exists (or nothing to do), 2 usage, 5 no safe plan, an agent blocks it, or the \
            compatibility table refuses the target (the installed Longhorn or Flux does not support its Kubernetes; \
            --ignore-compatibility shows the plan anyway), 8 the cluster or the release source could not be read.
            """
    )

    @OptionGroup var configOption: ConfigOption
    @OptionGroup var target: TargetOptions
    @OptionGroup(title: "Compatibility") var compatibility: CompatibilityOptions

    @Option(name: .shortAndLong, help: "table or json.")
    var output = OutputFormat.table

    func run() async throws {
        let config = try configOption.load()
        let planned = try await ClusterSession.with(config) { session in
            var planned = try await session.plan(target, compatibilityFile: compatibility.compatibility)
            if let policy = config.rollout.gates, let report = try await GateSession.look(session, reading: planned.reading) {
                planned.gates = GateSession.text(report, policy: policy, firstWave: planned.plan.waves.first?.nodes ?? [])
                planned.gateLines = report.lines
            }
            return planned
        }
        print(output == .json ? try planned.jsonText() : planned.table(), terminator: "")
        // A plan changes nothing: with --ignore-compatibility it is shown, and apply asks.
        if let refusal = planned.compatibility, !compatibility.ignore {
            throw CommandFailure(code: RolloutExitCode.refused, message: "refused: \(refusal)")
        }
        if !planned.blockingAgents.isEmpty {
            throw CommandFailure(code: RolloutExitCode.refused, message: "\(planned.blockingAgents.count) agent(s) block this rollout")
        }
    }
}

/// `upkeep agents`: every node's agent, asked in parallel.
struct Agents: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Ask every node's agent, in parallel: reachable, node and version agreement, round-trip time.",
        discussion: "Exit codes: 0 all agents fine, 2 usage, 5 some agent is unreachable or disagrees with the API, 8 the API could not be read."
    )

    @OptionGroup var configOption: ConfigOption

    @Option(name: .shortAndLong, help: "table or json.")
    var output = OutputFormat.table

    func run() async throws {
        let config = try configOption.load()
        let rows = try await ClusterSession.with(config) { session in
            let reading = try await session.read()
            return try await session.inspectAgents(reading)
        }
        print(output == .json ? try jsonText(rows) : AgentRow.table(rows), terminator: "")
        let bad = rows.filter { !$0.isGood }
        if !bad.isEmpty {
            throw CommandFailure(code: RolloutExitCode.refused, message: "\(bad.count) of \(rows.count) agents are not fit: "
                                 + bad.map(\.node).joined(separator: ", "))
        }
    }
}
