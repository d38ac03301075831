import Foundation
import GRDB
import Testing
import UpkeepRollout
import UpkeepCore
import UpkeepRuntimeTestSupport
@testable import UpkeepStore
import UpkeepTestSupport

/// A transition writes what changed; the engine is its latest snapshot with the events after
/// it replayed (docs/state.md).
@Suite struct EngineReplayTests {
    static let t0 = Instant(milliseconds: 1_790_000_000_000)
    static let holder = "controller-a"

    /// Drives `engine` against `world` (`RolloutFixtures.timedDrive`: answers at once, a tick
    /// 50 ms on when nothing is queued), recording each transition at the moment it was handled
    /// as the runtime does, and calls `check` after each with the engine as handled.
    static func drive(_ engine: RolloutEngine, world: inout WorldModel, store: StateStore, from start: Instant,
                      first: RolloutEngine.Event = .start, stepsMax: Int = 3000,
                      check: (RolloutEngine) throws -> Void) throws -> RolloutEngine {
        var before = engine
        for (event, after, actions, at) in RolloutFixtures.timedDrive(engine, world: &world, startAt: start, first: first, stepsMax: stepsMax) {
            let notices = actions.compactMap { if case .notice(let notice) = $0 { notice } else { nil } }
            try store.acquireLease(holder: holder, ttlMilliseconds: 60_000, now: at)
            try store.record(Transition(engine: after, before: before, event: event, actions: actions, notices: notices), holder: holder, now: at)
            try check(after)
            before = after
        }
        return before
    }

    static func snapshotSequence(_ store: StateStore, _ id: String) throws -> Int {
        try store.pool.read { try Int.fetchOne($0, sql: "SELECT sequence FROM engine_snapshots WHERE rollout_id = ?", arguments: [id]) } ?? -1
    }

    @Test func everyRecordedStateIsRebuiltFromItsSnapshotAndTheEventsAfterIt() throws {
        let directory = try TemporaryDirectory()
        // Snapshots as soon as the journal passes the engine's own size: several in one rollout.
        let store = try StateStore(stateDirectory: directory.file("state"), journalBytesPerSnapshotMin: 0)
        let reader = try StateStore(stateDirectory: directory.file("state"))
        var world = RolloutFixtures.world()
        let created = try RolloutFixtures.engine("r1", world: world)
        try store.acquireLease(holder: Self.holder, ttlMilliseconds: 60_000, now: Self.t0)
        try store.createRollout(created, holder: Self.holder, now: Self.t0)
        var snapshots = Set<Int>()
        var longestReplay = 0
        let finished = try Self.drive(created, world: &world, store: store, from: Self.t0) { engine in
            #expect(try reader.engine(rolloutID: "r1") == engine)
            let snapshot = try Self.snapshotSequence(reader, "r1")
            snapshots.insert(snapshot)
            longestReplay = max(longestReplay, try reader.rollout(id: "r1").transitionCount - snapshot)
        }
        #expect(finished.status == .finished(.completed))
        #expect(snapshots.filter { $0 > 0 }.count >= 2, "snapshots at \(snapshots.sorted())")
        #expect(longestReplay >= 5)
        // Observations are written as their change: the nodes that changed, not the whole cluster.
        let observed = try reader.pool.read { try String.fetchAll($0, sql: "SELECT event_json FROM transitions WHERE event LIKE 'observed%'") }
        #expect(observed.count >= 2 && observed.dropFirst().allSatisfy { $0.contains("observedChange") })
    }

    /// Every transition reads and rewrites its rollout's row; the plan (the size of the rollout)
    /// is kept out of it, so that row costs the same at any size.
    @Test func theRowEveryTransitionRewritesHoldsNoPlan() throws {
        let directory = try TemporaryDirectory()
        let store = try StateStore(stateDirectory: directory.file("state"))
        let created = try RolloutFixtures.engine("r1", world: RolloutFixtures.world())
        try store.acquireLease(holder: Self.holder, ttlMilliseconds: 60_000, now: Self.t0)
        try store.createRollout(created, holder: Self.holder, now: Self.t0)
        let row = try #require(try store.pool.read { try Row.fetchOne($0, sql: "SELECT * FROM rollouts WHERE id = 'r1'") })
        let rowBytes = row.databaseValues.reduce(0) { total, value in
            if case .string(let text) = value.storage { total + text.utf8.count } else { total + 8 }
        }
        #expect(rowBytes < 400, "\(row)")
        #expect(try store.rollout(id: "r1").plan == created.plan)
        #expect(try store.rollout(id: "r1").policy == created.policy)
    }

