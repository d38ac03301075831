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
    /// The hop of `rolloutID` it was taken before (kind `hop`).
    public var hop: Int?
    /// The k3s version of the server it was taken on; a restore puts servers back at this minor.
    /// Nil for backups recorded before versions were.
    public var k3sVersion: K3sVersion?
    public var kind: BackupKind

    public init(id: String, rolloutID: String?, takenAt: Instant, node: String, format: String, agentFile: String, path: String,
                bytes: Int64, sha256: String, hop: Int? = nil, k3sVersion: K3sVersion? = nil, kind: BackupKind = .manual) {
        self.id = id
        self.rolloutID = rolloutID
        self.takenAt = takenAt
        self.node = node
        self.format = format
        self.agentFile = agentFile
        self.path = path
        self.bytes = bytes
        self.sha256 = sha256
        self.hop = hop
        self.k3sVersion = k3sVersion
        self.kind = kind
    }
}

/// What a backup was taken for.
public enum BackupKind: String, Codable, Sendable {
    /// Before a hop's first server (a rollout's snapshot per hop).
    case hop
    /// `upkeep backup now`.
    case manual
    /// Taken of the datastore as it was just before a restore replaced it.
    case preRestore = "pre-restore"
}

extension StateStore {
    /// Records a sealed backup; an id already recorded is refused.
    public func recordBackup(_ backup: BackupRecord) throws(StoreError) {
        try write { db in
            try db.execute(sql: """
                INSERT INTO backups (id, rollout_id, taken_at, node, format, agent_file, path, bytes, sha256, hop, k3s_version, kind)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [backup.id, backup.rolloutID, backup.takenAt.milliseconds, backup.node, backup.format, backup.agentFile,
                                 backup.path, backup.bytes, backup.sha256, backup.hop, backup.k3sVersion?.description, backup.kind.rawValue])
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
                     format: row["format"], agentFile: row["agent_file"], path: row["path"], bytes: row["bytes"], sha256: row["sha256"],
                     hop: row["hop"], k3sVersion: (row["k3s_version"] as String?).flatMap { try? K3sVersion($0) },
                     kind: BackupKind(rawValue: row["kind"]) ?? .manual)
    }
}

/// One node as the controller last read it from the API: enough to reach its agent and to know
/// its role while the API is down (`upkeep recover`).
public struct AgentInventoryRecord: Codable, Equatable, Sendable {
    public var node: String
    public var role: NodeRole
    public var etcd: Bool
    public var arch: Arch
    public var k3sVersion: K3sVersion
    /// `host:port` of its agent, when the API named one.
    public var endpoint: String?
    public var seenAt: Instant

    public init(node: String, role: NodeRole, etcd: Bool, arch: Arch, k3sVersion: K3sVersion, endpoint: String?, seenAt: Instant) {
        self.node = node
        self.role = role
        self.etcd = etcd
        self.arch = arch
        self.k3sVersion = k3sVersion
        self.endpoint = endpoint
        self.seenAt = seenAt
    }
}

extension StateStore {
    /// Replaces the last known agent inventory with `nodes` (one reading of the whole cluster).
    public func recordAgentInventory(_ nodes: [AgentInventoryRecord]) throws(StoreError) {
        try write { db in
            try db.execute(sql: "DELETE FROM agent_inventory")
            for node in nodes {
                try db.execute(sql: """
                    INSERT INTO agent_inventory (node, role, etcd, arch, k3s_version, endpoint, seen_at) VALUES (?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [node.node, node.role.rawValue, node.etcd, node.arch.rawValue, node.k3sVersion.description,
                                     node.endpoint, node.seenAt.milliseconds])
            }
        }
    }

    /// The last known agent inventory, servers first, by name; rows that no longer parse are skipped.
    public func agentInventory() throws(StoreError) -> [AgentInventoryRecord] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM agent_inventory ORDER BY role DESC, node").compactMap { row in
                guard let role = NodeRole(rawValue: row["role"]), let arch = Arch(rawValue: row["arch"]),
                      let version = try? K3sVersion(row["k3s_version"] as String) else { return nil }
                return AgentInventoryRecord(node: row["node"], role: role, etcd: row["etcd"], arch: arch, k3sVersion: version,
                                            endpoint: row["endpoint"], seenAt: Instant(milliseconds: row["seen_at"]))
            }
        }
    }
}
