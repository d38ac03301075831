import Foundation
import Testing
import UpkeepCore
import UpkeepProcess
import UpkeepRollout
import UpkeepSandbox
import UpkeepStore

#if canImport(Glibc)
import Glibc
#endif

/// Two controllers with two state directories against one sandbox (real `upkeep apply`
/// processes), kept apart by the Lease `kube-system/upkeep` with kubectl as its witness, and
/// the agents' journals as the proof of who touched which node when (issue 17, item 2). Short
/// terms: a 6 s Lease, renewed every second, let go after 4 s without a renewal.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct ClusterLeaseEndToEndTests {
    static let start = EndToEndTests.start
    static let next = EndToEndTests.nextMinor
    static let shortLease = "lease: {durationSeconds: 6, renewDeadlineSeconds: 4, renewIntervalSeconds: 1}"
    static let apply = ["apply", "--to", next, "--yes", "--skip-backup"]

    @Test func ofTwoControllersStartedAtOnceExactlyOneRunsAndTheOtherNamesTheHolder() async throws {
        try await EndToEndSandbox.with(servers: 1, agents: 2, k3sVersion: Self.start) { sandbox in
            let configs = try ["ctl-a", "ctl-b"].map { try sandbox.controllerConfig($0, extra: Self.shortLease) }
            let runs = try configs.map { try sandbox.start(Self.apply, config: $0) }
            // While one runs, kubectl shows the Lease naming it, with the configured duration.
            var seen: [String: Any]?
            let deadline = Date().addingTimeInterval(120)
            while seen == nil && Date() < deadline {
                if let spec = try await sandbox.clusterLease(), (spec["holderIdentity"] as? String)?.isEmpty == false { seen = spec }
                else { try await Task.sleep(for: .milliseconds(100)) }
            }
            let codes = [await runs[0].exitCode(timeoutSeconds: 240), await runs[1].exitCode(timeoutSeconds: 240)]
            try #require(codes.sorted { ($0 ?? -1) < ($1 ?? -1) } == [0, 6], "exit codes \(codes):\n\(runs[0].output)\n---\n\(runs[1].output)")
            let winner = codes[0] == 0 ? 0 : 1, loser = 1 - winner
            let winnerID = try Self.controllerID(sandbox, ["ctl-a", "ctl-b"][winner])
            let history = try JSONDecoder().decode([RolloutRecord].self, from: Data(try await sandbox.controller(["history", "-o", "json"],
                                                                                                                 config: configs[winner]).output.utf8))
            let rollout = try #require(history.first, "the winner recorded no rollout")
            let holder = "\(winnerID) (apply \(rollout.id))"
            #expect(seen?["holderIdentity"] as? String == holder && seen?["leaseDurationSeconds"] as? Int == 6, "\(String(describing: seen))")
            #expect(runs[loser].output.contains("the Lease kube-system/upkeep is held by \(holder)"), "\(runs[loser].output)")
            #expect(rollout.outcome == .completed && rollout.startedBy?.kind == .apply && rollout.startedBy?.by.user == NSUserName(),
                    "\(String(describing: rollout.startedBy))")
            let loserHistory = try await sandbox.controller(["history", "-o", "json"], config: configs[loser])
            #expect(try JSONDecoder().decode([RolloutRecord].self, from: Data(loserHistory.output.utf8)).isEmpty,
                    "the loser recorded: \(loserHistory.output)")
            try await sandbox.expectAllNodes(at: Self.next, "after the one rollout")
            // Given back at the end, client-go's way: no holder, a one-second duration.
            let released = try #require(try await sandbox.clusterLease())
            #expect((released["holderIdentity"] as? String ?? "").isEmpty && released["leaseDurationSeconds"] as? Int == 1
                    && (released["leaseTransitions"] as? Int ?? 0) == 0, "\(released)")
            let status = try await sandbox.controller(["status"], config: configs[loser])
            #expect(status.output.contains("cluster Lease kube-system/upkeep: free (given back "), "\(status.output)")
        }
    }

    /// The holder is killed mid-rollout (agent-1 installing). The other controller is refused
    /// (exit 6, naming it, before it plans) while the Lease stands. What may it do then? The
    /// killed one's rollout lives in the killed one's state directory, so there is nothing to
    /// resume: once the Lease lapsed, and the operator has uncordoned the node the killed
    /// rollout left cordoned (Longhorn keeps no replica on a cordoned node, so no plan is safe
    /// before), a new `apply` takes the Lease over and plans from the cluster as it is. The killed
    /// controller's operator then abandons its rollout, which lists what it left.
    @Test func whenTheHolderIsKilledAnotherTakesOverOnceTheLeaseLapses() async throws {
        try await EndToEndSandbox.with(servers: 1, agents: 2, k3sVersion: Self.start) { sandbox in
            let (a, b, first, killedRollout) = try await Self.holderUntilAgent1Installs(sandbox)
            await first.killHard()
            let left = try #require(try await sandbox.clusterLease())
            let holder = try #require(left["holderIdentity"] as? String)
            let killedID = try Self.controllerID(sandbox, "ctl-a")
            #expect(holder == "\(killedID) (apply \(killedRollout))", "\(holder)")

            let refused = try await sandbox.controller(Self.apply, config: b)
            #expect(refused.status == 6 && refused.output.contains("the Lease kube-system/upkeep is held by \(holder)"), "\(refused.output)")
            #expect(refused.output.contains("nothing was planned"), "refused before planning: \(refused.output)")
            let lapses = try #require(Self.seconds(left["renewTime"])) + 6
            let live = try await sandbox.controller(["status"], config: b)
            #expect(live.output.contains("cluster Lease kube-system/upkeep: held by \(holder)") && live.output.contains("unless renewed"), "\(live.output)")
            try await Self.bringBack("agent-1", at: Self.next, sandbox)
            while Date().timeIntervalSince1970 < lapses + 0.5 { try await Task.sleep(for: .milliseconds(200)) }
            let expired = try await sandbox.controller(["status"], config: b)
            #expect(expired.output.contains("EXPIRED at "), "\(expired.output)")

            let taken = try await sandbox.controller(Self.apply, config: b, timeoutSeconds: 240)
            #expect(taken.status == 0, "the second controller should take over and finish:\n\(taken.output)")
            #expect(taken.output.contains("took the cluster Lease over from \(holder)"), "\(taken.output)")
            let after = try #require(try await sandbox.clusterLease())
            #expect((after["holderIdentity"] as? String ?? "").isEmpty && after["leaseTransitions"] as? Int == 1, "\(after)")
            try await sandbox.expectAllNodes(at: Self.next, "after the takeover")
            let history = try JSONDecoder().decode([RolloutRecord].self, from: Data(try await sandbox.controller(["history", "-o", "json"], config: b).output.utf8))
            #expect(history.count == 1 && history.first?.steps.last?.node == "agent-2" && history.first?.steps.contains { $0.node == "server-1" } == false,
                    "it planned what was left: \(history.map { $0.steps.map(\.node) })")

            // The killed controller's rollout is its operator's to give up (its process is gone).
            let abandoned = try await sandbox.controller(["abandon", "--yes", "--force-takeover"], config: a)
            #expect(abandoned.status == 0 && abandoned.output.contains("rollout \(killedRollout) abandoned"), "\(abandoned.output)")
            #expect(abandoned.output.contains("the cluster Lease kube-system/upkeep does not name this controller"), "\(abandoned.output)")
        }
    }

    /// The holder is paused (SIGSTOP) mid-rollout, agent-1 installing, while its process lives.
    /// Its Lease lapses; the operator brings agent-1 back and the other controller takes the Lease
    /// over and drives the nodes. When the paused one continues (SIGCONT) it sees it lost the
    /// Lease and stops without beginning any operation on any node (the agents' journals) —
    /// neither agent-1's uncordon and commit that were its next steps, nor anything else — its
    /// rollout recorded blocked with the reason.
    @Test func aPausedHolderIsTakenOverAndWhenItContinuesItStopsWithoutTouchingANode() async throws {
        try await EndToEndSandbox.with(servers: 1, agents: 2, k3sVersion: Self.start) { sandbox in
            let (a, b, paused, pausedRollout) = try await Self.holderUntilAgent1Installs(sandbox)
            #expect(kill(paused.pid, SIGSTOP) == 0)
            defer { kill(paused.pid, SIGCONT) }
            let held = try #require(try await sandbox.clusterLease())
            let lapses = try #require(Self.seconds(held["renewTime"])) + 6
            try await Self.bringBack("agent-1", at: Self.next, sandbox)
            while Date().timeIntervalSince1970 < lapses + 0.5 { try await Task.sleep(for: .milliseconds(200)) }

            let taker = try sandbox.start(Self.apply, config: b)
            // Once the taker has begun an operation on a node, the paused controller runs again.
            let nodes = sandbox.manifest.nodes.map(\.name)
            let deadline = Date().addingTimeInterval(120)
            while !nodes.contains(where: { sandbox.journalBegan($0).contains { !$0.id.hasPrefix(pausedRollout + ":") } }) {
                try #require(Date() < deadline && Spawn.isAlive(taker.pid), "the second controller began nothing:\n\(taker.output)")
                try await Task.sleep(for: .milliseconds(50))
            }
            let continuedAt = Int64(Date().timeIntervalSince1970 * 1000)
            #expect(kill(paused.pid, SIGCONT) == 0)
            let pausedCode = await paused.exitCode(timeoutSeconds: 60)
            #expect(pausedCode == 6, "the paused controller should stop with the lease code:\n\(paused.output)")
            #expect(paused.output.contains("lost its lock") && paused.output.contains("stopped rollout \(pausedRollout) without acting further"),
                    "\(paused.output)")
            let takerCode = await taker.exitCode(timeoutSeconds: 240)
            #expect(takerCode == 0, "the second controller should finish:\n\(taker.output)")

            // The journals: everything the paused controller began, it began before it was
            // continued, and before the taker's first operation.
            let began = nodes.flatMap { node in sandbox.journalBegan(node).map { (node: node, id: $0.id, at: $0.atUnixMs) } }
            let mine = began.filter { $0.id.hasPrefix(pausedRollout + ":") }, theirs = began.filter { !$0.id.hasPrefix(pausedRollout + ":") }
            let lastMine = try #require(mine.map(\.at).max()), firstTheirs = try #require(theirs.map(\.at).min())
            #expect(lastMine < firstTheirs && lastMine < continuedAt,
                    "the paused controller began \(mine.filter { $0.at >= firstTheirs }.map { "\($0.node) \($0.id)" }) after the takeover")
            #expect(!mine.contains { $0.node == "agent-1" && ($0.id.contains(":uncordon:") || $0.id.contains(":commit:")) }, "\(mine)")
            let status = try await sandbox.controller(["status", "-o", "json"], config: a)
            #expect(status.output.contains("lost the cluster lock"), "\(status.output)")
            let metrics = try await sandbox.controller(["metrics"], config: a)
            #expect(metrics.output.contains(#"upkeep_cluster_lease_events_total{event="lost"} 1"#), "\(metrics.output)")
            let after = try #require(try await sandbox.clusterLease())
            #expect(after["leaseTransitions"] as? Int == 1, "\(after)")
            try await sandbox.expectAllNodes(at: Self.next, "after the takeover")
        }
    }

    // MARK: Helpers

    /// Two controllers' configurations (`ctl-a`, `ctl-b`), and `ctl-a`'s `apply` running until
    /// agent-1 (whose k3s takes 3 s to start) enters its install; and that rollout's id.
    static func holderUntilAgent1Installs(_ sandbox: EndToEndSandbox) async throws -> (a: String, b: String, run: BackgroundRun, rollout: String) {
        let a = try sandbox.controllerConfig("ctl-a", extra: shortLease), b = try sandbox.controllerConfig("ctl-b", extra: shortLease)
        try await sandbox.fault(["agent-1", "slow-start", "3"])
        let run = try sandbox.start(apply, config: a)
        let started = try await run.waitForLine("the rollout's start") { $0.contains("rollout r") && $0.contains(" starts: ") }
        let rollout = try #require(started.split(separator: " ").first { $0.hasPrefix("r") && $0.contains("-") }.map(String.init))
        _ = try await run.waitForPhase("agent-1", "installing")
        // The phase shows as the request leaves; under load the agent begins it later. Stopped
        // before that, the request already on its way would begin after the stop, which no
        // lock can prevent (nothing fences a request that left): wait until the agent began it.
        let deadline = Date().addingTimeInterval(60)
        while !sandbox.journalBegan("agent-1").contains(where: { $0.id.hasPrefix(rollout + ":") && $0.id.contains(":install:") }) {
            try #require(Date() < deadline && Spawn.isAlive(run.pid), "agent-1 never began the install of \(rollout):\n\(run.output)")
            try await Task.sleep(for: .milliseconds(50))
        }
        return (a, b, run, rollout)
    }

    /// What an operator does for a node a stopped rollout left cordoned: waits for it to be
    /// Ready (at `version` when its agent began the install, which it finishes on its own),
    /// uncordons it, and waits for every Longhorn volume to be healthy again, as kubectl shows them.
    static func bringBack(_ node: String, at version: String, _ sandbox: EndToEndSandbox) async throws {
        let kubectl = ["--kubeconfig", "\(sandbox.directory)/kubeconfig"]
        // A request already on its way when the controller stopped still reaches the agent.
        try await Task.sleep(for: .seconds(1))
        let installing = sandbox.journalBegan(node).contains { $0.id.contains(":install:") }
        let deadline = Date().addingTimeInterval(90)
        while true {
            let view = try await sandbox.nodes()[node]
            if view?.ready == true && (!installing || view?.version == version) { break }
            try #require(Date() < deadline, "\(node) is not Ready\(installing ? " at \(version)" : ""): \(String(describing: view))")
            try await Task.sleep(for: .milliseconds(200))
        }
        let uncordoned = try await ProcessRun.run("kubectl", kubectl + ["uncordon", node], timeoutSeconds: 30)
        try #require(uncordoned.status == 0, "kubectl uncordon \(node): \(uncordoned.output)")
        while true {
            let volumes = try await ProcessRun.run("kubectl", kubectl + ["get", "volumes.longhorn.io", "-n", "longhorn-system", "-o",
                                                                          "jsonpath={.items[*].status.robustness}"], timeoutSeconds: 30)
            let states = volumes.output.split(separator: " ")
            if volumes.status == 0 && states.allSatisfy({ $0 == "healthy" || $0 == "unknown" }) { return }
            try #require(Date() < deadline, "Longhorn is not healthy again: \(volumes.output)")
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    static func controllerID(_ sandbox: EndToEndSandbox, _ name: String) throws -> String {
        try String(contentsOfFile: "\(sandbox.directory)/\(name)/controller-id", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A Kubernetes MicroTime as seconds since the epoch.
    static func seconds(_ value: Any?) -> Double? {
        guard let text = value as? String else { return nil }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: text)?.timeIntervalSince1970
    }
}

extension EndToEndSandbox {
    /// Every node at `version` and Ready per kubectl (cordoned or not), read until it holds (bounded).
    func expectNodesAt(_ version: String, timeoutSeconds: Double = 30) async throws {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        var seen: [String: NodeView] = [:]
        while Date() < deadline {
            seen = try await nodes()
            if seen.count == manifest.nodes.count && seen.values.allSatisfy({ $0.version == version && $0.ready }) { return }
            try await Task.sleep(for: .milliseconds(500))
        }
        Issue.record("not every node is Ready at \(version): \(seen.values.map(\.description).sorted())")
    }
}
