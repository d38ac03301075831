import Foundation
import Testing
import UpkeepRollout
import UpkeepCore
import UpkeepRuntime
import UpkeepRuntimeTestSupport
import UpkeepStore
import UpkeepTestSupport

@Suite struct CrashResumeTests {
    /// A real controller process (upkeep-runtime-probe) is killed with SIGKILL right after an
    /// agent ran an operation and before its answer was recorded; this process takes over the
    /// same database and world files and finishes the rollout. The agents' journals show every
    /// operation ran once, at its first attempt, and the interrupted one was asked again by id.
    /// `snapshotBytes`: the probe's `journalBytesPerSnapshotMin`; 0 takes a snapshot whenever the
    /// journal passes the engine's size, so the killed controller leaves a snapshot taken mid-rollout
    /// and the transitions after it, which the resume replays (and checks) to rebuild its engine.
    @Test(arguments: [("server-1:install", nil), ("agent-1:cordon", nil), ("agent-2:commit", nil), ("agent-2:commit", 0)])
    func aControllerKilledMidRolloutResumesFromTheDatabaseAndRunsEachOperationOnce(pauseAt: String, snapshotBytes: Int?) async throws {
        let directory = try TemporaryDirectory()
        let worldPath = directory.file("world.json")
        let state = directory.file("state")
        _ = try FileWorld(path: worldPath, model: RolloutFixtures.world())
        let output = directory.file("probe.out")
        _ = FileManager.default.createFile(atPath: output, contents: nil)
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: try probePath())
        probe.arguments = [state, worldPath, "r1", pauseAt]
        probe.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
        probe.standardError = probe.standardOutput
        probe.standardInput = FileHandle.nullDevice
        if let snapshotBytes {
            probe.environment = ProcessInfo.processInfo.environment.merging(["UPKEEP_PROBE_SNAPSHOT_BYTES": "\(snapshotBytes)"]) { $1 }
        }
        try probe.run()
        defer {
            if probe.isRunning {
                kill(probe.processIdentifier, SIGKILL)
                probe.waitUntilExit()
            }
        }
        let paused = try await bounded("the probe to reach \(pauseAt)", seconds: 90) {
            while probe.isRunning {
                if FileManager.default.fileExists(atPath: worldPath + ".paused") { return true }
                try await Task.sleep(for: .milliseconds(5))
            }
            return false
        }
        let printed = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        try #require(paused, "the probe exited before reaching \(pauseAt): \(printed)")
        kill(probe.processIdentifier, SIGKILL)
        probe.waitUntilExit()
        #expect(probe.terminationReason == .uncaughtSignal)

        let store = try StateStore(stateDirectory: state)
        let left = try #require(try store.unfinishedRollout(), "the probe finished before it was killed: \(printed)")
        #expect(left.id == "r1")
        let recordedBeforeKill = try store.rollout(id: "r1").transitionCount
        let snapshotAt = try snapshotSequence(directory.file("state/upkeep.db"), "r1")
        if snapshotBytes != nil {
            #expect(snapshotAt > 0 && snapshotAt <= recordedBeforeKill, "no snapshot mid-rollout (at \(snapshotAt) of \(recordedBeforeKill))")
        } else {
            // One snapshot, when the rollout was made: every transition is replayed (at least the
            // start and the answers to a cordon and a drain come before any install).
            #expect(snapshotAt == 0 && recordedBeforeKill >= 3)
        }
        // Rebuilt by replay (each transition checked against what was recorded): the interrupted
        // operation is still unanswered.
        let parts = pauseAt.split(separator: ":").map(String.init)
        let rebuilt = try store.engine(rolloutID: "r1")
        #expect(rebuilt.unansweredRequests.contains { $0.node == parts[0] && $0.command.name == parts[1] })
        let lease = try #require(try store.currentLease())
        #expect(lease.holder == "probe pid \(probe.processIdentifier)")

        let world = try FileWorld(loading: worldPath)
        // The dead controller's lease still stands: a polite controller is kept out...
        let polite = RolloutRuntime(store: store, transport: world, observer: world, configuration: RuntimeConfiguration(holder: "test"))
        await #expect(throws: RuntimeError.store(.leaseHeld(holder: lease.holder, until: lease.expiresAt))) { try await polite.resume() }
        // ...and an operator who knows it is gone takes over.
        let runtime = RolloutRuntime(store: store, transport: world, observer: world,
                                     configuration: RuntimeConfiguration(holder: "test", forceTakeover: true))
        let result = try await bounded("the resumed rollout to finish") { try await runtime.resume() }
        #expect(result == .finished(.completed))

