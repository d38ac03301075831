import Foundation
import Testing
import UpkeepCore
import UpkeepRollout
import UpkeepRuntimeTestSupport
import UpkeepStore
import UpkeepTestSupport

/// The outbox in a real SQLite file: what emitting writes (per sink, by filter, once), its
/// bound, the claims that keep two deliverers apart, and the rollout milestones recorded in the
/// same transaction as the transition that produced them.
@Suite struct OutboxTests {
    static let start = Instant(milliseconds: 1_800_000_000_000)

    static func routing(rowsMax: Int = 100) -> NotificationRouting {
        NotificationRouting(cluster: "lab", routes: [
            .init(sink: "all", events: nil),
            .init(sink: "failures", events: [.rolloutFailed, .rolloutRolledBack, .backupFailed]),
        ], rowsMax: rowsMax)
    }

    static func store(_ directory: TemporaryDirectory, routing: NotificationRouting = routing()) throws -> StateStore {
        try StateStore(path: directory.file("upkeep.db"), notifications: routing)
    }

    @Test func emittingWritesOneRowPerSinkThatWantsTheEventWithOneID() throws {
        let directory = try TemporaryDirectory()
        let store = try Self.store(directory)
        #expect(try store.emit(.rolloutStarted, summary: "started", details: [:], now: Self.start) == 1)
        #expect(try store.emit(.backupFailed, summary: "backup failed", details: ["node": "s1"], now: Self.start) == 2)
        let rows = try store.outboxEntries(limit: 10)
        #expect(rows.map(\.sink).sorted() == ["all", "all", "failures"])
        let backup = rows.filter { $0.event == "backup.failed" }
        #expect(backup.count == 2 && Set(backup.map(\.id)).count == 1 && backup.allSatisfy { $0.body == backup[0].body }, "one event, one id")
        let event = try NotificationEvent.decode(backup[0].body)
        #expect(event.cluster == "lab" && event.details == ["node": "s1"] && event.time == "2027-01-15T08:00:00Z")
        #expect(rows.allSatisfy { $0.state == .pending && $0.attempts == 0 && $0.nextAttemptAt == Self.start })
        // A test goes only where it is sent, whatever the filters.
        try store.emit(NotificationEvent(.test, summary: "t", details: [:], cluster: "lab", at: Self.start), toSinks: ["failures"], now: Self.start)
        #expect(try store.outboxEntries(sink: "failures", limit: 10).map(\.event) == ["notification.test", "backup.failed"])
        // Without routes nothing is written.
        let quiet = try StateStore(path: directory.file("upkeep.db"))
        #expect(try quiet.emit(.rolloutStarted, summary: "s", details: [:], now: Self.start) == 0)
        #expect(try store.outboxEntries(limit: 10).count == 4)
    }

    @Test func anEventKeyedOnceIsToldOnce() throws {
        let directory = try TemporaryDirectory()
        let store = try Self.store(directory)
        for day in 0..<3 {
            try store.emit(.updateAvailable, summary: "k3s v1.31.5+k3s1", details: [:], once: "update.available k3s v1.31.5+k3s1",
                           now: Self.start.adding(seconds: day * 86_400))
        }
        try store.emit(.updateAvailable, summary: "k3s v1.31.6+k3s1", details: [:], once: "update.available k3s v1.31.6+k3s1", now: Self.start)
        #expect(try store.outboxEntries(limit: 10).count == 2)
    }