    @Test func aReplayThatDecidesOtherwiseThanWhatWasRecordedIsRefused() throws {
        let directory = try TemporaryDirectory()
        let store = try StateStore(stateDirectory: directory.file("state"))
        var world = RolloutFixtures.world()
        let created = try RolloutFixtures.engine("r1", world: world)
        try store.acquireLease(holder: Self.holder, ttlMilliseconds: 60_000, now: Self.t0)
        try store.createRollout(created, holder: Self.holder, now: Self.t0)
        var steps = 0
        _ = try Self.drive(created, world: &world, store: store, from: Self.t0, stepsMax: 12) { _ in steps += 1 }
        #expect(try Self.snapshotSequence(store, "r1") == 0)
        // As if another engine had recorded transition 3: its actions are not what this one returns.
        let recorded = try store.transitions(rolloutID: "r1").first { $0.sequence == 3 }
        try store.pool.write { try $0.execute(sql: "UPDATE transitions SET actions = 'send elsewhere' WHERE rollout_id = 'r1' AND sequence = 3") }
        let refusal = StoreError.replayDiverged(rolloutID: "r1", sequence: 3, recorded: "send elsewhere", replayed: recorded?.actions ?? "")
        #expect(throws: refusal) { try store.engine(rolloutID: "r1") }
        #expect(refusal.description.contains("with the upkeep version that ran it"))
    }

    @Test func aRolloutRecordedWithItsWholeEngineAtEveryTransitionResumesAfterTheMigration() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("upkeep.db")
        // An upkeep before v12: the engine after its last transition in rollouts.engine_json.
        var world = RolloutFixtures.world()
        let created = try RolloutFixtures.engine("r1", world: world)
        var engine = created
        _ = engine.handle(.start, now: Self.t0)
        _ = engine.handle(.observed(world.observation), now: Self.t0)
        let unanswered = engine.unansweredRequests
        try #require(!unanswered.isEmpty)
        let old = try DatabaseQueue(path: path)
        try StoreSchema.migrator.migrate(old, upTo: "v11-update-sets")
        try old.write { db in
            try db.execute(sql: """
                INSERT INTO rollouts (id, created_at, started_at, from_summary, target, plan_json, policy_json, status, status_json, engine_json, transitions)
                VALUES ('r1', ?, ?, 'v1.31.2+k3s1 (3 nodes)', ?, ?, ?, 'running', ?, ?, 2)
                """, arguments: [Self.t0.milliseconds, Self.t0.milliseconds, RolloutFixtures.target.description, try StateStore.json(created.plan),
                                 try StateStore.json(created.policy), try StateStore.json(engine.status), try StateStore.json(engine)])
            for (sequence, event) in ["start", "observed"].enumerated() {
                try db.execute(sql: "INSERT INTO transitions (rollout_id, sequence, at, event, actions) VALUES ('r1', ?, ?, ?, '')",
                               arguments: [sequence + 1, Self.t0.milliseconds, event])
            }
            for (ordinal, step) in engine.progress.enumerated() {
                try db.execute(sql: """
                    INSERT INTO steps (rollout_id, ordinal, move_key, node, rollback, from_version, to_version, stage, phase, progress_json)
                    VALUES ('r1', ?, ?, ?, 0, ?, ?, ?, ?, ?)
                    """, arguments: [ordinal, step.key, step.node, step.from.description, step.to.description, step.stage.rawValue,
                                     step.phase, try StateStore.json(step)])
            }
        }
        try old.close()

        let store = try StateStore(path: path)
        #expect(try store.resumableEngine() == engine)
        #expect(try store.resumableEngine().unansweredRequests == unanswered)
        #expect(try Self.snapshotSequence(store, "r1") == 2)
        // v13 moved the plan and the policy out of the row every transition rewrites.
        #expect(try store.rollout(id: "r1").plan == created.plan)
        #expect(try store.rollout(id: "r1").policy == created.policy)
        let finished = try Self.drive(engine, world: &world, store: store, from: Self.t0.adding(milliseconds: 1000), first: .resume) { engine throws in
            #expect(try store.engine(rolloutID: "r1") == engine)
        }
        #expect(finished.status == .finished(.completed))
        #expect(try store.history(limit: 1).first?.outcome == .completed)
    }
}
