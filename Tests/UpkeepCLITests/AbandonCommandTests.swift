import Foundation
import GRDB
import Testing
import UpkeepRollout
import UpkeepRuntimeTestSupport
@testable import UpkeepStore
import UpkeepTestSupport
import UpkeepCore

/// `upkeep abandon` as the built binary runs it, over a real state database holding a rollout
/// that a controller left in the middle (a node cordoned, requests unanswered).
@Suite struct AbandonCommandTests {
    /// Records rollout r1 up to the moment its first node is cordoned and being drained, as a
    /// controller that then died would leave it. Returns the config path and the cordoned node.
    static func unfinishedState(_ directory: TemporaryDirectory) throws -> (config: String, cordoned: String) {
        let store = try StateStore(stateDirectory: directory.file("state"))
        let start = Instant(milliseconds: Int64(Date().timeIntervalSince1970 * 1000) - 60_000)
        let left = try RolloutFixtures.record(try RolloutFixtures.engine("r1"), world: RolloutFixtures.world(), in: store,
                                              holder: "dead controller", start: start) { engine in
            !engine.cordonedByUpkeep.isEmpty && engine.unansweredRequests.contains { $0.command.name == "drain" }
        }
        let cordoned = try #require(left.cordonedByUpkeep.first)
        #expect(left.status == .running)
        return (try directory.write("stateDir: state\n", to: "upkeep.yaml"), cordoned)
    }

    @Test func abandonRecordsTheOutcomeListsWhatIsLeftAndFreesTheWayForANewRollout() throws {
        let directory = try TemporaryDirectory()
        let (config, cordoned) = try Self.unfinishedState(directory)

        // Not on a terminal and no --yes: refused, nothing recorded.
        let unconfirmed = try UpkeepBinary.run(["abandon", "--config", config])
        #expect(unconfirmed.status == 2 && unconfirmed.error.contains("--yes"), "\(unconfirmed.output)\(unconfirmed.error)")
        let store = try StateStore(stateDirectory: directory.file("state"))
        #expect(try store.unfinishedRollout()?.id == "r1")

        // A live controller holds the lease: refused with the lease code, nothing recorded.
        try store.acquireLease(holder: "live controller", ttlMilliseconds: 600_000, now: Instant(milliseconds: Int64(Date().timeIntervalSince1970 * 1000)))
        let raced = try UpkeepBinary.run(["abandon", "--config", config, "--yes"])
        #expect(raced.status == 6 && raced.error.contains("live controller"), "\(raced.output)\(raced.error)")
        #expect(try store.unfinishedRollout()?.id == "r1")
        try store.releaseLease(holder: "live controller")

        let abandoned = try UpkeepBinary.run(["abandon", "--config", config, "--yes", "--reason", "node rebuilt by hand"])
        #expect(abandoned.status == 0, "\(abandoned.output)\(abandoned.error)")
        #expect(abandoned.output.contains("warning: \(cordoned): left cordoned by Upkeep: `kubectl uncordon \(cordoned)`"), "\(abandoned.output)")
        #expect(abandoned.output.contains("drain was sent and not answered"), "\(abandoned.output)")
        #expect(abandoned.output.contains("rollout r1 abandoned: node rebuilt by hand"), "\(abandoned.output)")
        #expect(try store.unfinishedRollout() == nil)
        #expect(try store.currentLease() == nil, "abandon gives the lease back")
        #expect(try store.history(limit: 1).first?.outcome == .abandoned(reason: "node rebuilt by hand"))
        let status = try UpkeepBinary.run(["status", "--config", config])
        #expect(status.output.hasPrefix("last rollout: r1") && status.output.contains("abandoned: node rebuilt by hand"), "\(status.output)")
        #expect(status.output.contains("cordoned by upkeep: \(cordoned)"), "\(status.output)")
        let metrics = try UpkeepBinary.run(["metrics", "--config", config])
        #expect(metrics.output.contains(#"upkeep_rollouts_total{outcome="abandoned"} 1"#), "\(metrics.output)")

        // Nothing left to abandon or resume; a new rollout may be recorded.
        let again = try UpkeepBinary.run(["abandon", "--config", config, "--yes"])
        #expect(again.status == 2 && again.error.contains("no unfinished rollout"), "\(again.error)")
        let byID = try UpkeepBinary.run(["abandon", "r1", "--config", config, "--yes"])
        #expect(byID.status == 2 && byID.error.contains("already finished (abandoned: node rebuilt by hand)"), "\(byID.error)")
        let unknown = try UpkeepBinary.run(["abandon", "r9", "--config", config, "--yes"])
        #expect(unknown.status == 2 && unknown.error.contains("no rollout r9"), "\(unknown.error)")
        let resume = try UpkeepBinary.run(["resume", "--config", config])
        #expect(resume.status == 2, "\(resume.output)\(resume.error)")
        let now = Instant(milliseconds: Int64(Date().timeIntervalSince1970 * 1000))
        try store.acquireLease(holder: "test", ttlMilliseconds: 60_000, now: now)
        try store.createRollout(try RolloutFixtures.engine("r2"), holder: "test", now: now)
    }

