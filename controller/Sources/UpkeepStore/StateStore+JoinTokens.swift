import GRDB
import UpkeepCore

/// A bootstrap token as the state database keeps it: never the secret, only its SHA-256.
public struct JoinTokenRecord: Equatable, Sendable {
    /// The public half of `<id>.<secret>`, shown by `upkeep token list`.
    public var id: String
    /// SHA-256 of the secret half, 64 lowercase hex digits.
    public var secretSHA256: String
    /// The only node this token may enroll; nil: any node.
    public var node: String?
    public var usesMax: Int
    public var uses: Int
    public var createdAt: Instant
    public var expiresAt: Instant
    public var revokedAt: Instant?

    public init(id: String, secretSHA256: String, node: String?, usesMax: Int, uses: Int = 0, createdAt: Instant, expiresAt: Instant,
                revokedAt: Instant? = nil) {
        self.id = id
        self.secretSHA256 = secretSHA256
        self.node = node
        self.usesMax = usesMax
        self.uses = uses
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.revokedAt = revokedAt
    }

    /// Why this token cannot enroll `node` at `now`, or nil when it can.
    public func refusal(node requested: String, now: Instant) -> JoinRefusal? {
        if let revokedAt { return .revoked(id: id, at: revokedAt) }
        if now >= expiresAt { return .expired(id: id, at: expiresAt) }
        if uses >= usesMax { return .usedUp(id: id, uses: uses) }
        if let node, node != requested { return .nodeNotAllowed(id: id, requested: requested, allowed: node) }
        return nil
    }

    /// `active`, `expired`, `used up` or `revoked`, for `upkeep token list`.
    public func state(now: Instant) -> String {
        if revokedAt != nil { return "revoked" }
        if now >= expiresAt { return "expired" }
        if uses >= usesMax { return "used up" }
        return "active"
    }
}

/// A node enrolled through a token.
public struct EnrollmentRecord: Equatable, Sendable {
    public var node: String
    public var tokenID: String
    public var enrolledAt: Instant
    public var certificateSerial: String
    public var notAfter: Instant

    public init(node: String, tokenID: String, enrolledAt: Instant, certificateSerial: String, notAfter: Instant) {
        self.node = node
        self.tokenID = tokenID
        self.enrolledAt = enrolledAt
        self.certificateSerial = certificateSerial
        self.notAfter = notAfter
    }
}

/// Why a join is refused; each description says what to do. The join server sends the
/// description to the joining node.
public enum JoinRefusal: Error, Equatable, Sendable, CustomStringConvertible {
    /// No token has this id, or its secret is another one (the two are not told apart).
    case unknownToken
    case expired(id: String, at: Instant)
    case usedUp(id: String, uses: Int)
    case revoked(id: String, at: Instant)
    case nodeNotAllowed(id: String, requested: String, allowed: String)
    /// The node enrolled before and the join did not say --force.
    case alreadyEnrolled(node: String, at: Instant)

    public var description: String {
        switch self {
        case .unknownToken:
            "the token is not known to this controller; create one with 'upkeep token create' and copy it whole"
        case let .expired(id, at):
            "token \(id) expired at \(at.utcDescription); create a new one with 'upkeep token create'"
        case let .usedUp(id, uses):
            "token \(id) was already used (\(uses) of its uses); create a new one with 'upkeep token create', or one with --uses N for several nodes"
        case let .revoked(id, at):
            "token \(id) was revoked at \(at.utcDescription); create a new one with 'upkeep token create'"
        case let .nodeNotAllowed(id, requested, allowed):
            "token \(id) may only enroll node \(allowed), not \(requested); join from \(allowed), or create a token for \(requested)"
        case let .alreadyEnrolled(node, at):
            "node \(node) already enrolled at \(at.utcDescription); pass --force to enroll it again (a new key and certificate)"
        }
    }
}

