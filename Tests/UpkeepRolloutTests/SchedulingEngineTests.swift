import Foundation
import Testing
import UpkeepRollout
import UpkeepCore

/// The engine starts each node when every constraint allows, not when its wave ends
/// (docs/planning.md, "Scheduling").
@Suite struct SchedulingEngineTests {
    static func plan(_ inventory: ClusterInventory, concurrency: Int) throws -> Plan {
        try Planner.plan(inventory: inventory, target: v("v1.31.4+k3s1"), available: offered, policy: PlanPolicy(agentConcurrency: concurrency))
    }

    static let fourAgents = ClusterInventory(nodes: [server("server-1", "v1.30.6+k3s1")] + (1...4).map { agent("agent-\($0)", "v1.30.6+k3s1") })

    /// Answers every request but those `held` names, observing between rounds; true once `stop` holds.
    static func run(_ harness: inout EngineHarness, rounds: Int = 40, holding held: (AgentRequest) -> Bool,
                    until stop: (EngineHarness) -> Bool) -> Bool {
        for _ in 0..<rounds {
            if stop(harness) { return true }
            for request in harness.engine.unansweredRequests where !held(request) { harness.answer(request) }
            harness.advance(seconds: 1)
            harness.observe()
        }
        return stop(harness)
    }

    /// Nodes cordoned by requests answered and not yet uncordoned, at the most.
    static func mostCordonedAtOnce(_ harness: EngineHarness) -> Int {
        var cordoned = Set<String>()
        var most = 0
        for request in harness.sentRequests {
            if request.command == .cordon { cordoned.insert(request.node) }
            if request.command == .uncordon { cordoned.remove(request.node) }
            most = max(most, cordoned.count)
        }
        return most
    }

    @Test func aNodeOfTheNextWaveStartsWhenASlotFreesNotWhenTheWaveEnds() throws {
        let plan = try Self.plan(Self.fourAgents, concurrency: 2)
        #expect(plan.waves.map(\.nodes) == [["server-1"], ["agent-1", "agent-2"], ["agent-3", "agent-4"]])
        var harness = try EngineHarness(plan: plan, inventory: Self.fourAgents)
        harness.handle(.start)
        harness.observe()
        harness.runHealthy(until: { $0.notices.contains("hop 1 s1: done") })
        // agent-2's install stays unanswered: under a wave barrier nothing of w2 could start.
        let agent2Install = { (request: AgentRequest) in request.node == "agent-2" && request.command.name == "install" }
        let started = Self.run(&harness, holding: agent2Install) { harness in
            harness.sentRequests.contains { $0.node == "agent-4" && $0.command == .cordon }
        }
        #expect(started)
        #expect(harness.engine.unansweredRequests.contains(where: agent2Install))
        #expect(harness.notices.contains("hop 1 w2: gate passed, starting agent-3"))
        #expect(!harness.notices.contains("hop 1 w1: done"))
        #expect(Self.mostCordonedAtOnce(harness) <= 2)
        harness.runHealthy()
        #expect(harness.outcome == .completed)
        #expect(Self.mostCordonedAtOnce(harness) <= 2)
        #expect(harness.notices.contains("hop 1 w1: done") && harness.notices.contains("hop 1 w2: done"))
    }

    @Test func noMoreThanTheConcurrencyAreCordonedAtOnce() throws {
        let plan = try Self.plan(Self.fourAgents, concurrency: 2)
        var harness = try EngineHarness(plan: plan, inventory: Self.fourAgents)
        harness.handle(.start)
        harness.observe()
        harness.runHealthy(until: { $0.notices.contains("hop 1 s1: done") })
        // No install answered: both slots stay taken, nobody else starts.
        _ = Self.run(&harness, rounds: 20, holding: { $0.command.name == "install" }, until: { _ in false })
        let cordons = harness.sentRequests.filter { $0.command == .cordon }.map(\.node)
        #expect(cordons == ["server-1", "agent-1", "agent-2"])
    }

