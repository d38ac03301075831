import GRDB
import UpkeepRollout
import UpkeepCore

/// One `upkeep update` through Git as the state database records it.
public struct ComponentUpdateRecord: Codable, Equatable, Sendable {
    public enum Outcome: String, Codable, Sendable {
        /// Committed (or about to be); the result is not known yet.
        case running
        case completed
        /// Failed, and the commit was reverted on the branch.
        case reverted
        /// Failed, and the revert could not be pushed or was not fetched.
        case failed
        /// Failed after the component had moved to the new version (Longhorn's manager): a
        /// revert would be a downgrade, so the commit stays and nothing was reverted.
        case failedForward
    }

    public var id: String
    public var component: String
    public var from: String
    public var to: String
    public var repository: String
    public var file: String
    public var startedAt: Instant
    public var finishedAt: Instant?
    public var commit: String?
    public var revertCommit: String?
    public var outcome: Outcome
    public var message: String
    /// The Longhorn snapshots taken before the commit (names in `longhorn-system`).
    public var snapshots: [String] = []
    /// Who started it; nil for updates recorded before Upkeep kept this. Read only: recorded
    /// with `recordOperation`.
    public var startedBy: OperationEntry?
    /// The datastore backup taken before the commit (`backups.beforeUpdate`), when one was.
    public var backupID: String?
    /// The compatibility table overridden for it (`--ignore-compatibility`): who and what. Read
    /// only: recorded with `recordOperation`.
    public var ignoredCompatibility: OperationEntry?
    /// The post-update validation that followed it, when it completed and one ran. Read only:
    /// recorded with `recordOperation`.
    public var validation: OperationEntry?

    public init(id: String, component: String, from: String, to: String, repository: String, file: String, startedAt: Instant,
                finishedAt: Instant? = nil, commit: String? = nil, revertCommit: String? = nil, outcome: Outcome = .running, message: String = "",
                backupID: String? = nil) {
        self.id = id
        self.component = component
        self.from = from
        self.to = to
        self.repository = repository
        self.file = file
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.commit = commit
        self.revertCommit = revertCommit
        self.outcome = outcome
        self.message = message
        self.backupID = backupID
    }
}

extension StateStore {
    /// Inserts or replaces the record with the same id (it is written before the push and again at the end).
    public func saveComponentUpdate(_ record: ComponentUpdateRecord) throws(StoreError) {
        try write { db in
            try db.execute(sql: """
                INSERT OR REPLACE INTO component_updates
                    (id, component, from_version, to_version, repository, file, started_at, finished_at, commit_sha, revert_sha, outcome, message,
                     snapshots, backup_id)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [record.id, record.component, record.from, record.to, record.repository, record.file, record.startedAt.milliseconds,
                                 record.finishedAt?.milliseconds, record.commit, record.revertCommit, record.outcome.rawValue, record.message,
                                 record.snapshots.joined(separator: "\n"), record.backupID])
        }
    }

    /// Component updates newest first, at most `limit`.
    public func componentUpdates(limit: Int) throws(StoreError) -> [ComponentUpdateRecord] {
        try componentUpdates(where: "1", limit: limit)
    }

    /// Updates still `running`, newest first. One exists while its process drives it (holding the
    /// lease) and after that process stopped (a crash, a kill) before recording the end: with the
    /// lease free, it is interrupted and `upkeep update` or `serve` carries it on.
    public func unfinishedComponentUpdates() throws(StoreError) -> [ComponentUpdateRecord] {
        try componentUpdates(where: "outcome = 'running'", limit: 10)
    }

    private func componentUpdates(where condition: String, limit: Int) throws(StoreError) -> [ComponentUpdateRecord] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM component_updates WHERE \(condition) ORDER BY started_at DESC, id DESC LIMIT ?",
                             arguments: [max(limit, 0)]).map { row in
                var record = ComponentUpdateRecord(id: row["id"], component: row["component"], from: row["from_version"], to: row["to_version"],
                                                   repository: row["repository"], file: row["file"], startedAt: Instant(milliseconds: row["started_at"]),
                                                   finishedAt: (row["finished_at"] as Int64?).map { Instant(milliseconds: $0) }, commit: row["commit_sha"],
                                                   revertCommit: row["revert_sha"],
                                                   outcome: ComponentUpdateRecord.Outcome(rawValue: row["outcome"]) ?? .failed, message: row["message"],
                                                   backupID: row["backup_id"])
                record.snapshots = (row["snapshots"] as String? ?? "").split(separator: "\n").map(String.init)
                record.startedBy = try Self.makerRow(db, subject: record.id).flatMap(Self.operation)
                let operations = try Self.operationRows(db, subject: record.id, limit: 100).compactMap(Self.operation)
                record.ignoredCompatibility = operations.last { $0.kind == .ignoreCompatibility }
                record.validation = operations.last { $0.kind == .validate }
                return record
            }
        }
    }
}
