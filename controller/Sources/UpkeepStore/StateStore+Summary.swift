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

/// Longhorn and Flux updates through Git (`component_updates`) counted by SQLite, as a metrics
/// scrape needs them: outcomes, how long the completed ones took, the ones still running.
public struct ComponentUpdateSummary: Equatable, Sendable {
    public struct Running: Equatable, Sendable {
        public var component: String
        public var to: String
        public var startedAt: Instant

        public init(component: String, to: String, startedAt: Instant) {
            self.component = component
            self.to = to
            self.startedAt = startedAt
        }
    }

    /// Finished updates by component, then outcome (`completed`, `reverted`, `failed`).
    public var finished: [String: [String: Int]] = [:]
    /// Start (the record written before the push) to finish of every completed update, by component.
    public var completedMilliseconds: [String: [Int64]] = [:]
    /// Updates recorded `running`: driven now, or interrupted (docs/gitops.md).
    public var running: [Running] = []

    public init() {}
}

extension StateStore {
    public func componentUpdateSummary() throws(StoreError) -> ComponentUpdateSummary {
        try read { db in
            var summary = ComponentUpdateSummary()
            for row in try Row.fetchAll(db, sql: """
                SELECT component, outcome, count(*) AS n FROM component_updates WHERE outcome != 'running' GROUP BY component, outcome
                """) {
                summary.finished[row["component"], default: [:]][row["outcome"]] = row["n"]
            }
            for row in try Row.fetchAll(db, sql: """
                SELECT component, finished_at - started_at AS ms FROM component_updates WHERE outcome = 'completed' AND finished_at IS NOT NULL
                """) {
                summary.completedMilliseconds[row["component"], default: []].append(row["ms"])
            }
            summary.running = try Row.fetchAll(db, sql: """
                SELECT component, to_version, started_at FROM component_updates WHERE outcome = 'running' ORDER BY started_at, id
                """).map { ComponentUpdateSummary.Running(component: $0["component"], to: $0["to_version"], startedAt: Instant(milliseconds: $0["started_at"])) }
            return summary
        }
    }
}
