import Foundation
import Testing
import UpkeepRollout
import UpkeepCore

@Suite struct RolloutEngineTests {
    static let inventory = ClusterInventory(
        nodes: [server("server-1", "v1.30.6+k3s1"), agent("agent-1", "v1.30.6+k3s1"), agent("agent-2", "v1.30.6+k3s1", cordoned: true)],
        volumes: [volume("pvc-a", on: ["agent-1", "agent-2"])])

    static func plan(_ inventory: ClusterInventory = inventory, concurrency: Int = 1) throws -> Plan {
        try Planner.plan(inventory: inventory, target: v("v1.31.4+k3s1"), available: offered, policy: PlanPolicy(agentConcurrency: concurrency))
    }

    @Test func eachNodeGoesThroughTheStepsInOrderWithDeterministicOperationIDs() throws {
        var harness = try EngineHarness(plan: Self.plan(), inventory: Self.inventory)
        let first = harness.handle(.start)
        #expect(first.contains(.observeCluster))
        harness.observe()
        harness.runHealthy()
        #expect(harness.outcome == .completed)
        let server = harness.sentRequests.filter { $0.node == "server-1" }.map { "\($0.operationID) \($0.command.name)" }
        #expect(server == ["r1:f0:cordon:1 cordon", "r1:f0:stage:1 stage", "r1:f0:drain:1 drain", "r1:f0:install:1 install",
                           "r1:f0:uncordon:1 uncordon", "r1:f0:commit:1 commit"])
        // agent-2 was cordoned before: it is drained and upgraded, but never uncordoned.
        let cordonedBefore = harness.sentRequests.filter { $0.node == "agent-2" }.map(\.command.name)
        #expect(cordonedBefore == ["stage", "cordon", "drain", "install", "commit"])
        #expect(harness.notices.contains("agent-2: already cordoned (stays cordoned)"))
        #expect(harness.engine.cordonedByUpkeep.isEmpty && harness.engine.openWatches.isEmpty)
    }

    @Test func installWaitsForTheAPIToShowTheNodeReadyAtTheNewVersion() throws {
        var harness = try EngineHarness(plan: Self.plan(), inventory: Self.inventory)
        let first = harness.runToFirstInstall()
        let install = try #require(first)
        harness.handle(.replied(operationID: install.operationID, .installed(version: v("v1.31.4+k3s1"))))
        // The API still shows the old version: no uncordon yet.
        harness.advance(seconds: 5)
        harness.observe()
        #expect(!harness.engine.unansweredRequests.contains { $0.command == .uncordon })
        harness.setNode("server-1", version: v("v1.31.4+k3s1"))
        harness.advance(seconds: 5)
        harness.observe()
        #expect(harness.engine.unansweredRequests.map(\.command) == [.uncordon])
    }

    @Test func aLostAnswerIsRetriedWithTheSameOperationIDAndALateDuplicateIsIgnored() throws {
        var harness = try EngineHarness(plan: Self.plan(), inventory: Self.inventory)
        harness.handle(.start)
        harness.observe()
        let cordon = try #require(harness.engine.unansweredRequests.first { $0.command == .cordon })
        let failed = harness.handle(.requestFailed(operationID: cordon.operationID, message: "connection reset"))
        #expect(EngineHarness.sent(failed).isEmpty)
        #expect(failed.contains(.wake(at: harness.now.adding(milliseconds: 1000))))
        harness.advance(seconds: 1)
        let retried = harness.handle(.tick)
        #expect(EngineHarness.sent(retried) == [cordon])
        harness.handle(.replied(operationID: cordon.operationID, .cordoned(wasUnschedulable: false)))
        let drain = try #require(harness.engine.unansweredRequests.first { $0.command.name == "drain" })
        // The first send's answer arrives late: nothing happens twice.
        let duplicate = harness.handle(.replied(operationID: cordon.operationID, .cordoned(wasUnschedulable: false)))
        #expect(duplicate.isEmpty)
        #expect(harness.engine.unansweredRequests.filter { $0.command.name == "drain" } == [drain])
    }

    @Test func anAgentThatNeverAnswersBlocksTheRolloutAndResumeAsksAgainWithTheSameID() throws {
        var harness = try EngineHarness(plan: Self.plan(), inventory: Self.inventory,
                                        policy: RolloutPolicy(requestTriesMax: 3, pollIntervalMilliseconds: 1000))
        harness.handle(.start)
        harness.observe()
        let cordon = try #require(harness.engine.unansweredRequests.first { $0.command == .cordon })
        for _ in 0..<3 {
            harness.handle(.requestFailed(operationID: cordon.operationID, message: "connection refused"))
            harness.advance(seconds: 60)
            harness.handle(.tick)
        }
        guard case .blocked(let reason) = harness.engine.status else {
            Issue.record("expected blocked, got \(harness.engine.status)")
            return
        }
        #expect(reason.contains("the agent on server-1 did not answer cordon (3 tries"))
        let resumed = harness.handle(.resume)
        #expect(EngineHarness.sent(resumed).contains(cordon))
        harness.runHealthy()
        #expect(harness.outcome == .completed)
    }

    @Test func abandoningFinishesAtOnceSendsNothingAndSaysWhatIsLeftOnWhichNode() throws {
        var harness = try EngineHarness(plan: Self.plan(), inventory: Self.inventory)
        // server-1 cordoned, drained and installed (its watch open, not committed); its uncordon unanswered.
        let first = harness.runToFirstInstall()
        let install = try #require(first)
        harness.answer(install)
        harness.advance(seconds: 1)
        harness.observe()
        let uncordon = try #require(harness.engine.unansweredRequests.first { $0.command == .uncordon })
        #expect(harness.engine.openWatches == [install.operationID])

        let actions = harness.handle(.abandon(reason: "server-1 replaced by hand"))
        #expect(EngineHarness.sent(actions).isEmpty)
        #expect(!actions.contains(.observeCluster))
        #expect(!actions.contains { if case .wake = $0 { true } else { false } })
        #expect(harness.outcome == .abandoned(reason: "server-1 replaced by hand"))
        #expect(harness.engine.status == .finished(.abandoned(reason: "server-1 replaced by hand")))
        #expect(harness.engine.unansweredRequests.isEmpty)
        let said = harness.notices.suffix(4)
        #expect(said.contains { $0.hasPrefix("server-1: install to v1.31.4+k3s1 not committed") })
        #expect(said.contains("server-1: uncordon was sent and not answered: it may still run on the agent (\(uncordon.operationID))"))
        #expect(said.contains("server-1: left cordoned by Upkeep: `kubectl uncordon server-1` once it is healthy"))
        #expect(said.last == "rollout r1 abandoned: server-1 replaced by hand")
        #expect(harness.engine.cordonedByUpkeep == ["server-1"])

        // Finished: late answers, ticks, resumes and a second abandon change nothing.
        let before = harness.engine
        #expect(harness.handle(.replied(operationID: uncordon.operationID, .uncordoned(true))).isEmpty)
        #expect(harness.handle(.abandon(reason: "again")).isEmpty)
        harness.advance(seconds: 60)
        #expect(EngineHarness.sent(harness.handle(.tick)).isEmpty)
        #expect(harness.handle(.resume) == [.finished(.abandoned(reason: "server-1 replaced by hand"))])
        #expect(harness.engine == before)
    }

    @Test func aFailedInstallRollsBackFinishedNodesInReverseOrder() throws {
        // A patch hop: its way back is a binary swap (a hop that raises the servers' minor is
        // RestoreEngineTests' subject).
        let inventory = ClusterInventory(nodes: [server("server-1", "v1.31.2+k3s1"), server("server-2", "v1.31.2+k3s1"),
                                                 server("server-3", "v1.31.2+k3s1"), agent("agent-1", "v1.31.2+k3s1")])
        var harness = try EngineHarness(plan: Self.plan(inventory), inventory: inventory)
        harness.handle(.start)
        harness.observe()
        harness.runHealthy(failInstallOn: ["server-3"])
        #expect(harness.outcome == .rolledBack(cause: "v1.31.4+k3s1 did not become healthy on server-3; its agent put v1.31.2+k3s1 back: "
                                                   + "probes failed; hop 1 undone: its nodes are back where it found them (v1.31.2+k3s1)"))
        let installs = harness.sentRequests.compactMap { request -> String? in
            guard case .install(let version, _, _) = request.command else { return nil }
            return "\(request.node) \(version)"
        }
        #expect(installs == ["server-1 v1.31.4+k3s1", "server-2 v1.31.4+k3s1", "server-3 v1.31.4+k3s1",
                             "server-2 v1.31.2+k3s1", "server-1 v1.31.2+k3s1"])
        #expect(!harness.sentRequests.contains { $0.node == "agent-1" && $0.command.name != "stage" })
        #expect(harness.engine.cordonedByUpkeep.isEmpty && harness.engine.openWatches.isEmpty)
    }

    @Test func withoutAutoRollbackAFailureStopsAndLeavesFinishedNodesAlone() throws {
        let inventory = ClusterInventory(nodes: [server("server-1", "v1.30.6+k3s1"), server("server-2", "v1.30.6+k3s1")])
        var harness = try EngineHarness(plan: Self.plan(inventory), inventory: inventory,
                                        policy: RolloutPolicy(pollIntervalMilliseconds: 1000, autoRollback: false))
        harness.handle(.start)
        harness.observe()
        harness.runHealthy(failInstallOn: ["server-2"])
        guard case .failed = harness.outcome else {
            Issue.record("expected failed, got \(String(describing: harness.outcome))")
            return
        }
        #expect(harness.sentRequests.filter { $0.command.name == "install" }.count == 2)
        #expect(harness.engine.cordonedByUpkeep.isEmpty)
    }

    @Test func theGateWaitsForLonghornAndBlocksAtItsDeadline() throws {
        var harness = try EngineHarness(plan: Self.plan(), inventory: Self.inventory,
                                        policy: RolloutPolicy(gateTimeoutSeconds: 30, pollIntervalMilliseconds: 1000))
        harness.cluster.inventory.volumes[0].robustness = .degraded
        harness.handle(.start)
        harness.observe()
        #expect(harness.engine.unansweredRequests.allSatisfy { $0.command.name == "stage" || $0.command.name != "cordon" })
        harness.advance(seconds: 31)
        harness.observe()
        guard case .blocked(let reason) = harness.engine.status else {
            Issue.record("expected blocked, got \(harness.engine.status)")
            return
        }
        #expect(reason == "hop 1 s1: the gate did not pass within 30 s: Longhorn volumes not healthy: pvc-a")
        harness.cluster.inventory.volumes[0].robustness = .healthy
        harness.handle(.resume)
        harness.observe()
        harness.runHealthy()
        #expect(harness.outcome == .completed)
    }

    @Test func theGateSplitsAWaveWhoseReplicasMovedTogether() throws {
        // Planned with no volume; by the agents' turn Longhorn keeps both replicas of pvc-b on them.
        let inventory = ClusterInventory(nodes: [server("server-1", "v1.30.6+k3s1"), agent("agent-1", "v1.30.6+k3s1"),
                                                 agent("agent-2", "v1.30.6+k3s1")])
        let plan = try Self.plan(inventory, concurrency: 2)
        #expect(plan.waves.last?.nodes == ["agent-1", "agent-2"])
        var harness = try EngineHarness(plan: plan, inventory: inventory)
        harness.handle(.start)
        harness.observe()
        harness.runHealthy(until: { $0.notices.contains("hop 1 s1: done") })
        harness.cluster.inventory.volumes = [volume("pvc-b", on: ["agent-1", "agent-2"])]
        harness.advance(seconds: 5)
        harness.observe()
        #expect(harness.notices.contains("hop 1 w1: gate passed, starting agent-1; waiting for a later round so a healthy replica stays up: agent-2 (pvc-b)"))
        #expect(harness.engine.unansweredRequests.filter { $0.command == .cordon }.map(\.node) == ["agent-1"])
        harness.runHealthy()
        #expect(harness.outcome == .completed)
        let cordons = harness.sentRequests.filter { $0.command == .cordon || $0.command == .uncordon }.map { "\($0.command.name) \($0.node)" }
        #expect(Array(cordons.suffix(4)) == ["cordon agent-1", "uncordon agent-1", "cordon agent-2", "uncordon agent-2"])
    }

    @Test func aVolumeWithItsOnlyHealthyReplicaOnTheNodeBlocksTheGate() throws {
        var harness = try EngineHarness(plan: Self.plan(), inventory: Self.inventory,
                                        policy: RolloutPolicy(gateTimeoutSeconds: 30, pollIntervalMilliseconds: 1000))
        harness.cluster.inventory.volumes = [volume("pvc-c", on: ["server-1"])]
        harness.handle(.start)
        harness.observe()
        harness.advance(seconds: 31)
        harness.observe()
        #expect(harness.engine.status == .blocked(reason: "hop 1 s1: the gate did not pass within 30 s: taking down server-1 (pvc-c) would take every healthy replica of the volume named offline"))
        #expect(!harness.sentRequests.contains { $0.command == .cordon })
    }

    @Test func stateSurvivesEncodingAndResumeResendsEveryUnansweredRequest() throws {
        var harness = try EngineHarness(plan: Self.plan(), inventory: Self.inventory)
        harness.handle(.start)
        harness.observe()
        let unanswered = harness.engine.unansweredRequests
        #expect(!unanswered.isEmpty)
        let data = try JSONEncoder().encode(harness.engine)
        harness.engine = try JSONDecoder().decode(RolloutEngine.self, from: data)
        let resumed = harness.handle(.resume)
        #expect(EngineHarness.sent(resumed) == unanswered)
        harness.runHealthy()
        #expect(harness.outcome == .completed)
    }

    @Test func setupRefusesBadIDsAndPolicies() throws {
        let plan = try Self.plan()
        #expect(throws: RolloutSetupError.badRolloutID("Bad ID")) { try RolloutEngine(rolloutID: "Bad ID", plan: plan, policy: RolloutPolicy()) }
        #expect {
            try RolloutEngine(rolloutID: "r1", plan: plan, policy: RolloutPolicy(verifyTimeoutSeconds: 300, rebuildTimeoutSeconds: 1800,
                                                                                 watchdogTimeoutSeconds: 600))
        } throws: { error in
            "\(error)".contains("watchdogTimeoutSeconds (600) must exceed verifyTimeoutSeconds + rebuildTimeoutSeconds (2100)")
        }
    }
}
