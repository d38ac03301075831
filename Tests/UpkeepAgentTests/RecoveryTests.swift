import Foundation
import Testing
import UpkeepAgentCore
import UpkeepCore
@testable import UpkeepAgent

private let old = String(repeating: "a", count: 64)
private let new = String(repeating: "b", count: 64)

private func node(newHealthy: Bool) -> SimulatedNode {
    var node = SimulatedNode(live: old, running: old)
    node.versions = [old: "v1.30.6+k3s1", new: "v1.31.2+k3s1"]
    node.healthyAfterMs[old] = 1_000
    if newHealthy { node.healthyAfterMs[new] = 1_500 }
    return node
}

/// Kills the agent after every possible number of performed effects of an install (healthy or
/// not), and after every journal record: the restarted machine must resolve the operation, the
/// live path must hold a whole binary, and the outcome must match what runs.
@Suite struct RecoveryTests {
    @Test(arguments: [true, false])
    func installKilledAtEveryStepIsResolvedByTheRestartedAgent(newHealthy: Bool) throws {
        // A run without a crash tells how many effects an install performs.
        var reference = MachineHarness(node: node(newHealthy: newHealthy))
        startInstall(&reference)
        reference.settle()
        let effectsTotal = reference.performed.count
        #expect(effectsTotal >= 4)

        for crashAfter in 0...effectsTotal {
            // Also crash between an effect and the records it produces (the records are lost).
            for loseTrailingRecords in [false, true] {
                var harness = MachineHarness(node: node(newHealthy: newHealthy))
                startInstall(&harness)
                for _ in 0..<crashAfter { harness.step() }
                var dead = harness
                if loseTrailingRecords, crashAfter > 0 {
                    dead.records = Array(harness.records.prefix(recordsBeforeLastEffect(harness)))
                }
                // The killed process's k3s keeps running; the files stay as they are.
                var restarted = dead.restarted()
                restarted.settle()
                let context = "crash after \(crashAfter) effects, lost records \(loseTrailingRecords), healthy \(newHealthy)"
                let entry = try #require(restarted.machine.journal.operation("install-1"), "\(context)")
                #expect(!entry.isRunning, "\(context): operation still running")
                #expect([old, new].contains(restarted.node.live), "\(context)")
                if let outcome = entry.outcome, outcome.state == .succeeded {
                    #expect(restarted.node.live == new && restarted.node.running == new, "\(context)")
                    #expect(restarted.machine.journal.watch?.installID == "install-1", "\(context)")
                } else {
                    #expect(restarted.node.live == old, "\(context): \(entry.outcome?.message ?? "")")
                    #expect(restarted.node.running == old, "\(context): running \(restarted.node.running ?? "nothing")")
                    #expect(restarted.machine.journal.watch == nil, "\(context)")
                }
                expectNoVerdictFromTheCrash(entry, newHealthy: newHealthy, context)
                // And a replay of the id answers what the journal says, without acting.
                restarted.send(.install(.init(operationID: "install-1", target: restarted.node.binary(new), healthTimeoutMs: 10_000,
                                              watchdogTimeoutMs: 60_000), live: restarted.node.liveBinary))
                #expect(restarted.replies["install-1"] == entry.outcome, "\(context)")
                #expect(restarted.pending == nil, "\(context)")
            }
        }
    }

    /// A crash between any two journal records (the effects done so far stay done).
    @Test(arguments: [true, false])
    func installKilledBetweenAnyTwoRecordsIsResolved(newHealthy: Bool) throws {
        var reference = MachineHarness(node: node(newHealthy: newHealthy))
        startInstall(&reference)
        reference.settle()
        for cut in 0..<reference.records.count {
            var dead = reference
            dead.records = Array(reference.records.prefix(cut))
            dead.node = reference.nodeBeforeRecord[cut]
            var restarted = dead.restarted()
            restarted.settle()
            let context = "crash before record \(cut) (\(reference.records[cut])), healthy \(newHealthy)"
            guard let entry = restarted.machine.journal.operation("install-1") else {
                #expect(restarted.node.live == old, "\(context)")
                continue
            }
            #expect(!entry.isRunning, "\(context)")
            let installed = entry.outcome?.state == .succeeded
            #expect(restarted.node.live == (installed ? new : old), "\(context)")
            #expect(restarted.node.running == (installed ? new : old), "\(context)")
            #expect((restarted.machine.journal.watch?.installID == "install-1") == installed, "\(context)")
            expectNoVerdictFromTheCrash(entry, newHealthy: newHealthy, context)
        }
    }

    /// An agent's crash says nothing about the new version: an install is `reverted` only with
    /// a failing probe of the new binary, so never when that binary is healthy; otherwise it is
    /// installed or `interrupted` (send it again), never a failure of its own.
    private func expectNoVerdictFromTheCrash(_ entry: OperationEntry, newHealthy: Bool, _ context: String) {
        guard let outcome = entry.outcome else { return }
        switch outcome.state {
        case .reverted:
            #expect(!newHealthy, "\(context): a healthy new binary was reported reverted: \(outcome.message)")
            guard case .install(let report) = outcome.body else { Issue.record("\(context): reverted without a report"); return }
            #expect(report.probe.checks.contains { !$0.ok && $0.name != "agent" }, "\(context): reverted without a failing probe")
        case .failed:
            #expect(outcome.failure == .interrupted, "\(context): \(outcome.message)")
        case .succeeded, .running:
            break
        }
    }