    @Test func pastTheBoundDeliveredRowsGoFirstThenTheOldestUndeliveredCountedAsDropped() throws {
        let directory = try TemporaryDirectory()
        let store = try Self.store(directory, routing: NotificationRouting(cluster: "lab", routes: [.init(sink: "a", events: nil)], rowsMax: 5))
        for index in 0..<5 { try store.emit(.rolloutNodeDone, summary: "n\(index)", details: [:], now: Self.start.adding(seconds: index)) }
        // Deliver the two oldest.
        for _ in 0..<2 {
            let claimed = try #require(try store.claimNotification(sink: "a", holder: "h", now: Self.start.adding(seconds: 10), claimMilliseconds: 1000))
            try store.recordDelivery(sequence: claimed.sequence, .sent, now: Self.start.adding(seconds: 10))
        }
        for index in 5..<9 { try store.emit(.rolloutNodeDone, summary: "n\(index)", details: [:], now: Self.start.adding(seconds: 20 + index)) }
        let rows = try store.outboxEntries(limit: 100)
        #expect(rows.count == 5)
        let summaries = try rows.map { try NotificationEvent.decode($0.body).summary }
        #expect(summaries == ["n8", "n7", "n6", "n5", "n4"], "the two sent went first, then n2 and n3: \(summaries)")
        let stats = try #require(try store.notificationStats().first)
        #expect(stats.sink == "a" && stats.sent == 2 && stats.dropped == 2 && stats.pending == 5, "\(stats)")
    }

