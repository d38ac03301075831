import Foundation
import GRDB
import UpkeepRollout
import UpkeepCore

/// What a command (or `upkeep serve`) did to a rollout or a component update.
public enum OperationKind: String, Codable, Sendable, CaseIterable {
    /// A new rollout to a newer version (`upkeep apply`).
    case apply
    /// A new rollout to an older version (`upkeep rollback --to-previous | --to-version`).
    case rollback
    /// A new recovery from a backup (`upkeep recover`).
    case recover
    /// Carrying an unfinished rollout on (`upkeep resume`, or `apply` on one to the same target).
    case resume
    /// Undoing a hop by restoring its snapshot (`upkeep rollback --restore`).
    case restore
    case abandon
    /// A component update through Git (`upkeep update`).
    case update
    /// Going on against the compatibility table (`--ignore-compatibility`, typed confirmation):
    /// its detail names the table entry and the versions.
    case ignoreCompatibility = "ignore-compatibility"
    /// The post-update validation after the rollout or update completed (docs/validate.md,
    /// "After every change"): its detail says healthy or which checks were not.
    case validate
}

/// Who started an operation: a person at a terminal (the effective OS user, the user who ran
/// sudo, the host), or `upkeep serve` and the policy that decided. Recorded, shown by `history`
/// and `report`; never used to allow or refuse anything.
public struct Initiator: Codable, Equatable, Sendable, CustomStringConvertible {
    /// The effective user (getpwuid of the effective uid); for `serve`, the service's user.
    public var user: String
    /// `SUDO_USER`: who ran sudo, when the command ran under it.
    public var sudoUser: String?
    public var host: String
    /// `serve` when the controller loop started it; nil for a command someone typed.
    public var service: String?
    /// For `serve`: the policy that decided (e.g. `automation.k3s: minor`).
    public var policy: String?

    public init(user: String, sudoUser: String? = nil, host: String, service: String? = nil, policy: String? = nil) {
        self.user = user
        self.sudoUser = sudoUser
        self.host = host
        self.service = service
        self.policy = policy
    }

    /// `upkeep serve`'s: the service user, its host and the policy that decided.
    public static func serve(user: String, host: String, policy: String) -> Initiator {
        Initiator(user: user, host: host, service: "serve", policy: policy)
    }

    /// `alice@ctl1`, `root (sudo by alice)@ctl1`, `serve@ctl1 (policy automation.k3s: minor)`.
    public var description: String {
        if let service { return "\(service)@\(host)" + (policy.map { " (policy \($0))" } ?? "") }
        return user + (sudoUser.map { $0 == user ? "" : " (sudo by \($0))" } ?? "") + "@\(host)"
    }
}

/// An operation as a command starts it: what and by whom (the store adds when).
public struct OperationStamp: Equatable, Sendable {
    public var kind: OperationKind
    public var by: Initiator

    public init(_ kind: OperationKind, by: Initiator) {
        self.kind = kind
        self.by = by
    }
}

/// An operation as recorded.
public struct OperationEntry: Codable, Equatable, Sendable {
    public var kind: OperationKind
    public var at: Instant
    public var by: Initiator
    /// What was overridden and why it mattered (`ignore-compatibility`); nil for most kinds.
    public var detail: String?

    public init(kind: OperationKind, at: Instant, by: Initiator, detail: String? = nil) {
        self.kind = kind
        self.at = at
        self.by = by
        self.detail = detail
    }

    /// `apply by alice@ctl1`, `ignore-compatibility by alice@ctl1: Longhorn v1.7.2 supports …`.
    public var summary: String { "\(kind.rawValue) by \(by)" + (detail.map { ": \($0)" } ?? "") }
}

extension StateStore {
    /// Records `stamp` as done to `subject` (a component update's id) at `now`. Rollouts record
    /// theirs with the transition they begin with (`createRollout`, `record`).
    public func recordOperation(_ stamp: OperationStamp, subject: String, detail: String? = nil, now: Instant) throws(StoreError) {
        let initiator = try Self.json(stamp.by)
        try write { db in try Self.insertOperation(db, stamp, subject: subject, now: now, initiator: initiator, detail: detail) }
    }

    /// Every operation recorded for `subject`, oldest first (at most `limit`).
    public func operations(subject: String, limit: Int = 1000) throws(StoreError) -> [OperationEntry] {
        let rows = try read { db in try Self.operationRows(db, subject: subject, limit: limit) }
        return rows.compactMap(Self.operation)
    }

    static func insertOperation(_ db: Database, _ stamp: OperationStamp, subject: String, now: Instant, initiator: String,
                                detail: String? = nil) throws {
        try db.execute(sql: "INSERT INTO operations (subject, kind, at, initiator_json, detail) VALUES (?, ?, ?, ?, ?)",
                       arguments: [subject, stamp.kind.rawValue, now.milliseconds, initiator, detail])
    }

    static func operationRows(_ db: Database, subject: String, limit: Int) throws -> [Row] {
        try Row.fetchAll(db, sql: "SELECT kind, at, initiator_json, detail FROM operations WHERE subject = ? ORDER BY id LIMIT ?",
                         arguments: [subject, max(limit, 0)])
    }

    /// The operation that made `subject` (an apply, rollback, recover or update), if recorded.
    static func makerRow(_ db: Database, subject: String) throws -> Row? {
        try Row.fetchOne(db, sql: """
            SELECT kind, at, initiator_json, detail FROM operations
            WHERE subject = ? AND kind IN ('apply', 'rollback', 'recover', 'update') ORDER BY id LIMIT 1
            """, arguments: [subject])
    }

    /// A row as an entry; nil for one this version cannot read (a kind of a newer version).
    static func operation(_ row: Row) -> OperationEntry? {
        guard let kind = OperationKind(rawValue: row["kind"]),
              let by = try? JSONDecoder().decode(Initiator.self, from: Data((row["initiator_json"] as String).utf8)) else { return nil }
        return OperationEntry(kind: kind, at: Instant(milliseconds: row["at"]), by: by, detail: row["detail"])
    }

    // MARK: - Cluster Lease events

    /// Counts one `event` of the cluster Lease (`conflict`, `lost`, …) at `now`.
    public func countLeaseEvent(_ event: String, now: Instant) throws(StoreError) {
        try write { db in
            try db.execute(sql: """
                INSERT INTO lease_events (event, count, last_at) VALUES (?, 1, ?)
                ON CONFLICT(event) DO UPDATE SET count = count + 1, last_at = excluded.last_at
                """, arguments: [event, now.milliseconds])
        }
    }

    /// How often each cluster Lease event was counted, by event.
    public func leaseEventCounts() throws(StoreError) -> [String: Int] {
        try read { db in
            Dictionary(uniqueKeysWithValues: try Row.fetchAll(db, sql: "SELECT event, count FROM lease_events").map { ($0["event"], $0["count"]) })
        }
    }
}
