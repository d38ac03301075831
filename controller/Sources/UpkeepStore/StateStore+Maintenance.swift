import GRDB
import UpkeepCore

/// One period of maintenance mode (Flux's reconciliation suspended) as this controller records
/// it. Written before anything is suspended and kept until everything it suspended is resumed,
/// so `upkeep maintenance disable` after a crash resumes exactly those objects, and `upkeep
/// status` can say the cluster is in maintenance without asking it. The cluster's own copy, the
/// one every controller and `kubectl` read, is the ConfigMap `kube-system/upkeep-maintenance`.
public struct MaintenancePeriod: Codable, Equatable, Sendable {
    public enum State: String, Codable, Sendable {
        /// Recorded; its objects are being suspended (or that was interrupted).
        case enabling
        /// Every object it names is suspended.
        case enabled
        /// Its objects are being resumed (or that was interrupted).
        case disabling
        /// Every object it suspended was resumed: history.
        case ended
    }

    /// `m20261207-101500`.
    public var id: String
    public var state: State
    public var since: Instant
    public var reason: String
    /// `user@host` that enabled it.
    public var by: String
    /// The rollout it is held for (`maintenance.suspendFlux`); nil: an operator's.
    public var rollout: String?
    /// What it suspends and resumes: `Kustomization/flux-system/apps`.
    public var suspended: [String]
    /// What was suspended before it and stays so.
    public var alreadySuspended: [String]
    public var endedAt: Instant?
    public var endedBy: String?

    public init(id: String, state: State, since: Instant, reason: String, by: String, rollout: String?, suspended: [String],
                alreadySuspended: [String], endedAt: Instant? = nil, endedBy: String? = nil) {
        self.id = id
        self.state = state
        self.since = since
        self.reason = reason
        self.by = by
        self.rollout = rollout
        self.suspended = suspended
        self.alreadySuspended = alreadySuspended
        self.endedAt = endedAt
        self.endedBy = endedBy
    }
}

extension StateStore {
    /// Inserts the period, or replaces the one with its id (each step of enable and disable).
    public func saveMaintenancePeriod(_ period: MaintenancePeriod) throws(StoreError) {
        let json = try Self.json(period)
        try write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO maintenance_periods (id, started_at, state, period_json, ended_at) VALUES (?, ?, ?, ?, ?)",
                           arguments: [period.id, period.since.milliseconds, period.state.rawValue, json, period.endedAt?.milliseconds])
        }
    }

    /// The newest period that has not ended, if any.
    public func openMaintenancePeriod() throws(StoreError) -> MaintenancePeriod? {
        try maintenancePeriods(where: "state != 'ended'", limit: 1).first
    }

    /// Periods newest first, at most `limit`.
    public func maintenancePeriods(limit: Int) throws(StoreError) -> [MaintenancePeriod] {
        try maintenancePeriods(where: "1", limit: limit)
    }

    private func maintenancePeriods(where condition: String, limit: Int) throws(StoreError) -> [MaintenancePeriod] {
        let rows = try read { db in
            try Row.fetchAll(db, sql: "SELECT id, period_json FROM maintenance_periods WHERE \(condition) ORDER BY started_at DESC, id DESC LIMIT ?",
                             arguments: [max(limit, 0)]).map { ($0["id"] as String, $0["period_json"] as String) }
        }
        var periods: [MaintenancePeriod] = []
        for (id, json) in rows { periods.append(try Self.decode(MaintenancePeriod.self, json, what: "maintenance period \(id)")) }
        return periods
    }
}
