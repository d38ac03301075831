import Foundation
import Testing
import UpkeepRollout
import UpkeepCore

/// `--nodes`, `--exclude`, `--selector` (resolved to names before planning) and `--canary`.
@Suite struct SelectionPlannerTests {
    static func plan(_ inventory: ClusterInventory, to target: String, only nodes: [String]? = nil, how: String = "--nodes",
                     concurrency: Int = 2, canaries: Int = 0, soak: Int = 0) throws(PlanError) -> Plan {
        try Planner.plan(inventory: inventory, target: v(target), available: offered,
                         policy: PlanPolicy(agentConcurrency: concurrency, selection: nodes.map { NodeSelection(nodes: $0, how: how) },
                                            canaryAgents: canaries, canarySoakSeconds: soak))
    }

    static func problems(_ body: () throws(PlanError) -> Plan) -> [PlanProblem] {
        do {
            _ = try body()
            return []
        } catch {
            return error.problems
        }
    }

    @Test func onlyTheSelectedNodesMoveAndTheRestAreSaidToBeLeftAlone() throws {
        let plan = try Self.plan(smallCluster("v1.31.0+k3s1"), to: "v1.31.4+k3s1", only: ["server-1", "agent-2"], how: "--nodes server-1,agent-2")
        #expect(plan.script == ["1 s1 server-1 v1.31.0+k3s1 → v1.31.4+k3s1", "1 w1 agent-2 v1.31.0+k3s1 → v1.31.4+k3s1"])
        #expect(plan.unchanged.map(\.node) == ["server-2", "server-3", "agent-1", "agent-3"])
        #expect(plan.unchanged.allSatisfy { $0.reason == "not selected (--nodes server-1,agent-2)" })
        #expect(plan.warnings.contains { $0.hasPrefix("only the selected nodes move (--nodes server-1,agent-2); 4 left alone:") })
    }

