import GRDB
import UpkeepRollout
import UpkeepCore

/// One notification for one sink, as the outbox keeps it until it is sent or given up.
public struct OutboxEntry: Equatable, Sendable {
    public enum State: String, Sendable {
        /// Not delivered yet; tried again at `nextAttemptAt`.
        case pending
        case sent
        /// Given up: the sink refused it, or every attempt failed.
        case dead
    }

    /// Emission order (per sink, delivery follows it).
    public var sequence: Int64
    /// The event's idempotency key, the same for every sink.
    public var id: String
    public var sink: String
    public var event: String
    public var createdAt: Instant
    /// The event's canonical JSON (`NotificationEvent.json`).
    public var body: String
    public var state: State
    /// Attempts begun so far, the one just claimed included.
    public var attempts: Int
    public var nextAttemptAt: Instant
    public var lastError: String?
}

/// How one attempt ended, as the deliverer decided.
public enum DeliveryRecord: Equatable, Sendable {
    case sent
    /// Failed; the next attempt at `at`.
    case retry(at: Instant, error: String)
    /// Given up (refused, or the attempts are used up).
    case dead(error: String)
}

/// One sink's delivery counts and state, for `upkeep notify status` and the metrics. The
/// counters only grow; they live apart from the rows, which are pruned.
public struct SinkDeliveryStats: Equatable, Sendable {
    public var sink: String
    /// Rows not delivered yet.
    public var pending = 0
    public var oldestPendingAt: Instant?
    public var sent = 0
    /// Notifications given up.
    public var failed = 0
    /// Undelivered rows pruned to keep the outbox within its bound.
    public var dropped = 0
    /// Attempts that did not deliver (each retry counts).
    public var attemptsFailed = 0
    public var lastSentAt: Instant?
    public var lastError: String?
    public var lastErrorAt: Instant?

    public init(sink: String) { self.sink = sink }
}

/// The notification outbox (docs/notifications.md): emitting is a local transaction of one
/// insert per sink, never a wait on the network; a deliverer claims rows one sink at a time,
/// sends them and records how each attempt ended. A row claimed by a process that died is
/// claimed again once the claim has expired, and sent with the same id: at least once.
extension StateStore {
    /// Records `event` for every sink of the store's routing that wants it, in one transaction.
    /// With `once`, an event with the same key emitted before (within 400 days) is not emitted
    /// again (an update found by every check, a certificate seen by every scrape). Returns the
    /// rows written; undelivered rows pruned to stay within `rowsMax` count as dropped.
    @discardableResult
    public func emit(_ event: NotificationEvent, once: String? = nil, now: Instant) throws(StoreError) -> Int {
        let sinks = notifications.sinks(for: event.event)
        guard !sinks.isEmpty else { return 0 }
        return try write { db in
            if let once {
                try db.execute(sql: "DELETE FROM notification_once WHERE at < ?", arguments: [now.milliseconds - Self.onceKeptMilliseconds])
                try db.execute(sql: "INSERT OR IGNORE INTO notification_once (key, at) VALUES (?, ?)", arguments: [once, now.milliseconds])
                guard db.changesCount > 0 else { return 0 }
            }
            return try Self.enqueue(db, event, sinks: sinks, rowsMax: notifications.rowsMax, now: now)
        }
    }

    /// The emit API for code that has something to tell (`maintenance enable`, `backup now`, a
    /// check): the event named `name` of this store's cluster at `now`, with a fresh id.
    @discardableResult
    public func emit(_ name: NotificationEventName, summary: String, details: [String: String], once: String? = nil,
                     now: Instant) throws(StoreError) -> Int {
        try emit(NotificationEvent(name, summary: summary, details: details, cluster: notifications.cluster, at: now), once: once, now: now)
    }

    /// Records `event` for exactly `sinks`, whatever their filters (`upkeep notify test`).
    public func emit(_ event: NotificationEvent, toSinks sinks: [String], now: Instant) throws(StoreError) {
        try write { db in _ = try Self.enqueue(db, event, sinks: sinks, rowsMax: notifications.rowsMax, now: now) }
    }

    static let onceKeptMilliseconds: Int64 = 400 * 86_400_000

