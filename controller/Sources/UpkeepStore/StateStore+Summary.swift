import GRDB
import UpkeepRollout
import UpkeepCore

/// Counts over the whole history, computed by SQLite (aggregates over indexed columns) rather
/// than by decoding every rollout: what a metrics scrape needs, at a cost that does not grow with
/// the JSON the history holds.
public struct HistorySummary: Equatable, Sendable {
    public struct LastFinished: Equatable, Sendable {
        public var id: String
        /// `completed`, `rolledBack`, `failed` or `abandoned`.
        public var outcome: String
        /// When it started (its creation when it never started) and finished.
        public var began: Instant
        public var finished: Instant
    }

    /// Finished rollouts by outcome (`completed`, `rolledBack`, `failed`, `abandoned`).
    public var finishedByOutcome: [String: Int] = [:]
    /// The status of every rollout that has not finished (`notStarted`, `running`, `stopping`, `blocked`).
    public var unfinishedStatuses: [String] = []
    public var lastFinished: LastFinished?
    /// Forward (not rollback) steps by stage (`done`, `reverted`, …).
    public var forwardStepsByStage: [String: Int] = [:]
    /// Start to finish of every forward step that ended `done`.
    public var doneStepMilliseconds: [Int64] = []
    public var backupCount = 0
    public var newestBackup: BackupRecord?
}

extension StateStore {
    public func summary() throws(StoreError) -> HistorySummary {
        try read { db in
            var summary = HistorySummary()
            for row in try Row.fetchAll(db, sql: "SELECT outcome, count(*) AS n FROM rollouts WHERE outcome IS NOT NULL GROUP BY outcome") {
                summary.finishedByOutcome[row["outcome"]] = row["n"]
            }
            summary.unfinishedStatuses = try String.fetchAll(db, sql: "SELECT status FROM rollouts WHERE status != 'finished'")
            if let row = try Row.fetchOne(db, sql: """
                SELECT id, outcome, COALESCE(started_at, created_at) AS began, finished_at FROM rollouts
                WHERE status = 'finished' AND finished_at IS NOT NULL ORDER BY created_at DESC, rowid DESC LIMIT 1
                """) {
                summary.lastFinished = .init(id: row["id"], outcome: row["outcome"], began: Instant(milliseconds: row["began"]),
                                             finished: Instant(milliseconds: row["finished_at"]))
            }
            for row in try Row.fetchAll(db, sql: "SELECT stage, count(*) AS n FROM steps WHERE rollback = 0 GROUP BY stage") {
                summary.forwardStepsByStage[row["stage"]] = row["n"]
            }
            summary.doneStepMilliseconds = try Int64.fetchAll(db, sql: """
                SELECT finished_at - started_at FROM steps
                WHERE rollback = 0 AND stage = 'done' AND started_at IS NOT NULL AND finished_at IS NOT NULL
                """)
            summary.backupCount = try Int.fetchOne(db, sql: "SELECT count(*) FROM backups") ?? 0
            summary.newestBackup = try Row.fetchOne(db, sql: "SELECT * FROM backups ORDER BY taken_at DESC, id DESC LIMIT 1").map(Self.backup)
            return summary
        }
    }
}