    /// Another upkeep version ran r1 and recorded a transition this engine decides otherwise:
    /// `status` still shows the rollout (the steps as recorded, with the reason), and `abandon`
    /// gives it up from its last snapshot, saying what that snapshot may miss.
    @Test func aRolloutThisEngineCannotReplayIsShownAndCanBeAbandoned() throws {
        let directory = try TemporaryDirectory()
        // Recorded as the runtime records: each transition with its event, replayed on reading.
        let store = try StateStore(stateDirectory: directory.file("state"))
        var world = RolloutFixtures.world()
        var before = try RolloutFixtures.engine("r1", world: world)
        let start = Instant(milliseconds: Int64(Date().timeIntervalSince1970 * 1000) - 60_000)
        try store.acquireLease(holder: "other version", ttlMilliseconds: 600_000, now: start)
        try store.createRollout(before, holder: "other version", now: start)
        for (event, after, actions, at) in RolloutFixtures.timedDrive(before, world: &world, startAt: start, first: .start, stepsMax: 3000) {
            let notices = actions.compactMap { if case .notice(let notice) = $0 { notice } else { nil } }
            try store.record(Transition(engine: after, before: before, event: event, actions: actions, notices: notices), holder: "other version", now: at)
            before = after
            if !after.cordonedByUpkeep.isEmpty, after.unansweredRequests.contains(where: { $0.command.name == "drain" }) { break }
        }
        try store.releaseLease(holder: "other version")
        let cordoned = try #require(before.cordonedByUpkeep.first)
        let config = try directory.write("stateDir: state\n", to: "upkeep.yaml")
        let (snapshot, transitions) = try store.pool.read { db in
            (try Int.fetchOne(db, sql: "SELECT sequence FROM engine_snapshots WHERE rollout_id = 'r1'") ?? -1,
             try Int.fetchOne(db, sql: "SELECT transitions FROM rollouts WHERE id = 'r1'") ?? -1)
        }
        try #require(snapshot >= 0 && snapshot < transitions, "transitions after the snapshot to replay: \(snapshot) of \(transitions)")
        try store.pool.write {
            try $0.execute(sql: "UPDATE transitions SET actions = 'send elsewhere' WHERE rollout_id = 'r1' AND sequence = ?", arguments: [snapshot + 1])
        }
        #expect(throws: StoreError.self) { try store.engine(rolloutID: "r1") }

        let status = try UpkeepBinary.run(["status", "--config", config])
        #expect(status.status == 0, "\(status.output)\(status.error)")
        #expect(status.output.contains("warning: rollout r1 cannot be rebuilt from its saved state"), "\(status.output)")
        #expect(status.output.contains("`upkeep abandon`") && status.output.contains(cordoned), "the steps as recorded: \(status.output)")

        let abandoned = try UpkeepBinary.run(["abandon", "--config", config, "--yes", "--reason", "ran by another version"])
        #expect(abandoned.status == 0, "\(abandoned.output)\(abandoned.error)")
        #expect(abandoned.output.contains("cannot replay rollout r1 past transition \(snapshot)"), "\(abandoned.output)")
        #expect(abandoned.output.contains("after transition \(snapshot) of \(transitions)"), "\(abandoned.output)")
        #expect(abandoned.output.contains("rollout r1 abandoned: ran by another version"), "\(abandoned.output)")
        #expect(try store.unfinishedRollout() == nil)
        #expect(try store.history(limit: 1).first?.outcome == .abandoned(reason: "ran by another version"))
        let after = try UpkeepBinary.run(["status", "--config", config])
        #expect(after.status == 0 && after.output.contains("abandoned: ran by another version"), "\(after.output)\(after.error)")
    }

    @Test func anEmptyReasonIsAUsageError() throws {
        let directory = try TemporaryDirectory()
        let (config, _) = try Self.unfinishedState(directory)
        let result = try UpkeepBinary.run(["abandon", "--config", config, "--yes", "--reason", "  "])
        #expect(result.status == 2 && result.error.contains("--reason is empty"), "\(result.error)")
    }
}