    /// Inserts one row per sink and prunes past `rowsMax`; part of the caller's transaction.
    static func enqueue(_ db: Database, _ event: NotificationEvent, sinks: [String], rowsMax: Int, now: Instant) throws -> Int {
        guard !sinks.isEmpty else { return 0 }
        let body = event.json
        for sink in sinks {
            try db.execute(sql: """
                INSERT OR IGNORE INTO notification_outbox (id, sink, event, created_at, body, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?)
                """, arguments: [event.id, sink, event.event.rawValue, now.milliseconds, body, now.milliseconds])
            try db.execute(sql: "INSERT OR IGNORE INTO notification_sinks (sink) VALUES (?)", arguments: [sink])
        }
        let count = try Int.fetchOne(db, sql: "SELECT count(*) FROM notification_outbox") ?? 0
        guard count > rowsMax else { return sinks.count }
        var excess = count - rowsMax
        try db.execute(sql: """
            DELETE FROM notification_outbox WHERE seq IN
                (SELECT seq FROM notification_outbox WHERE state != 'pending' ORDER BY seq LIMIT ?)
            """, arguments: [excess])
        excess -= db.changesCount
        guard excess > 0 else { return sinks.count }
        let dropped = try Row.fetchAll(db, sql: """
            SELECT sink, count(*) AS n FROM (SELECT sink FROM notification_outbox WHERE state = 'pending' ORDER BY seq LIMIT ?) GROUP BY sink
            """, arguments: [excess])
        for row in dropped {
            try db.execute(sql: "UPDATE notification_sinks SET dropped = dropped + ? WHERE sink = ?", arguments: [row["n"] as Int, row["sink"] as String])
        }
        try db.execute(sql: """
            DELETE FROM notification_outbox WHERE seq IN
                (SELECT seq FROM notification_outbox WHERE state = 'pending' ORDER BY seq LIMIT ?)
            """, arguments: [excess])
        return sinks.count
    }

    /// When `sink`'s oldest undelivered row is due (now or later), or nil when none is waiting.
    /// A read: the deliverer claims only when something is due.
    public func nextNotificationDue(sink: String) throws(StoreError) -> Instant? {
        try read { db in
            try Int64.fetchOne(db, sql: """
                SELECT max(next_attempt_at, COALESCE(claimed_until, 0)) FROM notification_outbox
                WHERE sink = ? AND state = 'pending' ORDER BY seq LIMIT 1
                """, arguments: [sink]).map(Instant.init(milliseconds:))
        }
    }

    /// Claims `sink`'s oldest undelivered row for `holder` until `now + claimMilliseconds`, if it
    /// is due and no other deliverer holds a claim on the sink; counts the attempt. Rows of one
    /// sink go one at a time and in order.
    public func claimNotification(sink: String, holder: String, now: Instant, claimMilliseconds: Int64) throws(StoreError) -> OutboxEntry? {
        try write { db in
            let held = try Bool.fetchOne(db, sql: """
                SELECT 1 FROM notification_outbox WHERE sink = ? AND state = 'pending' AND claimed_until > ? AND claimed_by != ?
                """, arguments: [sink, now.milliseconds, holder]) ?? false
            guard !held, let row = try Row.fetchOne(db, sql: """
                SELECT * FROM notification_outbox WHERE sink = ? AND state = 'pending' ORDER BY seq LIMIT 1
                """, arguments: [sink]) else { return nil }
            var entry = Self.outboxEntry(row)
            guard entry.nextAttemptAt <= now else { return nil }
            try db.execute(sql: "UPDATE notification_outbox SET attempts = attempts + 1, claimed_by = ?, claimed_until = ? WHERE seq = ?",
                           arguments: [holder, now.milliseconds + claimMilliseconds, entry.sequence])
            entry.attempts += 1
            return entry
        }
    }