    @Test func aNodeRebuildingItsReplicasKeepsItsVolumesPartnersWaiting() throws {
        // pvc-x has its two replicas on agent-1 and agent-3; pvc-y keeps agent-1 settling.
        var inventory = ClusterInventory(nodes: [server("server-1", "v1.30.6+k3s1")] + (1...3).map { agent("agent-\($0)", "v1.30.6+k3s1") })
        inventory.volumes = [volume("pvc-x", on: ["agent-1", "agent-3"]), volume("pvc-y", on: ["agent-1", "server-1"])]
        let plan = try Self.plan(inventory, concurrency: 2)
        #expect(plan.waves.map(\.nodes) == [["server-1"], ["agent-1", "agent-2"], ["agent-3"]])
        var harness = try EngineHarness(plan: plan, inventory: inventory)
        harness.handle(.start)
        harness.observe()
        harness.runHealthy(until: { $0.notices.contains("hop 1 s1: done") })
        // Once agent-1 is back, its replica of pvc-y rebuilds (pvc-x's looks healthy): it settles.
        let settling = Self.run(&harness, holding: { _ in false }) { harness in
            harness.sentRequests.contains { $0.node == "agent-1" && $0.command == .uncordon }
        }
        #expect(settling)
        harness.cluster.inventory.volumes[1] = InventoryVolume(
            name: "pvc-y", replicasWanted: 2, state: .attached, robustness: .degraded, attachedNode: "server-1",
            replicas: [InventoryReplica(node: "agent-1", running: true, healthy: false), InventoryReplica(node: "server-1")])
        _ = Self.run(&harness, rounds: 20, holding: { _ in false }, until: { _ in false })
        // Slots are free (agent-1 and agent-2 are back and uncordoned), but agent-3 down while
        // agent-1 rebuilds would leave pvc-x without a replica it can count on.
        #expect(harness.sentRequests.filter { $0.command == .uncordon }.map(\.node).suffix(2).sorted() == ["agent-1", "agent-2"])
        #expect(!harness.sentRequests.contains { $0.node == "agent-1" && $0.command.name == "commit" })
        #expect(!harness.sentRequests.contains { $0.node == "agent-3" && $0.command == .cordon })
        #expect(harness.engine.status == .running)
        harness.cluster.inventory.volumes[1] = volume("pvc-y", on: ["agent-1", "server-1"])
        harness.runHealthy()
        #expect(harness.outcome == .completed)
        let order = harness.sentRequests.filter { $0.command == .cordon || $0.command.name == "commit" }.map { "\($0.command.name) \($0.node)" }
        let commit1 = try #require(order.firstIndex(of: "commit agent-1"))
        let cordon3 = try #require(order.firstIndex(of: "cordon agent-3"))
        #expect(commit1 < cordon3)
    }

    /// server-1, agent-1..3. pvc-1 and pvc-2 have one replica on their agent, the other on
    /// server-1 (so agent-1 and agent-2 share a wave); pvc-3 keeps agent-3 waiting while agent-1
    /// is busy; pvc-4 is on nodes no move in flight holds.
    static let threeAgentVolumes = ClusterInventory(
        nodes: [server("server-1", "v1.30.6+k3s1")] + (1...3).map { agent("agent-\($0)", "v1.30.6+k3s1") },
        volumes: [volume("pvc-1", on: ["agent-1", "server-1"]), volume("pvc-2", on: ["agent-2", "server-1"]),
                  volume("pvc-3", on: ["agent-3", "agent-1"]), volume("pvc-4", on: ["server-1", "agent-3"])])

    /// `volume`'s replica on `node` rebuilding (not a complete copy yet), the others healthy.
    static func rebuilding(_ volume: InventoryVolume, on node: String) -> InventoryVolume {
        var copy = volume
        copy.robustness = .degraded
        copy.replicas = volume.replicas.map { InventoryReplica(node: $0.node, running: true, healthy: $0.node != node) }
        return copy
    }

    /// agent-1 and agent-2 back and uncordoned, both settling, each with its own replica rebuilding.
    static func bothSettling() throws -> EngineHarness {
        let plan = try Self.plan(Self.threeAgentVolumes, concurrency: 2)
        #expect(plan.waves.map(\.nodes) == [["server-1"], ["agent-1", "agent-2"], ["agent-3"]])
        var harness = try EngineHarness(plan: plan, inventory: Self.threeAgentVolumes)
        harness.handle(.start)
        harness.observe()
        harness.runHealthy(until: { $0.notices.contains("hop 1 s1: done") })
        let uncordon = { (request: AgentRequest) in request.command == .uncordon && request.node != "server-1" }
        let back = Self.run(&harness, holding: uncordon) { harness in harness.engine.unansweredRequests.filter(uncordon).count == 2 }
        #expect(back)
        // Back at the new version: Longhorn rebuilds both nodes' replicas from server-1's.
        let healthy = Self.threeAgentVolumes.volumes
        harness.cluster.inventory.volumes[0] = Self.rebuilding(healthy[0], on: "agent-1")
        harness.cluster.inventory.volumes[1] = Self.rebuilding(healthy[1], on: "agent-2")
        _ = Self.run(&harness, rounds: 10, holding: { _ in false }, until: { _ in false })
        #expect(harness.engine.progress.filter { $0.node.hasPrefix("agent-") && $0.node != "agent-3" }.map(\.phase) == ["settling", "settling"])
        return harness
    }

