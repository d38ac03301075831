import Testing
import UpkeepCore
import UpkeepRollout

/// An agent that restarted during a step answers its id `interrupted` (PROTOCOL.md 9.2): the
/// step was not done and nothing is known about the version. The engine sends it again under
/// the next attempt id, a bounded number of times, and never counts it as a failed upgrade.
@Suite struct InterruptedStepTests {
    private static let interrupted = AgentReply.refused(code: AgentReply.interruptedCode,
                                                        message: "the agent restarted during this install before k3s was restarted; install again with a new operation id")

    @Test func anInterruptedInstallIsSentAgainUnderTheNextAttemptAndTheRolloutCompletes() throws {
        var harness = try EngineHarness(plan: RolloutEngineTests.plan(), inventory: RolloutEngineTests.inventory)
        let first = harness.runToFirstInstall()
        let install = try #require(first)
        #expect(install.operationID == "r1:f0:install:1")
        let actions = harness.handle(.replied(operationID: install.operationID, Self.interrupted))
        #expect(EngineHarness.sent(actions).map(\.operationID) == ["r1:f0:install:2"])
        #expect(harness.engine.status == .running && harness.engine.direction == .forward)
        #expect(harness.notices.last?.contains("sending it again as attempt 2 (no verdict on v1.31.4+k3s1)") == true)
        harness.runHealthy()
        #expect(harness.outcome == .completed)
        #expect(!harness.sentRequests.contains { $0.command.name == "rollback" })
    }

    @Test func anAgentThatKeepsRestartingBlocksTheRolloutInsteadOfRollingBack() throws {
        let policy = RolloutPolicy(requestTriesMax: 3, pollIntervalMilliseconds: 1000)
        var harness = try EngineHarness(plan: RolloutEngineTests.plan(), inventory: RolloutEngineTests.inventory, policy: policy)
        let first = harness.runToFirstInstall()
        var install = try #require(first)
        for attempt in 2...3 {
            let sent = EngineHarness.sent(harness.handle(.replied(operationID: install.operationID, Self.interrupted)))
            install = try #require(sent.first)
            #expect(install.operationID == "r1:f0:install:\(attempt)")
        }
        let last = harness.handle(.replied(operationID: install.operationID, Self.interrupted))
        #expect(EngineHarness.sent(last).isEmpty)
        guard case .blocked(let reason) = harness.engine.status else { Issue.record("not blocked: \(harness.engine.status)"); return }
        #expect(reason.contains("restarted 3 times in a row during install") && reason.contains("upkeep resume"))
        #expect(harness.engine.direction == .forward, "no rollback")
        // Resume sends the install again under a new attempt, and it can finish.
        harness.handle(.resume)
        let resent = try #require(harness.engine.unansweredRequests.first { $0.command.name == "install" })
        #expect(resent.operationID == "r1:f0:install:4")
        harness.runHealthy()
        #expect(harness.outcome == .completed)
    }

    @Test func anInterruptedStageIsStagedAgainUnderANewID() throws {
        var harness = try EngineHarness(plan: RolloutEngineTests.plan(), inventory: RolloutEngineTests.inventory)
        harness.handle(.start)
        harness.observe()
        let cordon = try #require(harness.engine.unansweredRequests.first { $0.command == .cordon })
        harness.answer(cordon)
        let stage = try #require(harness.engine.unansweredRequests.first { $0.command.name == "stage" })
        let actions = harness.handle(.replied(operationID: stage.operationID, .refused(code: AgentReply.interruptedCode, message: "agent restarted")))
        let again = try #require(EngineHarness.sent(actions).first)
        #expect(again.command == stage.command && again.operationID != stage.operationID && again.operationID.hasPrefix("r1:f0:stage:"))
        harness.runHealthy()
        #expect(harness.outcome == .completed)
    }

    @Test func otherRefusalsOfAnInstallStillStopTheRollout() throws {
        var harness = try EngineHarness(plan: RolloutEngineTests.plan(), inventory: RolloutEngineTests.inventory)
        let first = harness.runToFirstInstall()
        let install = try #require(first)
        harness.handle(.replied(operationID: install.operationID, .refused(code: "conflict", message: "the staged binary is gone")))
        #expect(harness.engine.status != .running)
    }
}