extension StateStore {
    /// Records a new token; an id already used is refused (the caller draws another).
    public func createJoinToken(_ token: JoinTokenRecord) throws(StoreError) {
        try write { db in
            try db.execute(sql: """
                INSERT INTO join_tokens (id, secret_sha256, node, uses_max, uses, created_at, expires_at, revoked_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [token.id, token.secretSHA256, token.node, token.usesMax, token.uses, token.createdAt.milliseconds,
                                 token.expiresAt.milliseconds, token.revokedAt?.milliseconds])
        }
    }

    /// Every token, newest first.
    public func joinTokens() throws(StoreError) -> [JoinTokenRecord] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM join_tokens ORDER BY created_at DESC, id").map(Self.joinToken)
        }
    }

    /// Revokes the token `id` at `now`; false when no such token exists. Revoking twice keeps the first time.
    public func revokeJoinToken(id: String, now: Instant) throws(StoreError) -> Bool {
        try write { db in
            try db.execute(sql: "UPDATE join_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?", arguments: [now.milliseconds, id])
            return db.changesCount > 0
        }
    }

    /// Every node enrolled through a token.
    public func enrollments() throws(StoreError) -> [EnrollmentRecord] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM enrollments ORDER BY node").map { row in
                EnrollmentRecord(node: row["node"], tokenID: row["token_id"], enrolledAt: Instant(milliseconds: row["enrolled_at"]),
                                 certificateSerial: row["certificate_serial"], notAfter: Instant(milliseconds: row["not_after"]))
            }
        }
    }

    /// Spends one use of the token `id` (whose secret hashes to `secretSHA256`) on enrolling
    /// `enrollment.node`, and records the enrollment, in one transaction: either both happen or
    /// neither. Throws `JoinRefusal` for a token that may not enroll the node, and
    /// `.alreadyEnrolled` unless `force` for a node that enrolled before.
    public func redeemJoinToken(id: String, secretSHA256: String, enrollment: EnrollmentRecord, force: Bool) throws -> JoinTokenRecord {
        do {
            return try pool.write { db in
                guard let token = try Row.fetchOne(db, sql: "SELECT * FROM join_tokens WHERE id = ?", arguments: [id]).map(Self.joinToken),
                      Self.equalInConstantTime(token.secretSHA256, secretSHA256)
                else { throw JoinRefusal.unknownToken }
                if let refusal = token.refusal(node: enrollment.node, now: enrollment.enrolledAt) { throw refusal }
                if !force, let at = try Int64.fetchOne(db, sql: "SELECT enrolled_at FROM enrollments WHERE node = ?", arguments: [enrollment.node]) {
                    throw JoinRefusal.alreadyEnrolled(node: enrollment.node, at: Instant(milliseconds: at))
                }
                try db.execute(sql: "UPDATE join_tokens SET uses = uses + 1 WHERE id = ?", arguments: [id])
                try db.execute(sql: """
                    INSERT OR REPLACE INTO enrollments (node, token_id, enrolled_at, certificate_serial, not_after) VALUES (?, ?, ?, ?, ?)
                    """, arguments: [enrollment.node, id, enrollment.enrolledAt.milliseconds, enrollment.certificateSerial,
                                     enrollment.notAfter.milliseconds])
                var spent = token
                spent.uses += 1
                return spent
            }
        } catch let refusal as JoinRefusal {
            throw refusal
        } catch {
            throw StoreError.database(Self.reason(error))
        }
    }

    /// Compares two digests without stopping at the first difference.
    static func equalInConstantTime(_ lhs: String, _ rhs: String) -> Bool {
        let left = Array(lhs.utf8), right = Array(rhs.utf8)
        guard left.count == right.count else { return false }
        return zip(left, right).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }

    private static func joinToken(_ row: Row) -> JoinTokenRecord {
        JoinTokenRecord(id: row["id"], secretSHA256: row["secret_sha256"], node: row["node"], usesMax: row["uses_max"], uses: row["uses"],
                        createdAt: Instant(milliseconds: row["created_at"]), expiresAt: Instant(milliseconds: row["expires_at"]),
                        revokedAt: (row["revoked_at"] as Int64?).map { Instant(milliseconds: $0) })
    }
}