    static func committed(_ node: String, _ harness: EngineHarness) -> Bool {
        harness.sentRequests.contains { $0.node == node && $0.command.name == "commit" }
    }

    @Test func aNodeWhoseReplicasAreRebuiltFinishesWhileAnotherStillRebuilds() throws {
        var harness = try Self.bothSettling()
        harness.cluster.inventory.volumes[0] = Self.threeAgentVolumes.volumes[0]
        // agent-2's rebuild is agent-2's concern: agent-1's move is final without waiting for it.
        let finished = Self.run(&harness, holding: { _ in false }) { harness in
            harness.engine.progress.contains { $0.node == "agent-1" && $0.stage == .done }
        }
        #expect(finished)
        #expect(Self.committed("agent-1", harness))
        #expect(!Self.committed("agent-2", harness))
        #expect(harness.engine.progress.first { $0.node == "agent-2" }?.phase == "settling")
        #expect(harness.engine.status == .running)
        harness.cluster.inventory.volumes[1] = Self.threeAgentVolumes.volumes[1]
        harness.runHealthy()
        #expect(harness.outcome == .completed)
    }

    @Test func aNodeWaitsForItsOwnReplicasAndForVolumesNoMoveInFlightDegraded() throws {
        var harness = try Self.bothSettling()
        let healthy = Self.threeAgentVolumes.volumes
        _ = Self.run(&harness, rounds: 20, holding: { _ in false }, until: { _ in false })
        #expect(!Self.committed("agent-1", harness) && !Self.committed("agent-2", harness))
        // agent-1's replica is rebuilt, but pvc-4's on server-1 (its move done) failed: no move
        // in flight explains that, so agent-1 waits too.
        harness.cluster.inventory.volumes[0] = healthy[0]
        harness.cluster.inventory.volumes[3] = Self.rebuilding(healthy[3], on: "server-1")
        _ = Self.run(&harness, rounds: 20, holding: { _ in false }, until: { _ in false })
        #expect(!Self.committed("agent-1", harness) && !Self.committed("agent-2", harness))
        #expect(!harness.sentRequests.contains { $0.node == "agent-3" && $0.command == .cordon })
        harness.cluster.inventory.volumes[3] = healthy[3]
        let finished = Self.run(&harness, holding: { _ in false }) { Self.committed("agent-1", $0) }
        #expect(finished)
        #expect(!Self.committed("agent-2", harness))
        harness.cluster.inventory.volumes[1] = healthy[1]
        harness.runHealthy()
        #expect(harness.outcome == .completed)
    }

    @Test func theNextHopWaitsForEveryNodeOfThePreviousOne() throws {
        // Lagging agents catch up first (hop 1), then the server and agents go to v1.31 (hop 2):
        // hop 2's server never starts beside hop 1's last unfinished agent (skew).
        let inventory = ClusterInventory(nodes: [server("server-1", "v1.30.6+k3s1")] + (1...3).map { agent("agent-\($0)", "v1.27.16+k3s1") })
        let plan = try Self.plan(inventory, concurrency: 3)
        let first = try #require(plan.hops.first { $0.waves.contains { $0.nodes.contains("agent-3") } })
        let next = try #require(plan.hops.first { $0.number == first.number + 1 })
        #expect(next.waves[0].nodes == ["server-1"])
        var harness = try EngineHarness(plan: plan, inventory: inventory)
        harness.handle(.start)
        harness.observe()
        let agentCommit = { (request: AgentRequest) in request.node == "agent-3" && request.command.name == "commit" }
        _ = Self.run(&harness, rounds: 60, holding: agentCommit, until: { _ in false })
        #expect(harness.engine.unansweredRequests.contains(where: agentCommit))
        let upToFirst = plan.hops.prefix(first.number).flatMap { $0.waves.flatMap(\.nodes) }
        for node in next.waves[0].nodes {
            let cordons = harness.sentRequests.filter { $0.node == node && $0.command == .cordon }.count
            #expect(cordons == upToFirst.filter { $0 == node }.count, "\(node) of hop \(next.number) started beside hop \(first.number)")
        }
        harness.runHealthy()
        #expect(harness.outcome == .completed)
    }
}
