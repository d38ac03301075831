import Testing
import UpkeepAgentCore
import UpkeepCore
@testable import UpkeepAgent

private let old = String(repeating: "a", count: 64)
private let new = String(repeating: "b", count: 64)
private let patch = String(repeating: "c", count: 64)
private let backup = String(repeating: "d", count: 64)

/// A server at v1.31 (installed over v1.30 by `install-1`, healthy, watch open) holding a
/// received backup taken at v1.30; v1.30 is staged again for the restore.
private func serverAtNewMinor(role: NodeRole = .server) -> MachineHarness {
    var node = SimulatedNode(live: old, running: old)
    node.versions = [old: "v1.30.6+k3s1", new: "v1.31.2+k3s1", patch: "v1.31.1+k3s1"]
    node.healthyAfterMs = [old: 1_000, new: 1_500, patch: 1_000]
    node.restoreFiles = [backup]
    var harness = MachineHarness(node: node, role: role)
    harness.send(.install(.init(operationID: "install-1", target: harness.node.binary(new), healthTimeoutMs: 10_000,
                                watchdogTimeoutMs: 60_000), live: harness.node.liveBinary))
    harness.settle()
    precondition(harness.replies["install-1"]?.state == .succeeded && harness.node.running == new)
    return harness
}

private func restore(_ id: String = "restore-1", on harness: inout MachineHarness) {
    harness.send(.restore(.init(operationID: id, target: harness.node.binary(old), backupSHA256: backup, format: .etcdSnapshot,
                                healthTimeoutMs: 10_000), live: harness.node.liveBinary))
}

private func rejoin(_ id: String = "rejoin-1", on harness: inout MachineHarness) {
    harness.send(.rejoin(.init(operationID: id, target: harness.node.binary(old), healthTimeoutMs: 10_000), live: harness.node.liveBinary))
}

@Suite struct RestoreMachineTests {
    // MARK: - stopK3s

    @Test func stopK3sStopsTheUnitEndsTheWatchSoTheWatchdogNeverRevertsAStoppedServer() throws {
        var harness = serverAtNewMinor()
        harness.send(.stopK3s(operationID: "stop-1"))
        harness.settle()
        let outcome = try #require(harness.replies["stop-1"])
        #expect(outcome.state == .succeeded && outcome.body == .stopK3s(StopReport(wasActive: true)))
        #expect(harness.node.running == nil && harness.node.live == new)
        #expect(harness.machine.journal.watch == nil && harness.machine.nextWake == nil)
        #expect(harness.machine.journal.operation("install-1")?.watchEnd == .superseded(operationID: "stop-1", kind: .stopK3s))
        // Nothing happens at the old deadline: no probe, no revert.
        harness.settle(until: Instant(milliseconds: .max))
        #expect(harness.node.live == new && harness.node.restarts == 1)
        // A replay answers the record; a second stop finds the unit inactive.
        harness.replies = [:]
        harness.send(.stopK3s(operationID: "stop-1"))
        #expect(harness.replies["stop-1"] == outcome && harness.pending == nil)
        harness.send(.stopK3s(operationID: "stop-2"))
        harness.settle()
        #expect(harness.replies["stop-2"]?.body == .stopK3s(StopReport(wasActive: false)))
    }

    @Test func aUnitThatDoesNotStopIsAConflict() throws {
        var harness = serverAtNewMinor()
        harness.node.stopFails = true
        harness.send(.stopK3s(operationID: "stop-1"))
        harness.settle()
        #expect(harness.replies["stop-1"]?.failure == .conflict)
    }

    // MARK: - restore and rejoin

