import Testing
import UpkeepRollout
import UpkeepCore

/// The controller lost the cluster lock: the engine blocks at once and sends nothing, not even
/// to wind a node down; `resume` (once the lock is held again) asks again with the same ids.
@Suite struct LockLostEngineTests {
    /// A patch hop (binaries back), one server and two agents that share no volume: both agents
    /// go in one wave of two.
    static let inventory = ClusterInventory(nodes: [server("server-1", "v1.31.2+k3s1", etcd: false), agent("agent-1", "v1.31.2+k3s1"),
                                                    agent("agent-2", "v1.31.2+k3s1")])

    static func harness() throws -> EngineHarness {
        let plan = try Planner.plan(inventory: inventory, target: v("v1.31.4+k3s1"), available: offered, policy: PlanPolicy(agentConcurrency: 2))
        return try EngineHarness(plan: plan, inventory: inventory)
    }

    @Test func losingTheLockBlocksAtOnceSendsNothingAndResumeAsksAgainWithTheSameIDs() throws {
        var harness = try Self.harness()
        let first = harness.runToFirstInstall()
        let install = try #require(first)
        #expect(install.node == "server-1")
        let actions = harness.handle(.lockLost(reason: "ctl-b (apply r7) holds it now"))
        #expect(EngineHarness.sent(actions).isEmpty && !actions.contains(.observeCluster))
        #expect(!actions.contains { if case .wake = $0 { true } else { false } })
        guard case .blocked(let reason) = harness.engine.status else {
            Issue.record("expected blocked, got \(harness.engine.status)")
            return
        }
        #expect(reason.contains("lost the cluster lock (ctl-b (apply r7) holds it now)") && reason.contains("`upkeep resume`"), "\(reason)")
        #expect(harness.notices.contains("server-1: left cordoned by Upkeep: still in progress"), "\(harness.notices)")
        #expect(harness.engine.unansweredRequests == [install], "the install stays unanswered, to be asked again")

        // Time passing starts nothing: the rollout waits for `resume` (the runtime feeds it
        // nothing more once the lock is lost; a later run resumes it).
        harness.advance(seconds: 60)
        #expect(EngineHarness.sent(harness.handle(.tick)).isEmpty && harness.isBlocked)
        let after = harness.sentRequests.count

        let resumed = harness.handle(.resume)
        #expect(harness.engine.status == .running && EngineHarness.sent(resumed).contains(install), "the same install is asked again")
        harness.runHealthy()
        #expect(harness.outcome == .completed && harness.sentRequests.count > after)
    }

    /// Lost while a failure stops the wave (agent-1 failed, agent-2's install in flight): the
    /// block keeps the stop, and `resume` goes on stopping and rolls back, as it would have.
    @Test func aStopUnderWayIsKeptAcrossTheBlock() throws {
        var harness = try Self.harness()
        harness.handle(.start)
        harness.observe()
        var installs: [AgentRequest] = []
        for _ in 0..<200 where installs.count < 2 {
            let open = harness.engine.unansweredRequests
            installs = open.filter { $0.command.name == "install" && $0.node.hasPrefix("agent-") }
            guard installs.count < 2 else { break }
            if open.isEmpty {
                harness.advance(seconds: 1)
                harness.observe()
            }
            for request in open where !(request.command.name == "install" && request.node.hasPrefix("agent-")) { harness.answer(request) }
        }
        try #require(installs.count == 2, "both agents install at once: \(harness.engine.unansweredRequests)")
        harness.answer(installs[0], failInstall: true)
        #expect(harness.engine.status == .stopping)
        harness.handle(.lockLost(reason: "not renewed for 40 s"))
        #expect(harness.isBlocked)
        harness.handle(.resume)
        #expect(harness.engine.status == .stopping, "resume goes on stopping")
        harness.runHealthy()
        guard case .rolledBack(let cause)? = harness.outcome else {
            Issue.record("expected a rollback, got \(String(describing: harness.outcome))")
            return
        }
        #expect(cause.contains(installs[0].node), "\(cause)")
    }

    /// While it restarts the only server the rollout itself keeps the API down; never otherwise.
    @Test func theOnlyServerRestartingKeepsTheAPIDown() throws {
        var harness = try Self.harness()
        #expect(!harness.engine.takesTheAPIDown)
        let first = harness.runToFirstInstall()
        let install = try #require(first)
        #expect(harness.engine.takesTheAPIDown, "server-1 is installing")
        harness.answer(install)
        harness.advance(seconds: 1)
        harness.observe()
        #expect(!harness.engine.takesTheAPIDown, "server-1 is back and seen Ready")
        harness.runHealthy()
        #expect(harness.outcome == .completed && !harness.engine.takesTheAPIDown)

        // With three servers the API stays up while one restarts.
        let three = ClusterInventory(nodes: ["server-1", "server-2", "server-3"].map { server($0, "v1.31.2+k3s1") })
        let plan = try Planner.plan(inventory: three, target: v("v1.31.4+k3s1"), available: offered, policy: PlanPolicy(agentConcurrency: 1))
        var ha = try EngineHarness(plan: plan, inventory: three)
        #expect(ha.runToFirstInstall() != nil && !ha.engine.takesTheAPIDown)
    }

    @Test func aRecoveryKeepsTheAPIDownFromItsStart() throws {
        let snapshot = RestoreSnapshot(backupID: "b1", version: v("v1.31.2+k3s1"), takenAt: Instant(milliseconds: 0), node: "server-1")
        let engine = try RolloutEngine(recoveryID: "v1", snapshot: snapshot,
                                       servers: [RecoveryNode(name: "server-1", role: .server, arch: .amd64, version: v("v1.31.4+k3s1"))],
                                       agents: [], policy: RolloutPolicy(), agentConcurrency: 1)
        #expect(engine.takesTheAPIDown)
    }
}