    @Test func agentsAloneMayNotGoPastTheServersMinor() {
        // Servers stay on v1.30; the agents asked to go to v1.31 would be newer than them.
        let found = Self.problems { () throws(PlanError) in
            try Self.plan(smallCluster("v1.30.6+k3s1"), to: "v1.31.4+k3s1", only: ["agent-1", "agent-2", "agent-3"], how: "--selector pool=blue")
        }
        #expect(found.count == 3)
        let text = found.first.map(\.description) ?? ""
        #expect(text.hasPrefix("--selector pool=blue: agent agent-1 would run v1.31.4+k3s1 while server server-1, not selected, stays at v1.30.6+k3s1: "
                               + "a kubelet must never be newer than an API server"), "\(text)")
        #expect(text.contains("select server-1 too (servers go first), or choose a target no newer than v1.30"))
    }

    @Test func agentsAloneMayCatchUpToTheServers() throws {
        let inventory = ClusterInventory(nodes: [server("server-1", "v1.31.4+k3s1"), agent("agent-1", "v1.29.9+k3s1"), agent("agent-2", "v1.31.4+k3s1")],
                                         volumes: [])
        let plan = try Self.plan(inventory, to: "v1.31.4+k3s1", only: ["agent-1"], how: "--exclude server-1")
        #expect(plan.script == ["1 w1 agent-1 v1.29.9+k3s1 → v1.31.4+k3s1"])
    }

    @Test func aServerAloneMayNotLeaveTheOthersMoreThanAMinorBehind() {
        let found = Self.problems { () throws(PlanError) in
            try Self.plan(smallCluster("v1.29.9+k3s1"), to: "v1.31.4+k3s1", only: ["server-1"], how: "--nodes server-1")
        }
        #expect(found.contains { $0.description.contains("server server-1 would run v1.31.4+k3s1 while server-2, not selected, stays at v1.29.9+k3s1") })
    }

    @Test func anAgentLeftBehindMayNotLagBeyondTheSkewPolicy() {
        // Servers to v1.32 would leave an excluded v1.28 agent four minors behind.
        let inventory = ClusterInventory(nodes: [server("server-1", "v1.31.4+k3s1"), agent("agent-1", "v1.28.15+k3s1"), agent("agent-2", "v1.31.4+k3s1")],
                                         volumes: [])
        let found = Self.problems { () throws(PlanError) in
            try Self.plan(inventory, to: "v1.32.1+k3s1", only: ["server-1", "agent-2"], how: "--exclude agent-1")
        }
        #expect(found.map(\.description) == ["--exclude agent-1: agent agent-1, not selected, stays at v1.28.15+k3s1 while server server-1 goes to "
                                             + "v1.32.1+k3s1: a kubelet may lag at most 3 minors behind the API servers "
                                             + "(https://kubernetes.io/releases/version-skew-policy/); select agent-1 too, or choose a nearer target"])
    }

    @Test func anUnknownNameAndAnEmptySelectionAreRefused() {
        let unknown = Self.problems { () throws(PlanError) in
            try Self.plan(smallCluster("v1.31.0+k3s1"), to: "v1.31.4+k3s1", only: ["agent-9"], how: "--nodes agent-9")
        }
        #expect(unknown.first == .unknownNodes(["agent-9"], how: "--nodes agent-9"))
        let none = Self.problems { () throws(PlanError) in
            try Self.plan(smallCluster("v1.31.0+k3s1"), to: "v1.31.4+k3s1", only: [], how: "--selector pool=none")
        }
        #expect(none.contains(.nothingSelected(how: "--selector pool=none")))
    }

    @Test func aNodeNotReadyThatIsNotSelectedIsAWarningNotARefusal() throws {
        var inventory = smallCluster("v1.31.0+k3s1")
        inventory.nodes[5].ready = false  // agent-3
        let plan = try Self.plan(inventory, to: "v1.31.4+k3s1", only: ["server-1", "server-2", "server-3", "agent-1", "agent-2"], how: "--exclude agent-3")
        #expect(plan.warnings.contains("agent-3 not Ready but not selected: the rollout does not wait for it"))
        #expect(!plan.waves.flatMap(\.nodes).contains("agent-3"))
    }

    @Test func canariesGoAloneFirstThenTheRestInWaves() throws {
        let plan = try Self.plan(smallCluster("v1.31.0+k3s1"), to: "v1.31.4+k3s1", concurrency: 2, canaries: 1, soak: 600)
        #expect(plan.waves.map(\.label) == ["s1", "s2", "s3", "c1", "w1"])
        #expect(plan.script.suffix(3) == ["1 c1 agent-1 v1.31.0+k3s1 → v1.31.4+k3s1", "1 w1 agent-2 v1.31.0+k3s1 → v1.31.4+k3s1",
                                          "1 w1 agent-3 v1.31.0+k3s1 → v1.31.4+k3s1"])
        let canary = try #require(plan.waves.first { $0.isCanary })
        #expect(canary.reason == "canary 1 of 1: goes alone, before the other agents; then a soak of 600 s and the gates before the rest")
        #expect(plan.headline().contains("1 canary agent alone, a soak of 600 s and the gates, then 1 agent wave of at most 2"))
    }

    @Test func moreCanariesThanAgentsMakesEveryAgentACanary() throws {
        let plan = try Self.plan(smallCluster("v1.31.0+k3s1"), to: "v1.31.4+k3s1", canaries: 5)
        #expect(plan.waves.map(\.label) == ["s1", "s2", "s3", "c1", "c2", "c3"])
        #expect(plan.waves.last?.reason == "canary 3 of 5: goes alone, before the other agents")
    }

    @Test func canariesAreTheFirstSelectedAgents() throws {
        let plan = try Self.plan(smallCluster("v1.31.0+k3s1"), to: "v1.31.4+k3s1", only: ["agent-2", "agent-3"], how: "--selector pool=b",
                                 canaries: 1)
        #expect(plan.script == ["1 c1 agent-2 v1.31.0+k3s1 → v1.31.4+k3s1", "1 w1 agent-3 v1.31.0+k3s1 → v1.31.4+k3s1"])
    }

    @Test func aPlanWithoutSelectionOrCanariesEncodesAsBefore() throws {
        // Persisted plans and `plan -o json` keep their shape: no new keys unless used.
        let plan = try Self.plan(smallCluster("v1.31.0+k3s1"), to: "v1.31.4+k3s1")
        let json = String(decoding: try JSONEncoder().encode(plan), as: UTF8.self)
        #expect(!json.contains("canary") && !json.contains("selection"))
    }
}