        let model = world.snapshot
        let interrupted = try #require(model.executed(parts[1], on: parts[0]).first)
        #expect(model.received.filter { $0 == interrupted }.count == 2, "\(interrupted) was not asked again by its id")
        let ids = model.executed.map(\.operationID)
        #expect(Set(ids).count == ids.count, "an operation ran twice: \(ids)")
        #expect(model.executed.allSatisfy { $0.command.name == "stage" || $0.operationID.hasSuffix(":1") }, "a step was redone: \(ids)")
        for node in ["server-1", "agent-1", "agent-2"] {
            #expect(model.executed("install", on: node).count == 1)
            #expect(model.executed("cordon", on: node).count == 1)
            let after = model.node(node)
            #expect(after?.version == RolloutFixtures.target && after?.cordoned == false && after?.watch == nil)
        }
        let transitions = try store.transitions(rolloutID: "r1", limit: 100_000)
        #expect(transitions.map(\.sequence) == Array(1...transitions.count))
        #expect(transitions.first { $0.sequence == recordedBeforeKill + 1 }?.event == "resume")
        #expect(try store.history(limit: 1).first?.outcome == .completed)
    }

    /// A database of an upkeep before snapshots and replay (schema v11: the engine after its last
    /// transition in `rollouts.engine_json`, no recorded events) is migrated, and its unfinished
    /// rollout resumes and finishes.
    @Test func aRolloutRecordedBeforeReplayExistedResumes() async throws {
        let directory = try TemporaryDirectory()
        let state = directory.file("state")
        let world = try FileWorld(path: directory.file("world.json"), model: RolloutFixtures.world())
        let store = try StateStore(stateDirectory: state)
        // Started, its first requests sent and unanswered (the world has run none of them).
        let left = try RolloutFixtures.record(try RolloutFixtures.engine("r1"), world: world.snapshot, in: store,
                                              start: Instant(milliseconds: 1000)) { !$0.unansweredRequests.isEmpty }
        #expect(left.status == .running)
        let engineFile = directory.file("engine.json")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try encoder.encode(left).write(to: URL(fileURLWithPath: engineFile))
        let downgraded = try runProcess("/usr/bin/sqlite3", [state + "/" + StateStore.fileName, """
            UPDATE rollouts SET plan_json = (SELECT plan_json FROM rollout_plans WHERE rollout_id = rollouts.id),
                policy_json = (SELECT policy_json FROM rollout_plans WHERE rollout_id = rollouts.id);
            DROP TABLE rollout_plans;
            DELETE FROM grdb_migrations WHERE identifier = 'v13-rollout-plans';
            UPDATE rollouts SET engine_json = CAST(readfile('\(engineFile)') AS TEXT);
            DROP TABLE engine_snapshots;
            ALTER TABLE transitions DROP COLUMN event_json;
            ALTER TABLE rollouts DROP COLUMN snapshot_bytes;
            ALTER TABLE rollouts DROP COLUMN journal_bytes;
            DELETE FROM grdb_migrations WHERE identifier = 'v12-transition-events';
            """])
        #expect(downgraded.status == 0, "\(downgraded.error)")

        let reopened = try StateStore(stateDirectory: state)
        #expect(try reopened.resumableEngine() == left)
        let runtime = RolloutRuntime(store: reopened, transport: world, observer: world, configuration: RuntimeConfiguration(holder: "test"))
        let result = try await bounded("the resumed rollout to finish") { try await runtime.resume() }
        #expect(result == .finished(.completed))
        #expect(try reopened.history(limit: 1).first?.outcome == .completed)
        for node in ["server-1", "agent-1", "agent-2"] { #expect(world.snapshot.node(node)?.version == RolloutFixtures.target) }
    }
}

/// The transition the engine of `rolloutID` was last snapshotted at, read with sqlite3.
private func snapshotSequence(_ database: String, _ rolloutID: String) throws -> Int {
    let read = try runProcess("/usr/bin/sqlite3", [database, "SELECT sequence FROM engine_snapshots WHERE rollout_id = '\(rolloutID)'"])
    return Int(read.output.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
}