    @Test func restoreStopsPlacesTheOldBinaryRestoresRemovesThePlaintextThenStartsAndProbes() throws {
        var harness = serverAtNewMinor()
        let before = harness.performed.count
        restore(on: &harness)
        harness.settle()
        let outcome = try #require(harness.replies["restore-1"])
        #expect(outcome.state == .succeeded, "\(outcome.message)")
        guard case .restore(let report) = outcome.body else { Issue.record("no restore report"); return }
        #expect(report.k3sVersion == "v1.30.6+k3s1" && report.probe.healthy)
        #expect(harness.node.live == old && harness.node.running == old)
        #expect(harness.node.datastore == "restored \(backup)" && harness.node.restoreFiles.isEmpty)
        let effects = Array(harness.performed[before...].prefix(5))
        #expect(effects == [.stopUnit, .place(harness.node.binary(old)), .changeDatastore(.restore(sha256: backup, format: .etcdSnapshot)),
                            .removeRestoreFile(sha256: backup), .restartUnit])
        // The datastore change is recorded before k3s starts on it.
        let changed = try #require(harness.records.firstIndex(of: .step(operationID: "restore-1", .datastoreChanged)))
        let restarting = try #require(harness.records.firstIndex(of: .step(operationID: "restore-1", .restarting)))
        #expect(changed < restarting)
        #expect(harness.machine.journal.operation("install-1")?.watchEnd == .superseded(operationID: "restore-1", kind: .restore))
    }

    @Test func rejoinClearsTheDatastoreAndStartsTheOldBinary() throws {
        var harness = serverAtNewMinor()
        rejoin(on: &harness)
        harness.settle()
        #expect(harness.replies["rejoin-1"]?.state == .succeeded)
        #expect(harness.node.datastore == nil && harness.node.running == old)
        #expect(harness.node.restoreFiles == [backup], "a rejoin touches no received backup")
        #expect(!harness.performed.contains(.removeRestoreFile(sha256: backup)))
    }

    @Test func restoreAndRejoinAreForServersOnly() throws {
        var harness = serverAtNewMinor(role: .agent)
        restore(on: &harness)
        rejoin(on: &harness)
        #expect(harness.rejections.map(\.code) == [.conflict, .conflict])
        #expect(harness.rejections.allSatisfy { $0.message.contains("for servers") })
        #expect(harness.machine.journal.operation("restore-1") == nil && harness.node.running == new)
    }

    @Test func aRestoreWhoseK3sStaysUnhealthyFailsAndLeavesTheDatastoreRestored() throws {
        var harness = serverAtNewMinor()
        harness.node.healthyAfterMs[old] = nil
        restore(on: &harness)
        harness.settle()
        let outcome = try #require(harness.replies["restore-1"])
        #expect(outcome.failure == .unhealthy && outcome.message.contains("did not become healthy"))
        #expect(harness.node.datastore == "restored \(backup)" && harness.node.live == old, "nothing is undone")
    }

    @Test func aRestoreThatCannotStopK3sChangesNothingAndKeepsTheBackup() throws {
        var harness = serverAtNewMinor()
        harness.node.stopFails = true
        restore(on: &harness)
        harness.settle()
        let outcome = try #require(harness.replies["restore-1"])
        #expect(outcome.failure == .conflict && outcome.message.contains("the datastore was not changed"))
        #expect(harness.node.datastore == "datastore" && harness.node.live == new && harness.node.restoreFiles == [backup])
    }

    /// Kills the agent after every effect of a restore (and with the records of the last effect
    /// lost): the restarted agent finishes it, restores the datastore at most once after the
    /// change was recorded, and a replay answers the outcome.
    @Test(arguments: [OperationKind.restore, .rejoin])
    func restoreAndRejoinKilledAfterAnyEffectAreFinishedByTheRestartedAgent(method: OperationKind) throws {
        func begin(_ harness: inout MachineHarness) {
            if method == .restore { restore(on: &harness) } else { rejoin(on: &harness) }
        }
        let id = method == .restore ? "restore-1" : "rejoin-1"
        var reference = serverAtNewMinor()
        let start = reference.performed.count
        begin(&reference)
        reference.settle()
        let effectsTotal = reference.performed.count - start
        for crashAfter in 0...effectsTotal {
            for loseTrailingRecords in [false, true] {
                var harness = serverAtNewMinor()
                begin(&harness)
                var recordsBeforeLast = harness.records.count
                for _ in 0..<crashAfter {
                    recordsBeforeLast = harness.records.count
                    harness.step()
                }
                var dead = harness
                if loseTrailingRecords { dead.records = Array(harness.records.prefix(recordsBeforeLast)) }
                let changedBeforeCrash = dead.records.contains(.step(operationID: id, .datastoreChanged))
                var restarted = dead.restarted()
                restarted.settle()
                let context = "\(method) killed after \(crashAfter) effects, lost records \(loseTrailingRecords)"
                let entry = try #require(restarted.machine.journal.operation(id), "\(context)")
                #expect(entry.outcome?.state == .succeeded, "\(context): \(entry.outcome?.message ?? "running")")
                #expect(restarted.node.live == old && restarted.node.running == old, "\(context)")
                #expect(restarted.node.datastore == (method == .restore ? "restored \(backup)" : nil), "\(context)")
                if changedBeforeCrash { #expect(restarted.node.datastoreChanges == harness.node.datastoreChanges, "\(context): changed again") }
                if method == .restore { #expect(restarted.node.restoreFiles.isEmpty, "\(context)") }
                restarted.replies = [:]
                begin(&restarted)
                #expect(restarted.replies[id] == entry.outcome && restarted.pending == nil, "\(context)")
            }
        }
    }

    // MARK: - Defence in depth: a server never goes back a minor by binaries

    @Test func rollbackOfAServerAcrossAMinorAfterItWasHealthyIsRefusedWithWhatToDo() throws {
        var harness = serverAtNewMinor()
        harness.send(.rollback(.init(operationID: "rollback-1", target: nil, healthTimeoutMs: 10_000), live: harness.node.liveBinary))
        let refusal = try #require(harness.rejections.last)
        #expect(refusal.code == .conflict)
        #expect(refusal.message.contains("https://docs.k3s.io/upgrades/roll-back") && refusal.message.contains("upkeep rollback --restore"))
        #expect(harness.node.live == new && harness.machine.journal.watch != nil, "nothing changed, the watch stays")
        // A staged binary of the older minor is refused the same way.
        harness.send(.rollback(.init(operationID: "rollback-2", target: harness.node.binary(old), healthTimeoutMs: 10_000), live: harness.node.liveBinary))
        #expect(harness.rejections.last?.code == .conflict)
    }

    @Test func rollbackWithinAMinorOrOfAnAgentNodeStillWorks() throws {
        var agent = serverAtNewMinor(role: .agent)
        agent.send(.rollback(.init(operationID: "rollback-1", target: nil, healthTimeoutMs: 10_000), live: agent.node.liveBinary))
        agent.settle()
        #expect(agent.replies["rollback-1"]?.state == .succeeded && agent.node.running == old)

        var server = serverAtNewMinor()
        server.send(.rollback(.init(operationID: "rollback-2", target: server.node.binary(patch), healthTimeoutMs: 10_000), live: server.node.liveBinary))
        server.settle()
        #expect(server.replies["rollback-2"]?.state == .succeeded && server.node.running == patch)
    }

    @Test func aServerWhoseNewerMinorNeverRanHealthyMayGoBack() {
        var state = JournalState()
        let plan = SwapPlan(target: BinaryRef(sha256: new, k3sVersion: "v1.31.2+k3s1", store: .staging), replaced: nil, restore: nil,
                            healthTimeoutMs: 1, watchdogTimeoutMs: 1)
        #expect(state.wasHealthy(new), "a binary nothing made live was running before the journal began")
        state.apply(.began(OperationEntry(id: "i-1", kind: .install, fingerprint: "f", startedAt: Instant(milliseconds: 0), plan: plan)))
        state.apply(.finished(operationID: "i-1", .failed(.io, "revert failed"), at: Instant(milliseconds: 1)))
        #expect(!state.wasHealthy(new))
        state.apply(.began(OperationEntry(id: "i-2", kind: .install, fingerprint: "f", startedAt: Instant(milliseconds: 2), plan: plan)))
        state.apply(.finished(operationID: "i-2", OperationOutcome(state: .succeeded, message: "installed"), at: Instant(milliseconds: 3)))
        #expect(state.wasHealthy(new))
    }

    @Test func theWatchdogLeavesAServerAtItsNewMinorAndACommitSaysWhy() throws {
        var harness = serverAtNewMinor()
        let deadline = try #require(harness.machine.nextWake)
        harness.node.healthyAfterMs[new] = nil
        harness.settle(until: deadline)
        #expect(harness.node.live == new && harness.node.restarts == 1, "no revert across a minor")
        guard case .keptUnhealthy(let failed, let message)? = harness.machine.journal.operation("install-1")?.watchEnd else {
            Issue.record("watch not kept: \(String(describing: harness.machine.journal.operation("install-1")?.watchEnd))"); return
        }
        #expect(!failed.healthy && message.contains("https://docs.k3s.io/upgrades/roll-back"))
        harness.send(.commit(.init(operationID: "commit-1", installOperationID: "install-1")))
        #expect(harness.replies["commit-1"]?.failure == .conflict)
        #expect(harness.replies["commit-1"]?.message.contains("upkeep rollback --restore") == true)
    }

    @Test func theWatchdogStillRevertsAServerWithinAMinorAndAnAgentAcrossOne() throws {
        var node = SimulatedNode(live: patch, running: patch)
        node.versions = [patch: "v1.31.1+k3s1", new: "v1.31.2+k3s1"]
        node.healthyAfterMs = [patch: 1_000, new: 1_000]
        var server = MachineHarness(node: node, role: .server)
        server.send(.install(.init(operationID: "install-1", target: server.node.binary(new), healthTimeoutMs: 10_000,
                                   watchdogTimeoutMs: 60_000), live: server.node.liveBinary))
        server.settle()
        server.node.healthyAfterMs[new] = nil
        server.settle(until: Instant(milliseconds: .max))
        #expect(server.node.running == patch)

        var agent = serverAtNewMinor(role: .agent)
        agent.node.healthyAfterMs[new] = nil
        agent.settle(until: Instant(milliseconds: .max))
        #expect(agent.node.running == old)
    }
}
