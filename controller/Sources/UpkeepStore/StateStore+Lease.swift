import GRDB
import UpkeepRollout
import UpkeepCore

/// The lease: one row naming the controller allowed to drive rollouts and until when. A holder
/// renews it well before it expires; an expired lease is free for anyone; `forceTakeover` takes
/// an unexpired one (an operator who knows the holder is gone).
extension StateStore {
    static let leaseName = "controller"

    /// Takes the lease for `holder` (or extends it when `holder` already has it).
    /// Throws `leaseHeld` while another holder's lease has not expired, unless `forceTakeover`.
    @discardableResult
    public func acquireLease(holder: String, ttlMilliseconds: Int64, now: Instant, forceTakeover: Bool = false) throws(StoreError) -> Lease {
        precondition(ttlMilliseconds > 0, "a lease needs a positive TTL")
        return try write { db in
            let previous = try Self.lease(db)
            if let previous, previous.holder != holder, previous.expiresAt > now, !forceTakeover {
                throw StoreError.leaseHeld(holder: previous.holder, until: previous.expiresAt)
            }
            // Extending one's own live lease keeps the moment it was first taken.
            let acquiredAt = previous.flatMap { $0.holder == holder && $0.expiresAt > now ? $0.acquiredAt : nil } ?? now
            let lease = Lease(holder: holder, acquiredAt: acquiredAt, expiresAt: now.adding(milliseconds: ttlMilliseconds),
                              ttlMilliseconds: ttlMilliseconds)
            try db.execute(sql: """
                INSERT INTO lease (name, holder, acquired_at, expires_at, ttl_ms) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, acquired_at = excluded.acquired_at,
                    expires_at = excluded.expires_at, ttl_ms = excluded.ttl_ms
                """, arguments: [Self.leaseName, holder, acquiredAt.milliseconds, lease.expiresAt.milliseconds, ttlMilliseconds])
            return lease
        }
    }

    /// Extends `holder`'s lease by its TTL from `now`. Throws `leaseLost` when it expired or
    /// another controller holds it: the caller must stop acting.
    @discardableResult
    public func renewLease(holder: String, now: Instant) throws(StoreError) -> Lease {
        try write { db in try Self.fence(db, holder: holder, now: now) }
    }

    /// Gives the lease up if `holder` has it; otherwise does nothing.
    public func releaseLease(holder: String) throws(StoreError) {
        try write { db in
            try db.execute(sql: "DELETE FROM lease WHERE name = ? AND holder = ?", arguments: [Self.leaseName, holder])
        }
    }

    /// The lease as recorded (possibly expired), or nil when nobody has taken it.
    public func currentLease() throws(StoreError) -> Lease? {
        try read { db in try Self.lease(db) }
    }

    /// Inside a write transaction: checks that `holder` holds an unexpired lease and extends it.
    static func fence(_ db: Database, holder: String, now: Instant) throws -> Lease {
        guard var lease = try lease(db), lease.holder == holder, lease.expiresAt > now else {
            let other = try lease(db).flatMap { $0.holder != holder && $0.expiresAt > now ? $0.holder : nil }
            throw StoreError.leaseLost(holder: holder, current: other)
        }
        lease.expiresAt = now.adding(milliseconds: lease.ttlMilliseconds)
        try db.execute(sql: "UPDATE lease SET expires_at = ? WHERE name = ?", arguments: [lease.expiresAt.milliseconds, leaseName])
        return lease
    }

    static func lease(_ db: Database) throws -> Lease? {
        guard let row = try Row.fetchOne(db, sql: "SELECT holder, acquired_at, expires_at, ttl_ms FROM lease WHERE name = ?",
                                         arguments: [leaseName]) else { return nil }
        return Lease(holder: row["holder"], acquiredAt: Instant(milliseconds: row["acquired_at"]),
                     expiresAt: Instant(milliseconds: row["expires_at"]), ttlMilliseconds: row["ttl_ms"])
    }
}
