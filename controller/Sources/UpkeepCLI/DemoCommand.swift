import ArgumentParser
import Foundation
import UpkeepRollout
import UpkeepRuntime
import UpkeepCore
import UpkeepCapture
import UpkeepFleet
import UpkeepKube
import UpkeepStore

/// `upkeep demo`: the first thing a new user runs.
///
/// Brings up a sandbox cluster on this machine (3 servers with embedded etcd, 3 agents, Longhorn
/// volumes with 2 replicas, Flux objects; fake k3s binaries with a real `upkeep-agent` on every
/// node, each enrolled with a bootstrap token through `upkeep join-server`), shows the plan, upgrades the cluster to the newest k3s the sandbox offers with live
/// progress (after a rehearsal on a twin of the sandbox finds a disruption budget that would
/// hold a drain, which is then fixed), then does the same on a fresh sandbox where one agent's new k3s never becomes
/// healthy: its agent puts the old binary back and the controller returns every upgraded node,
/// in reverse order. Between the two, Longhorn and then Flux itself are upgraded through the Git
/// repository the sandbox's Flux follows (`upkeep update`). Everything runs through the same code as `upkeep apply`, and everything it
/// starts is stopped at the end.
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Upgrade a sandbox k3s cluster on this machine, then watch an automatic rollback.",
        discussion: "Needs the binaries built next to `upkeep` (swift build). Takes a minute or two; leaves nothing running."
    )

    @Option(name: .long, help: "Keep the sandboxes' files (logs, state database, PKI) in this directory instead of a temporary one.")
    var dir: String?

    /// The node whose new k3s fails in the second run.
    static let failingNode = "agent-2"
    /// After the first run's k3s upgrade, Longhorn goes one minor up (from the sandbox's v1.7.2) through Git.
    static let longhornTarget = "v1.8.2"
    /// Then Flux (from the sandbox's v2.4.0) regenerates its own components through Git.
    static let fluxTarget = "v2.5.1"
    /// Bounds on the sandbox program's runs: `up` waits at most its --ready-timeout (60 s) plus
    /// 30 s for its process; `fault` up to 30 s for an agent; `down` up to 60 s for the process.
    static let sandboxUpSecondsMax = 150.0
    static let sandboxFaultSecondsMax = 60.0
    static let sandboxDownSecondsMax = 180.0

    func run() async throws {
        let base = dir ?? NSTemporaryDirectory() + "upkeep-demo-\(UUID().uuidString.prefix(8).lowercased())"
        let keep = dir != nil
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        let started = Date()
        var codes: [Int32] = []
        defer { if !keep { try? FileManager.default.removeItem(atPath: base) } }

        say("== 1. a healthy rolling upgrade")
        codes.append(try await runScenario(directory: "\(base)/upgrade", failing: nil))
        say("")
        say("== 2. a patch upgrade on a fresh sandbox, where \(Self.failingNode)'s new k3s never becomes healthy: within a minor "
            + "the rollback is a binary swap (going back a minor would need the datastore snapshot restored)")
        codes.append(try await runScenario(directory: "\(base)/rollback", failing: Self.failingNode))
        say("")
        let seconds = Int(Date().timeIntervalSince(started).rounded())
        say("demo finished in \(seconds / 60)m\(String(format: "%02d", seconds % 60))s: first run exit \(codes[0]) (0 = completed), "
            + "second run exit \(codes[1]) (1 = failed and rolled back by binaries)" + (keep ? "; files kept in \(base)" : ""))
        guard codes == [RolloutExitCode.done, RolloutExitCode.failedRolledBack] else {
            throw CommandFailure(code: 1, message: "the demo did not go as expected (exit codes \(codes)); logs are in \(base) with --dir")
        }
    }

    /// One sandbox, one `apply` to the newest version; returns apply's exit code. The sandbox's
    /// lifecycle (up, fault, down) runs through the sandbox program; the controller runs here.
    private func runScenario(directory: String, failing: String?) async throws -> Int32 {
        _ = try await SandboxProgram.run(["up", "--dir", directory, "--servers", "3", "--agents", "3", "--volumes", "4", "--replicas", "2",
                                          "--k3s-version", "v1.30.6+k3s1", "--agent-port", "9443", "--node-grace", "10",
                                          "--pod-start-seconds", "0.5", "--pod-termination-seconds", "0.3", "--rebuild-seconds", "1",
                                          "--ready-timeout", "60",
                                          // Every node enrolls as a real node would: a token, the join server,
                                          // `upkeep-agent join` (docs/enrollment.md).
                                          "--join"],
                                         timeoutSeconds: Self.sandboxUpSecondsMax)
        do {
            let manifest = try SandboxProgram.Manifest.load(directory: directory)
            say("sandbox: \(manifest.nodes.count) nodes at \(manifest.k3sVersion) "
                + "(\(manifest.nodes.map { "\($0.name) \($0.address)" }.joined(separator: ", "))); kubeconfig \(manifest.kubeconfig)")
            let configPath = try Self.writeDemoConfig(directory: directory)
            let config = try ControllerConfig.load(path: configPath)
            let store = try openStateStore(config)
            let code = try await ClusterSession.with(config) { session in
                // The healthy run goes to the newest release (two minors, snapshots before each hop);
                // the failing one to the newest patch of the minor the sandbox runs (a binaries hop).
                let available = try await session.availableVersions(includePreReleases: false, oldestInstalled: nil)
                let running = try K3sVersion(manifest.k3sVersion)
                let newest = failing == nil ? available.first : available.first { $0.minorLine == running.minorLine && $0 > running }
                guard let newest else { throw CommandFailure(code: 1, message: "the sandbox release server offers no k3s release to go to") }
                if let failing {
                    say(try await SandboxProgram.run(["fault", "--dir", directory, failing, "unhealthy", "--k3s-version", newest.description],
                                                     timeoutSeconds: Self.sandboxFaultSecondsMax))
                } else {
                    try await Self.rehearsalScene(session: session, config: config, target: newest)
                }
                var target = try TargetOptions.parse([])
                target.to = newest.description
                return try await Apply.applyPlanned(session: session, store: store, change: try ChangeOptions.parse(["--yes"]), target: newest) {
                    try await session.plan(target)
                }
            }
            say("")
            say("nodes afterwards, as the API reports them:")
            let reading = try await ClusterSession.with(config) { try await $0.read() }
            for node in reading.nodes.map(\.node) {
                say("  \(node.name.padding(toLength: 10, withPad: " ", startingAt: 0)) \(node.version)  "
                    + (node.ready ? "Ready" : "NotReady") + (node.cordoned ? ", cordoned" : ""))
            }
            if let last = try storeCall({ try store.history(limit: 1) }).first {
                say("history: \(last.id) \(last.from) -> \(last.target): \(last.outcomeText)")
            }
            if failing == nil, let longhorn = LonghornVersion(Self.longhornTarget) {
                say("")
                say("== Longhorn \(Self.longhornTarget), then Flux \(Self.fluxTarget), through the Git repository the sandbox's Flux follows "
                    + "(\(directory)/git/fleet.git)")
                try await ClusterSession.with(config) { session in
                    let update = GitOpsUpdate(kube: session.kube, store: store, stateDirectory: session.stateDirectory, namespace: "flux-system",
                                              name: "flux-system", repoOverride: nil, timeoutSeconds: 120,
                                              lock: OperationLock(store: store, cluster: try session.clusterLease(store: store),
                                                                  configuration: RuntimeConfiguration()))
                    let longhornCode = try await update.run(dryRun: false, confirmed: true) { source in
                        try await LonghornUpdate.plan(kube: session.kube, target: longhorn, source: source)
                    }
                    guard longhornCode == RolloutExitCode.done else {
                        throw CommandFailure(code: 1, message: "the Longhorn update through Git ended with exit \(longhornCode)")
                    }
                    let fluxCode = try await update.run(dryRun: false, confirmed: true) { source in
                        try await FluxUpdate.plan(session: session, to: Self.fluxTarget, source: source)
                    }
                    guard fluxCode == RolloutExitCode.done else {
                        throw CommandFailure(code: 1, message: "the Flux update through Git ended with exit \(fluxCode)")
                    }
                }
            }
            say(try await SandboxProgram.run(["down", "--dir", directory], timeoutSeconds: Self.sandboxDownSecondsMax))
            return code
        } catch {
            _ = try? await SandboxProgram.run(["down", "--dir", directory], timeoutSeconds: Self.sandboxDownSecondsMax)
            throw error
        }
    }

    /// Before the first run's upgrade: a budget that allows no eviction of `web`, found by
    /// `upkeep rehearse` on a twin of the sandbox before anything live moves, then fixed.
    static func rehearsalScene(session: ClusterSession, config: ControllerConfig, target: K3sVersion) async throws {
        say("== 1a. rehearse first: poddisruptionbudget default/web-strict keeps both web pods (minAvailable 2 of 2 replicas)")
        let budget: JSON = ["apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                            "metadata": ["name": "web-strict", "namespace": "default"],
                            "spec": ["minAvailable": 2, "selector": ["matchLabels": ["app": "web"]]]]
        _ = try await session.kube.create(.podDisruptionBudgets, budget)
        // The budget's status follows once both pods are Ready: wait for it (bounded), as an operator would see it.
        let deadline = Date().addingTimeInterval(Self.budgetSettleSecondsMax)
        while Date() < deadline {
            let status = try await session.kube.get(PodDisruptionBudget.self, "web-strict", namespace: "default")
            if status.currentHealthy == 2 && status.disruptionsAllowed == 0 { break }
            try await Task.sleep(for: .milliseconds(250))
        }
        var options = try TargetOptions.parse([])
        options.to = target.description
        let report = try await RehearsalRun(config: config, target: options, speed: 10,
                                            steps: .init(rebuildSeconds: 1, podStartSeconds: 0.5, podTerminationSeconds: 0.3),
                                            drill: nil, keep: nil).run()
        say(report.text())
        guard let hold = report.holds.first(where: { $0.budget == "default/web-strict" }) else {
            throw CommandFailure(code: 1, message: "the rehearsal did not find the budget that holds the drain (exit \(report.exitCode))")
        }
        say("the rehearsal exits \(report.exitCode): \(report.reason ?? "")")
        try await session.kube.delete(.podDisruptionBudgets, "web-strict", namespace: "default")
        say("fixed before the window: poddisruptionbudget default/web-strict deleted (it held \(hold.node)); web keeps its own budget, "
            + "minAvailable 1. Now the real rollout:")
    }

    /// How long the demo waits for its budget's status to count both web pods.
    static let budgetSettleSecondsMax = 60.0

    /// The sandbox's upkeep.yaml with the short waits a demo wants (the sandbox model rebuilds
    /// replicas in a second and restarts k3s at once).
    static func writeDemoConfig(directory: String) throws -> String {
        let path = "\(directory)/upkeep.yaml"
        var text = try String(contentsOfFile: path, encoding: .utf8)
        let policy = "policy: {concurrency: 1, gateTimeoutSeconds: 60, drainTimeoutSeconds: 60, healthTimeoutSeconds: 8, "
            + "verifyTimeoutSeconds: 60, rebuildTimeoutSeconds: 60, watchdogTimeoutSeconds: 300, pollIntervalMilliseconds: 250, "
            + "autoRollback: true, drain: {deleteEmptyDirData: true}}"
        text = text.split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.hasPrefix("policy:") ? Substring(policy) : $0 }.joined(separator: "\n")
        let demoPath = "\(directory)/upkeep-demo.yaml"
        try text.write(toFile: demoPath, atomically: true, encoding: .utf8)
        return demoPath
    }
}

private func say(_ line: String) {
    fflush(nil)
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