    /// Records how the attempt on row `sequence` ended and counts it for its sink. A row pruned
    /// meanwhile is not brought back; a row already sent stays sent.
    public func recordDelivery(sequence: Int64, _ outcome: DeliveryRecord, now: Instant) throws(StoreError) {
        try write { db in
            guard let sink = try String.fetchOne(db, sql: "SELECT sink FROM notification_outbox WHERE seq = ? AND state = 'pending'",
                                                 arguments: [sequence]) else { return }
            switch outcome {
            case .sent:
                try db.execute(sql: """
                    UPDATE notification_outbox SET state = 'sent', finished_at = ?, claimed_by = NULL, claimed_until = NULL, last_error = NULL
                    WHERE seq = ?
                    """, arguments: [now.milliseconds, sequence])
                try db.execute(sql: "UPDATE notification_sinks SET sent = sent + 1, last_sent_at = ? WHERE sink = ?",
                               arguments: [now.milliseconds, sink])
            case .retry(let at, let error):
                try db.execute(sql: """
                    UPDATE notification_outbox SET next_attempt_at = ?, last_error = ?, claimed_by = NULL, claimed_until = NULL WHERE seq = ?
                    """, arguments: [at.milliseconds, error, sequence])
                try db.execute(sql: """
                    UPDATE notification_sinks SET attempts_failed = attempts_failed + 1, last_error = ?, last_error_at = ? WHERE sink = ?
                    """, arguments: [error, now.milliseconds, sink])
            case .dead(let error):
                try db.execute(sql: """
                    UPDATE notification_outbox SET state = 'dead', finished_at = ?, last_error = ?, claimed_by = NULL, claimed_until = NULL
                    WHERE seq = ?
                    """, arguments: [now.milliseconds, error, sequence])
                try db.execute(sql: """
                    UPDATE notification_sinks SET failed = failed + 1, attempts_failed = attempts_failed + 1, last_error = ?, last_error_at = ?
                    WHERE sink = ?
                    """, arguments: [error, now.milliseconds, sink])
            }
        }
    }

    /// Per sink: counters, the undelivered rows and the last error; every sink the outbox has
    /// seen, and `sinks` (the configured ones) even before their first event.
    public func notificationStats(sinks: [String] = []) throws(StoreError) -> [SinkDeliveryStats] {
        try read { db in
            var stats = Dictionary(uniqueKeysWithValues: sinks.map { ($0, SinkDeliveryStats(sink: $0)) })
            for row in try Row.fetchAll(db, sql: "SELECT * FROM notification_sinks") {
                let sink: String = row["sink"]
                var entry = stats[sink] ?? SinkDeliveryStats(sink: sink)
                entry.sent = row["sent"]
                entry.failed = row["failed"]
                entry.dropped = row["dropped"]
                entry.attemptsFailed = row["attempts_failed"]
                entry.lastSentAt = (row["last_sent_at"] as Int64?).map(Instant.init(milliseconds:))
                entry.lastError = row["last_error"]
                entry.lastErrorAt = (row["last_error_at"] as Int64?).map(Instant.init(milliseconds:))
                stats[sink] = entry
            }
            for row in try Row.fetchAll(db, sql: """
                SELECT sink, count(*) AS n, min(created_at) AS oldest FROM notification_outbox WHERE state = 'pending' GROUP BY sink
                """) {
                let sink: String = row["sink"]
                var entry = stats[sink] ?? SinkDeliveryStats(sink: sink)
                entry.pending = row["n"]
                entry.oldestPendingAt = (row["oldest"] as Int64?).map(Instant.init(milliseconds:))
                stats[sink] = entry
            }
            return stats.values.sorted { $0.sink < $1.sink }
        }
    }

    /// Outbox rows, newest first, at most `limit` (optionally of one sink).
    public func outboxEntries(sink: String? = nil, limit: Int) throws(StoreError) -> [OutboxEntry] {
        try read { db in
            let rows = if let sink {
                try Row.fetchAll(db, sql: "SELECT * FROM notification_outbox WHERE sink = ? ORDER BY seq DESC LIMIT ?", arguments: [sink, limit])
            } else {
                try Row.fetchAll(db, sql: "SELECT * FROM notification_outbox ORDER BY seq DESC LIMIT ?", arguments: [limit])
            }
            return rows.map(Self.outboxEntry)
        }
    }

    private static func outboxEntry(_ row: Row) -> OutboxEntry {
        OutboxEntry(sequence: row["seq"], id: row["id"], sink: row["sink"], event: row["event"], createdAt: Instant(milliseconds: row["created_at"]),
                    body: row["body"], state: OutboxEntry.State(rawValue: row["state"]) ?? .pending, attempts: row["attempts"],
                    nextAttemptAt: Instant(milliseconds: row["next_attempt_at"]), lastError: row["last_error"])
    }
}