    @Test func anInstallKilledWhileItsHealthyNewK3sStartedIsInstalledAfterTheRestart() throws {
        var harness = MachineHarness(node: node(newHealthy: true))
        startInstall(&harness)
        while harness.performed.last != .restartUnit { harness.step() }
        var restarted = harness.restarted()
        restarted.settle()
        let outcome = try #require(restarted.machine.journal.operation("install-1")?.outcome)
        #expect(outcome.state == .succeeded, "\(outcome.message)")
        #expect(restarted.machine.journal.watch?.installID == "install-1")
        #expect(restarted.node.running == new)
        // It was restarted once more on the new binary (the first restart may never have reached
        // systemd), then probed with a fresh deadline.
        #expect(restarted.performed.first == .restartUnit)
    }

    @Test func aRevertThatHadBegunIsFinishedWithTheProbeThatStartedIt() throws {
        var harness = MachineHarness(node: node(newHealthy: false))
        startInstall(&harness)
        while !harness.records.contains(.step(operationID: "install-1", .reverting)) { harness.step() }
        let failed = try #require(harness.machine.journal.operation("install-1")?.failedProbe)
        var restarted = harness.restarted()
        restarted.settle()
        let outcome = try #require(restarted.machine.journal.operation("install-1")?.outcome)
        #expect(outcome.state == .reverted)
        guard case .install(let report) = outcome.body else { Issue.record("no install report"); return }
        #expect(report.probe == failed && !failed.healthy)
    }

    @Test func anInstallFoundWithAThirdBinaryLiveIsInterruptedNotReverted() throws {
        var harness = MachineHarness(node: node(newHealthy: true))
        startInstall(&harness)
        while harness.performed.last != .restartUnit { harness.step() }
        harness.node.live = String(repeating: "e", count: 64)
        harness.node.versions[harness.node.live] = "v1.29.9+k3s1"
        var restarted = harness.restarted()
        restarted.settle()
        let outcome = try #require(restarted.machine.journal.operation("install-1")?.outcome)
        #expect(outcome.failure == .interrupted && outcome.message.contains("install again with a new operation id"))
        #expect(restarted.node.live == old && restarted.node.running == old)
    }

    @Test func watchdogRevertInterruptedByACrashIsFinishedAtStart() throws {
        var harness = MachineHarness(node: node(newHealthy: true))
        startInstall(&harness)
        harness.settle()
        harness.node.healthyAfterMs[new] = nil
        harness.now = try #require(harness.machine.nextWake)
        harness.send(.tick)
        // Probe until the revert has placed the old binary, then die before the restart.
        while !harness.records.contains(.watchReverting(installID: "install-1")) { harness.step() }
        harness.step()  // place
        #expect(harness.node.live == old && harness.node.running == new)
        var restarted = harness.restarted()
        restarted.settle()
        #expect(restarted.node.running == old)
        guard case .reverted? = restarted.machine.journal.operation("install-1")?.watchEnd else {
            Issue.record("watch not ended as reverted"); return
        }
    }

    @Test func interruptedGenericOperationsAreRecordedAsInterrupted() throws {
        var harness = MachineHarness(node: node(newHealthy: true))
        harness.send(.begin(operationID: "stage-1", kind: .stage, fingerprint: "stage x"))
        let restarted = harness.restarted()
        let outcome = try #require(restarted.machine.journal.operation("stage-1")?.outcome)
        #expect(outcome.failure == .interrupted)
        #expect(outcome.message.contains("partial file was removed"))
    }

    @Test func compactedSnapshotFoldsToTheSameStateThroughJSON() throws {
        var harness = MachineHarness(node: node(newHealthy: false))
        startInstall(&harness)
        harness.settle()
        let state = JournalState(records: harness.records)
        let line = try JSONEncoder().encode(JournalRecord.snapshot(state))
        let decoded = try JSONDecoder().decode(JournalRecord.self, from: line)
        #expect(JournalState(records: [decoded]) == state)
    }

    @Test func journalForgetsTheOldestFinishedOperationsBeyondItsBound() {
        var state = JournalState()
        for index in 0..<(JournalState.finishedOperationsMax + 10) {
            let id = "op-\(index)"
            state.apply(.began(OperationEntry(id: id, kind: .cordon, fingerprint: "c", startedAt: Instant(milliseconds: 0), plan: nil)))
            state.apply(.finished(operationID: id, OperationOutcome(state: .succeeded, message: ""), at: Instant(milliseconds: 0)))
        }
        #expect(state.order.count == JournalState.finishedOperationsMax)
        #expect(state.operation("op-0") == nil)
        #expect(state.operation("op-\(JournalState.finishedOperationsMax + 9)") != nil)
    }

    private func startInstall(_ harness: inout MachineHarness) {
        harness.send(.install(.init(operationID: "install-1", target: harness.node.binary(new), healthTimeoutMs: 10_000,
                                    watchdogTimeoutMs: 60_000), live: harness.node.liveBinary))
    }

    /// How many records existed before the last performed effect's completion was handled.
    private func recordsBeforeLastEffect(_ harness: MachineHarness) -> Int {
        var replay = MachineHarness(node: node(newHealthy: harness.node.healthyAfterMs[new] != nil))
        startInstall(&replay)
        for _ in 0..<(harness.performed.count - 1) { replay.step() }
        return replay.records.count
    }
}
