import Testing
import UpkeepAgentCore
import UpkeepCore
@testable import UpkeepAgent

private let old = String(repeating: "a", count: 64)
private let new = String(repeating: "b", count: 64)
private let other = String(repeating: "c", count: 64)

private func node(newHealthyAfterMs: Int64? = 3_000) -> SimulatedNode {
    var node = SimulatedNode(live: old, running: old)
    node.versions = [old: "v1.30.6+k3s1", new: "v1.31.2+k3s1", other: "v1.31.1+k3s1"]
    node.healthyAfterMs[old] = 2_000
    node.healthyAfterMs[other] = 1_000
    if let newHealthyAfterMs { node.healthyAfterMs[new] = newHealthyAfterMs }
    return node
}

private func install(_ id: String = "install-1", _ sha: String = new, on harness: inout MachineHarness,
                     healthTimeoutMs: Int64 = 10_000, watchdogTimeoutMs: Int64 = 60_000) {
    harness.send(.install(.init(operationID: id, target: harness.node.binary(sha), healthTimeoutMs: healthTimeoutMs,
                                watchdogTimeoutMs: watchdogTimeoutMs), live: harness.node.liveBinary))
}

@Suite struct UpgradeMachineTests {
    @Test func installThatBecomesHealthyKeepsThePreviousBinaryAndStartsTheWatch() throws {
        var harness = MachineHarness(node: node())
        install(on: &harness)
        harness.settle()
        let outcome = try #require(harness.replies["install-1"])
        #expect(outcome.state == .succeeded)
        guard case .install(let report) = outcome.body else { Issue.record("no install report"); return }
        #expect(report.outcome == .installed)
        #expect(report.previousK3sVersion == "v1.30.6+k3s1")
        #expect(report.k3sVersion == "v1.31.2+k3s1")
        #expect(report.probe.healthy)
        #expect(harness.node.live == new && harness.node.running == new)
        #expect(harness.node.kept == [old])
        #expect(harness.machine.journal.previous?.sha256 == old)
        let watch = try #require(harness.machine.journal.watch)
        #expect(watch.installID == "install-1" && watch.deadline == report.watchdogDeadline)
        // Order of effects: keep, place, restart, then probes until healthy.
        #expect(Array(harness.performed.prefix(3)) == [.keepPrevious(LiveBinary(sha256: old, k3sVersion: "v1.30.6+k3s1")),
                                                       .place(harness.node.binary(new)), .restartUnit])
        // The kept copy is durable before the placement: its record precedes the placed step.
        let keptIndex = try #require(harness.records.firstIndex { if case .previousKept = $0 { true } else { false } })
        let placedIndex = try #require(harness.records.firstIndex { $0 == .step(operationID: "install-1", .placed(sha256: new)) })
        #expect(keptIndex < placedIndex)
    }

    @Test func afterARestartQuickGateLooksComeFirstAndTheFullProbeRunsOnceKubeletAnswers() throws {
        var harness = MachineHarness(node: node(newHealthyAfterMs: 3_000))
        install(on: &harness)
        harness.settle()
        #expect(harness.replies["install-1"]?.state == .succeeded)
        let afterRestart = Array(harness.performed.drop { $0 != .restartUnit }.dropFirst())
        let gates = afterRestart.prefix { if case .gate = $0 { true } else { false } }
        // Kubelet answers 3 s after the start; the gate looks every 20 ms (1 ms each here) until then.
        #expect(gates.count >= 3_000 / 21 && gates.count <= 3_000 / 20 + 2, "\(gates.count) gate looks")
        let probes = afterRestart.filter { if case .probe = $0 { true } else { false } }
        #expect(probes.count == 1, "one full round once kubelet answered: \(probes.count)")
        // Looks are spaced by the gate interval, never sooner.
        let times = gates.compactMap { if case .gate(let at) = $0 { at } else { nil } }
        #expect(zip(times.dropFirst(), times).allSatisfy { $0.milliseconds(since: $1) >= 20 })
    }

    @Test func aGateThatNeverOpensEndsInOneFullProbeWhoseReportSaysWhatFailed() throws {
        var harness = MachineHarness(node: node(newHealthyAfterMs: nil))
        install(on: &harness, healthTimeoutMs: 2_000)
        harness.settle()
        #expect(harness.replies["install-1"]?.state == .reverted)
        guard case .install(let report) = harness.replies["install-1"]?.body else { Issue.record("no install report"); return }
        #expect(report.probe.checks.map(\.name) == ["unit", "kubelet", "version"], "the full round, not the gate's one check")
        let firstRestart = try #require(harness.performed.firstIndex(of: .restartUnit))
        let secondRestart = try #require(harness.performed[(firstRestart + 1)...].firstIndex(of: .restartUnit))
        let newBinaryProbes = harness.performed[firstRestart..<secondRestart].filter { if case .probe = $0 { true } else { false } }
        #expect(newBinaryProbes.count == 1)
    }

    @Test func installThatNeverBecomesHealthyIsRevertedAndReportedWithTheProbes() throws {
        var harness = MachineHarness(node: node(newHealthyAfterMs: nil))
        install(on: &harness, healthTimeoutMs: 5_000)
        harness.settle()
        let outcome = try #require(harness.replies["install-1"])
        #expect(outcome.state == .reverted)
        guard case .install(let report) = outcome.body else { Issue.record("no install report"); return }
        #expect(report.outcome == .reverted)
        #expect(report.k3sVersion == "v1.30.6+k3s1")
        #expect(!report.probe.healthy)
        #expect(report.probe.checks.contains { $0.name == "kubelet" && !$0.ok && $0.message == "connection refused" })
        #expect(report.revertProbe?.healthy == true)
        #expect(outcome.message.contains("did not become healthy"))
        #expect(harness.node.live == old && harness.node.running == old)
        #expect(harness.machine.journal.watch == nil)
        #expect(harness.node.restarts == 2)
    }

    @Test func failedRestartRevertsWithTheRestartError() throws {
        var harness = MachineHarness(node: node())
        harness.node.restartFails = true
        install(on: &harness)
        harness.node.restartFails = false
        // The first restart (of the new binary) fails; let the revert's restart succeed.
        harness.step(); harness.step()
        harness.node.restartFails = true
        harness.step()
        harness.node.restartFails = false
        harness.settle()
        let outcome = try #require(harness.replies["install-1"])
        #expect(outcome.state == .reverted)
        guard case .install(let report) = outcome.body else { Issue.record("no install report"); return }
        #expect(report.probe.checks == [ProbeReport.Check(name: "restart", ok: false, latencyMs: 0, message: "Job for k3s.service failed")])
        #expect(harness.node.live == old && harness.node.running == old)
    }

    @Test func installOfTheLiveBinaryOnlyProbesAndStartsNoWatch() throws {
        var harness = MachineHarness(node: node())
        harness.now = harness.now.adding(milliseconds: 10_000)
        install("install-1", old, on: &harness)
        harness.settle()
        #expect(harness.replies["install-1"]?.state == .succeeded)
        #expect(harness.node.restarts == 0 && harness.node.kept.isEmpty)
        #expect(harness.machine.journal.watch == nil)
    }

    @Test func watchdogRevertsAnInstallThatIsUnhealthyAtTheDeadlineWithoutCommit() throws {
        var harness = MachineHarness(node: node())
        install(on: &harness, healthTimeoutMs: 5_000, watchdogTimeoutMs: 60_000)
        harness.settle()
        let deadline = try #require(harness.machine.nextWake)
        // The controller vanished; k3s at the new version breaks later.
        harness.node.healthyAfterMs[new] = nil
        harness.settle(until: deadline.adding(milliseconds: -1))
        #expect(harness.machine.journal.watch != nil)  // not before the deadline
        harness.settle(until: deadline)
        #expect(harness.machine.journal.watch == nil)
        #expect(harness.node.live == old && harness.node.running == old)
        let entry = try #require(harness.machine.journal.operation("install-1"))
        guard case .reverted(let failed, let restored, _)? = entry.watchEnd else { Issue.record("watch did not revert: \(String(describing: entry.watchEnd))"); return }
        #expect(!failed.healthy && restored?.healthy == true)
        // A late commit learns what happened.
        harness.send(.commit(.init(operationID: "commit-1", installOperationID: "install-1")))
        #expect(harness.replies["commit-1"]?.failure == .conflict)
        #expect(harness.replies["commit-1"]?.message.contains("watchdog reverted") == true)
    }

    @Test func watchdogKeepsAHealthyInstallAtTheDeadline() throws {
        var harness = MachineHarness(node: node())
        install(on: &harness)
        harness.settle()
        let deadline = try #require(harness.machine.nextWake)
        harness.settle(until: deadline)
        let entry = try #require(harness.machine.journal.operation("install-1"))
        guard case .keptHealthy? = entry.watchEnd else { Issue.record("watch did not keep: \(String(describing: entry.watchEnd))"); return }
        #expect(harness.node.live == new && harness.node.restarts == 1)
    }

    @Test func commitEndsTheWatchAndTheWatchdogDoesNothing() throws {
        var harness = MachineHarness(node: node())
        install(on: &harness)
        harness.settle()
        harness.send(.commit(.init(operationID: "commit-1", installOperationID: "install-1")))
        #expect(harness.replies["commit-1"]?.state == .succeeded)
        #expect(harness.replies["commit-1"]?.body == .commit(CommitReport(k3sVersion: "v1.31.2+k3s1")))
        #expect(harness.machine.nextWake == nil)
        harness.node.healthyAfterMs[new] = nil
        harness.settle(until: Instant(milliseconds: .max))
        #expect(harness.node.live == new && harness.node.restarts == 1)
    }

    @Test func commitDuringTheWatchdogCheckWinsAndTheStaleProbeIsIgnored() throws {
        var harness = MachineHarness(node: node())
        install(on: &harness)
        harness.settle()
        harness.now = try #require(harness.machine.nextWake)
        harness.node.healthyAfterMs[new] = nil
        harness.send(.tick)
        #expect(harness.pending != nil)  // the watchdog's probe is out
        harness.send(.commit(.init(operationID: "commit-1", installOperationID: "install-1")))
        #expect(harness.replies["commit-1"]?.state == .succeeded)
        harness.settle(until: Instant(milliseconds: .max))
        #expect(harness.node.live == new && harness.machine.journal.watch == nil)
    }

    @Test func replayedOperationIDReturnsTheRecordedResultAndDoesNothingTwice() throws {
        var harness = MachineHarness(node: node())
        install(on: &harness)
        harness.settle()
        let first = try #require(harness.replies["install-1"])
        let effects = harness.performed.count
        harness.replies = [:]
        install(on: &harness)
        #expect(harness.replies["install-1"] == first)
        #expect(harness.pending == nil && harness.performed.count == effects)
        // The same id for another request is refused, not replayed.
        install("install-1", other, on: &harness)
        #expect(harness.rejections.last?.code == .conflict)
        // A replay after a restart of the agent answers from the journal.
        var restarted = harness.restarted()
        install(on: &restarted)
        #expect(restarted.replies["install-1"] == first)
        #expect(restarted.pending == nil)
    }

    @Test func secondRequestWhileAnInstallRunsIsBusyAndTheSameIdJoinsIt() throws {
        var harness = MachineHarness(node: node())
        install(on: &harness)
        harness.step()
        install("install-2", other, on: &harness)
        #expect(harness.rejections.map(\.code) == [.busy])
        let before = harness.records.count
        install(on: &harness)  // same id: no reply yet, nothing new recorded
        #expect(harness.records.count == before && harness.replies.isEmpty && harness.rejections.count == 1)
        harness.settle()
        #expect(harness.replies["install-1"]?.state == .succeeded)
        // While the watch runs a new install is refused until commit.
        install("install-3", other, on: &harness)
        #expect(harness.rejections.last?.code == .conflict)
        #expect(harness.rejections.last?.message.contains("waits for commit") == true)
    }

    @Test func rollbackRestoresThePreviousBinaryAndEndsTheWatch() throws {
        var harness = MachineHarness(node: node())
        install(on: &harness)
        harness.settle()
        harness.send(.rollback(.init(operationID: "rollback-1", target: nil, healthTimeoutMs: 10_000), live: harness.node.liveBinary))
        harness.settle()
        let outcome = try #require(harness.replies["rollback-1"])
        #expect(outcome.state == .succeeded)
        #expect(outcome.body == .rollback(RollbackReport(k3sVersion: "v1.30.6+k3s1", probe: harness.node.probe(expected: "v1.30.6+k3s1", now: harness.now))))
        #expect(harness.node.live == old && harness.node.running == old)
        #expect(harness.machine.journal.operation("install-1")?.watchEnd == .rolledBack(operationID: "rollback-1"))
        harness.send(.commit(.init(operationID: "commit-1", installOperationID: "install-1")))
        #expect(harness.replies["commit-1"]?.failure == .conflict)
    }

    @Test func rollbackToAStagedBinaryAndWithoutAnyPrevious() throws {
        var harness = MachineHarness(node: node())
        harness.send(.rollback(.init(operationID: "rollback-1", target: nil, healthTimeoutMs: 10_000), live: harness.node.liveBinary))
        #expect(harness.rejections.last?.code == .notFound)
        harness.send(.rollback(.init(operationID: "rollback-2", target: harness.node.binary(other), healthTimeoutMs: 10_000), live: harness.node.liveBinary))
        harness.settle()
        #expect(harness.replies["rollback-2"]?.state == .succeeded)
        #expect(harness.node.live == other && harness.node.running == other)
    }

    @Test func commitOfAnUnknownInstallIsRecordedAsNotFound() throws {
        var harness = MachineHarness(node: node())
        harness.send(.commit(.init(operationID: "commit-1", installOperationID: "nope")))
        #expect(harness.replies["commit-1"]?.failure == .notFound)
    }

    @Test func genericOperationsAreRecordedAndReplayed() throws {
        var harness = MachineHarness(node: node())
        harness.send(.begin(operationID: "drain-1", kind: .drain, fingerprint: "drain"))
        #expect(harness.proceeds == ["drain-1"])
        harness.send(.begin(operationID: "drain-1", kind: .drain, fingerprint: "drain"))
        #expect(harness.proceeds == ["drain-1"] && harness.replies.isEmpty)
        let outcome = OperationOutcome(state: .succeeded, message: "evicted 3 pods", body: .encoded(#"{"evictedPods":3}"#))
        harness.send(.finish(operationID: "drain-1", outcome))
        #expect(harness.replies["drain-1"] == outcome)
        harness.replies = [:]
        harness.send(.begin(operationID: "drain-1", kind: .drain, fingerprint: "drain"))
        #expect(harness.replies["drain-1"] == outcome && harness.proceeds.count == 1)
        harness.send(.begin(operationID: "drain-1", kind: .cordon, fingerprint: "cordon"))
        #expect(harness.rejections.last?.code == .conflict)
    }

    @Test func requestsBeforeRecoveryAreBusy() {
        var machine = UpgradeMachine(journal: JournalState())
        let actions = machine.handle(.begin(operationID: "x", kind: .stage, fingerprint: "s"), now: Instant(milliseconds: 0))
        guard case .reject(let rejection)? = actions.first else { Issue.record("not rejected: \(actions)"); return }
        #expect(rejection.code == .busy)
    }
}
