import GRDB
import UpkeepRollout
import UpkeepCore

/// A sealed datastore backup as the state database records it.
public struct BackupRecord: Codable, Equatable, Sendable {
    public var id: String
    /// The rollout it was taken before, if any (nil: `upkeep backup now`).
    public var rolloutID: String?
    public var takenAt: Instant
    public var node: String
    /// `etcdSnapshot` or `sqliteTar`.
    public var format: String
    /// The file's name on the node it came from.
    public var agentFile: String
    /// The sealed file on the controller.
    public var path: String
    /// Plaintext size and SHA-256.
    public var bytes: Int64
    public var sha256: String

    public init(id: String, rolloutID: String?, takenAt: Instant, node: String, format: String, agentFile: String, path: String,
                bytes: Int64, sha256: String) {
        self.id = id
        self.rolloutID = rolloutID
        self.takenAt = takenAt
        self.node = node
        self.format = format
        self.agentFile = agentFile
        self.path = path
        self.bytes = bytes
        self.sha256 = sha256
    }
}

extension StateStore {
    /// Records a sealed backup; an id already recorded is refused.
    public func recordBackup(_ backup: BackupRecord) throws(StoreError) {
        try write { db in
            try db.execute(sql: """
                INSERT INTO backups (id, rollout_id, taken_at, node, format, agent_file, path, bytes, sha256)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [backup.id, backup.rolloutID, backup.takenAt.milliseconds, backup.node, backup.format, backup.agentFile,
                                 backup.path, backup.bytes, backup.sha256])
        }
    }

    /// Backups newest first, at most `limit`.
    public func backups(limit: Int) throws(StoreError) -> [BackupRecord] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM backups ORDER BY taken_at DESC, id DESC LIMIT ?", arguments: [max(limit, 0)]).map(Self.backup)
        }
    }

    /// One backup by id, or nil.
    public func backup(id: String) throws(StoreError) -> BackupRecord? {
        try read { db in try Row.fetchOne(db, sql: "SELECT * FROM backups WHERE id = ?", arguments: [id]).map(Self.backup) }
    }

    /// Forgets backups (their files are the caller's to remove).
    public func deleteBackups(ids: [String]) throws(StoreError) {
        try write { db in
            for id in ids { try db.execute(sql: "DELETE FROM backups WHERE id = ?", arguments: [id]) }
        }
    }

    static func backup(_ row: Row) -> BackupRecord {
        BackupRecord(id: row["id"], rolloutID: row["rollout_id"], takenAt: Instant(milliseconds: row["taken_at"]), node: row["node"],
                     format: row["format"], agentFile: row["agent_file"], path: row["path"], bytes: row["bytes"], sha256: row["sha256"])
    }
}