    @Test func aClaimKeepsOtherDeliverersOffTheSinkUntilItExpires() throws {
        let directory = try TemporaryDirectory()
        let store = try Self.store(directory)
        let other = try Self.store(directory)  // a second process's connection
        try store.emit(.rolloutStarted, summary: "s1", details: [:], now: Self.start)
        try store.emit(.rolloutFinished, summary: "s2", details: [:], now: Self.start)
        let first = try #require(try store.claimNotification(sink: "all", holder: "A", now: Self.start, claimMilliseconds: 30_000))
        #expect(first.attempts == 1 && first.event == "rollout.started")
        #expect(try other.claimNotification(sink: "all", holder: "B", now: Self.start.adding(seconds: 29), claimMilliseconds: 30_000) == nil,
                "one delivery at a time per sink, in order")
        #expect(try other.nextNotificationDue(sink: "all") == Self.start.adding(seconds: 30))
        // A dies mid-delivery: once its claim has expired B takes the same row, same id, second attempt.
        let taken = try #require(try other.claimNotification(sink: "all", holder: "B", now: Self.start.adding(seconds: 31), claimMilliseconds: 30_000))
        #expect(taken.sequence == first.sequence && taken.id == first.id && taken.body == first.body && taken.attempts == 2)
        try other.recordDelivery(sequence: taken.sequence, .retry(at: Self.start.adding(seconds: 100), error: "HTTP 503"), now: Self.start.adding(seconds: 32))
        #expect(try store.claimNotification(sink: "all", holder: "A", now: Self.start.adding(seconds: 60), claimMilliseconds: 1000) == nil,
                "the head waits for its next attempt; the row behind it does not jump ahead")
        let again = try #require(try store.claimNotification(sink: "all", holder: "A", now: Self.start.adding(seconds: 100), claimMilliseconds: 1000))
        try store.recordDelivery(sequence: again.sequence, .dead(error: "gave up"), now: Self.start.adding(seconds: 101))
        let next = try #require(try store.claimNotification(sink: "all", holder: "A", now: Self.start.adding(seconds: 101), claimMilliseconds: 1000))
        #expect(next.event == "rollout.finished")
        let stats = try #require(try store.notificationStats(sinks: ["all", "unused"]).first { $0.sink == "all" })
        #expect(stats.failed == 1 && stats.attemptsFailed == 2 && stats.lastError == "gave up" && stats.pending == 1)
        #expect(try store.notificationStats(sinks: ["unused"]).contains { $0.sink == "unused" && $0.pending == 0 })
    }

    @Test func aRolloutsMilestonesAreRecordedWithItsTransitions() throws {
        let directory = try TemporaryDirectory()
        let store = try Self.store(directory)
        let engine = try RolloutFixtures.engine("r-good")
        let recorded = try RolloutFixtures.record(engine, world: RolloutFixtures.world(), in: store, start: Self.start)
        #expect(recorded.status == .finished(.completed))
        let events = try store.outboxEntries(sink: "all", limit: 100).reversed().map { try NotificationEvent.decode($0.body) }
        #expect(events.map(\.event) == [.rolloutStarted, .rolloutNodeDone, .rolloutNodeDone, .rolloutNodeDone, .rolloutFinished],
                "\(events.map(\.event.rawValue))")
        #expect(events[0].details == ["rollout": "r-good", "target": "v1.31.4+k3s1", "nodes": "3", "hops": "1",
                                      "from": "v1.31.2+k3s1 (3 nodes)"], "\(events[0].details)")
        #expect(events[1].details["node"] == "server-1" && events[1].details["role"] == "server", "servers first: \(events[1].details)")
        #expect(Set(events.map(\.id)).count == 5)
        #expect(try store.outboxEntries(sink: "failures", limit: 100).isEmpty, "the failures sink wants none of them")
    }

    @Test func aFailedNodeGivesRolledBackAndAFailedBackupGivesBackupFailedThenBlocked() throws {
        let directory = try TemporaryDirectory()
        let store = try Self.store(directory)
        var world = RolloutFixtures.world()
        world.failingInstalls["agent-2"] = RolloutFixtures.target
        try RolloutFixtures.record(try RolloutFixtures.engine("r-bad"), world: world, in: store, start: Self.start)
        let failures = try store.outboxEntries(sink: "failures", limit: 100).map { try NotificationEvent.decode($0.body) }
        #expect(failures.map(\.event) == [.rolloutRolledBack], "\(failures.map(\.event.rawValue))")
        #expect(failures.first?.details["cause"]?.contains("agent-2") == true && failures.first?.details["requested"] == "false",
                "\(failures.first?.details ?? [:])")

        // The operator's own restore (`rollback --restore`) is told as asked for, not as a failure.
        var world2 = RolloutFixtures.world()
        var engine = try RolloutFixtures.engine("r-snap", snapshots: true)
        let holder = "test"
        try store.acquireLease(holder: holder, ttlMilliseconds: 600_000, now: Self.start.adding(seconds: 1800))
        try store.createRollout(engine, holder: holder, now: Self.start.adding(seconds: 1800))
        for first in [RolloutEngine.Event.start, .restore] {
            for (event, after, actions) in RolloutFixtures.drive(engine, world: &world2, startAt: Self.start.adding(seconds: 1800), first: first) {
                let notices = actions.compactMap { if case .notice(let notice) = $0 { notice } else { nil } }
                try store.record(Transition(engine: after, before: engine, event: "\(event)", actions: "", notices: notices), holder: holder,
                                 now: Self.start.adding(seconds: 1900))
                engine = after
            }
        }
        try store.releaseLease(holder: holder)
        let rolledBack = if case .finished(.rolledBack) = engine.status { true } else { false }
        #expect(engine.restoreWasRequested && rolledBack, "\(engine.status)")
        let restored = try #require(try store.outboxEntries(sink: "failures", limit: 1).first.map { try NotificationEvent.decode($0.body) })
        #expect(restored.event == .rolloutRolledBack && restored.details["requested"] == "true" && restored.summary.contains("rolled back as asked"),
                "\(restored.summary)")

        var broken = RolloutFixtures.world()
        broken.backupRefusal = "no space left on device"
        let blocked = try RolloutFixtures.record(try RolloutFixtures.engine("r-backup", snapshots: true), world: broken, in: store,
                                                 start: Self.start.adding(seconds: 3600)) { if case .blocked = $0.status { true } else { false } }
        guard case .blocked = blocked.status else {
            Issue.record("the rollout should block on its backup: \(blocked.status)")
            return
        }
        let told = try store.outboxEntries(sink: "all", limit: 100).prefix(2).reversed().map { try NotificationEvent.decode($0.body) }
        #expect(told.map(\.event) == [.backupFailed, .rolloutBlocked], "\(told.map(\.event.rawValue))")
        #expect(told.first?.details["reason"]?.contains("no space left on device") == true && told.first?.details["hop"] == "1")
        #expect(told.first?.details["backup"] == "r-backup-h1" && told.first?.details["node"] == "server-1")
    }
}
