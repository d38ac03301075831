import ArgumentParser
import Foundation
import UpkeepCore
import UpkeepUpdates

/// `--ignore-compatibility`, its confirmation for scripts, and `--compatibility FILE`: what
/// `plan`, `apply` and `update` share about the compatibility table (docs/check.md).
struct CompatibilityOptions: ParsableArguments {
    @Flag(name: .customLong("ignore-compatibility"),
          help: "Go on although the compatibility table refuses the target; asks to type the target version.")
    var ignore = false

    @Option(name: .customLong("confirm-ignore-compatibility"),
            help: ArgumentHelp("With --ignore-compatibility, for scripts: the target version, as the confirmation asks it typed.",
                               valueName: "VERSION"))
    var confirmation: String?

    @Option(name: .long, help: ArgumentHelp("Replace the built-in compatibility entries of the components this JSON file names (as `upkeep check`).",
                                            valueName: "PATH"))
    var compatibility: String?

    func validate() throws {
        if confirmation != nil && !ignore {
            throw ValidationError("--confirm-ignore-compatibility goes with --ignore-compatibility")
        }
    }

    var choice: CompatibilityChoice {
        CompatibilityChoice(ignore: ignore, confirmation: confirmation, file: compatibility)
    }
}

/// The operator's choice about the compatibility table for one change. `upkeep serve` never
/// ignores it (the default).
struct CompatibilityChoice: Sendable, Equatable {
    var ignore = false
    /// The typed target, given ahead (`--confirm-ignore-compatibility`).
    var confirmation: String? = nil
    /// `--compatibility FILE`.
    var file: String? = nil
}

/// The I/O around `CompatibilityTable.refusal(…)`: the table as `upkeep check` reads it, what runs
/// in the cluster, and the operator's override with its typed confirmation.
enum CompatibilityGate {
    /// The built-in table, a compatibility file's entries over it, then the release source's (a
    /// mirror's compatibility.json), in the order `upkeep check` applies them.
    static func table(_ session: ClusterSession, file: String?) async throws -> CompatibilityTable {
        var table = CompatibilityTable.builtIn
        if let file {
            do { table = table.replacing(with: try CompatibilityTable.entries(file: file)) } catch {
                throw CommandFailure(code: RolloutExitCode.usage, message: "--compatibility \(file): \(error)")
            }
        }
        do {
            if let entries = try await session.source.compatibilityEntries() { table = table.replacing(with: entries) }
        } catch {
            throw CommandFailure(code: RolloutExitCode.unreachable, message: "cannot read the compatibility entries from \(session.source): \(error)")
        }
        return table
    }

    /// Every node's k3s and the Flux and Longhorn that run.
    static func installed(_ session: ClusterSession) async throws -> InstalledVersions {
        do {
            return try await ClusterInventory(client: session.kube).read([.flux, .longhorn])
        } catch {
            throw CommandFailure(code: RolloutExitCode.unreachable, message: "\(error)")
        }
    }

    /// A k3s rollout to `target` through `hops` against the Flux and Longhorn that run.
    static func judge(k3sTarget target: K3sVersion, hops: [K3sVersion], session: ClusterSession, file: String?) async throws -> CompatibilityRefusal? {
        let installed = try await installed(session)
        var components: [Component: K3sVersion] = [:]
        for (component, state) in [(Component.flux, installed.flux), (.longhorn, installed.longhorn)] {
            if let state, state.state == .installed, let version = state.version { components[component] = version }
        }
        guard !components.isEmpty else { return nil }
        let running = Set(installed.k3s.nodes.compactMap { $0.version?.minorLine })
        return try await table(session, file: file).refusal(k3sTarget: target, hops: hops, running: running, installed: components)
    }

    /// `component` at `target` against every node's Kubernetes.
    static func judge(_ component: Component, target: K3sVersion, session: ClusterSession, file: String?) async throws -> CompatibilityRefusal? {
        let nodes = try await installed(session).k3s.nodes.compactMap { node in node.version.map { (name: node.name, kubernetes: $0.minorLine) } }
        return try await table(session, file: file).refusal(component, target: target, nodes: nodes)
    }

    /// What a command does with `refusal`: nothing when there is none; refuses (exit 5, saying
    /// `untouched`) unless the operator chose to ignore it; then asks the target typed (or takes
    /// `--confirm-ignore-compatibility`, which must name it) and returns what history records.
    /// A dry run asks nothing and returns nil.
    static func decide(_ refusal: CompatibilityRefusal?, choice: CompatibilityChoice, dryRun: Bool, untouched: String) throws -> String? {
        guard let refusal else { return nil }
        guard choice.ignore else {
            throw CommandFailure(code: RolloutExitCode.refused, message: "refused: \(refusal); \(untouched)")
        }
        print("warning: \(refusal.changeText) goes against the compatibility table (--ignore-compatibility): \(refusal.finding)")
        if dryRun {
            print("dry run: going on needs \(refusal.target) typed (or --confirm-ignore-compatibility=\(refusal.target))")
            return nil
        }
        if let typed = choice.confirmation {
            guard Update.sameVersion(refusal.target.description, typed) else {
                throw CommandFailure(code: RolloutExitCode.usage,
                                     message: "--confirm-ignore-compatibility \(typed) does not name the target \(refusal.target); \(untouched)")
            }
        } else {
            guard isatty(STDIN_FILENO) == 1 else {
                throw CommandFailure(code: RolloutExitCode.usage,
                                     message: "--ignore-compatibility needs the target typed, and this is not a terminal: pass "
                                         + "--confirm-ignore-compatibility=\(refusal.target); \(untouched)")
            }
            try Apply.confirm(refusal.target.description)
        }
        return "\(refusal.changeText) against the compatibility table, \(refusal.target) confirmed: \(refusal.finding)"
    }
}

extension CompatibilityGate {
    /// `upkeep update`'s check, before anything is cloned: the release `plan` goes to against
    /// every node's Kubernetes; what history records when the operator ignores a refusal.
    static func judge(_ plan: GitOpsPlan, request: GitOpsRequest, session: ClusterSession) async throws -> String? {
        guard let component = Component(rawValue: plan.component), let target = try? component.version(fromTag: plan.to) else { return nil }
        let refusal = try await judge(component, target: target, session: session, file: request.compatibility.file)
        return try decide(refusal, choice: request.compatibility, dryRun: request.dryRun, untouched: "nothing was committed")
    }
}
