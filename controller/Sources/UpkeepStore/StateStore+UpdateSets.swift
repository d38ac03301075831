import GRDB
import UpkeepCore

/// One `upkeep apply --all` as the state database records it: the parent of a k3s rollout and
/// Longhorn and Flux updates run as one set, one stage per component in the order run. Written
/// before the first stage and after every change of a stage, so a set interrupted (a kill) names
/// the stage it was in; each stage points at the rollout or update it ran as, whose own record
/// says the rest.
public struct UpdateSetRecord: Codable, Equatable, Sendable {
    public enum Outcome: String, Codable, Sendable {
        /// A stage is running, or the set was interrupted (its process is gone).
        case running
        /// Every stage done.
        case completed
        /// A stage failed (undone as its own rules allow); the stages after it were not run.
        case failed
    }

    public struct Stage: Codable, Equatable, Sendable {
        public enum State: String, Codable, Sendable {
            case pending
            case running
            case done
            case failed
            /// A stage before it failed: never started.
            case notRun
        }

        /// `k3s`, `longhorn` or `flux`.
        public var component: String
        public var from: String
        public var to: String
        /// Why it is in this place of the order.
        public var why: String
        public var state: State
        /// The k3s rollout (`r…`) or the Longhorn or Flux update (`u…`) the stage ran as.
        public var ref: String?
        public var startedAt: Instant?
        public var finishedAt: Instant?
        /// The stage's exit code (as `upkeep apply` or `upkeep update` would exit) once it ended.
        public var exitCode: Int32?
        public var message: String

        public init(component: String, from: String, to: String, why: String, state: State = .pending, ref: String? = nil,
                    startedAt: Instant? = nil, finishedAt: Instant? = nil, exitCode: Int32? = nil, message: String = "") {
            self.component = component
            self.from = from
            self.to = to
            self.why = why
            self.state = state
            self.ref = ref
            self.startedAt = startedAt
            self.finishedAt = finishedAt
            self.exitCode = exitCode
            self.message = message
        }
    }

    /// `s20261207-101500`.
    public var id: String
    public var createdAt: Instant
    public var finishedAt: Instant?
    public var outcome: Outcome
    public var stages: [Stage]
    /// Who started it.
    public var by: Initiator
    public var message: String

    public init(id: String, createdAt: Instant, finishedAt: Instant? = nil, outcome: Outcome = .running, stages: [Stage], by: Initiator,
                message: String = "") {
        self.id = id
        self.createdAt = createdAt
        self.finishedAt = finishedAt
        self.outcome = outcome
        self.stages = stages
        self.by = by
        self.message = message
    }

    /// The stage running (or interrupted), if any.
    public var runningStage: Stage? { stages.first { $0.state == .running } }

    /// `longhorn done, k3s failed, flux notRun`.
    public var stageSummary: String {
        stages.map { "\($0.component) \($0.state.rawValue)" }.joined(separator: ", ")
    }
}

extension StateStore {
    /// Inserts the set, or replaces the one with its id (after every change of a stage).
    public func saveUpdateSet(_ set: UpdateSetRecord) throws(StoreError) {
        let json = try Self.json(set)
        try write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO update_sets (id, created_at, finished_at, outcome, set_json) VALUES (?, ?, ?, ?, ?)",
                           arguments: [set.id, set.createdAt.milliseconds, set.finishedAt?.milliseconds, set.outcome.rawValue, json])
        }
    }

    /// The set with `id`, nil when none has it.
    public func updateSet(id: String) throws(StoreError) -> UpdateSetRecord? {
        try updateSets(where: "id = ?", [id], limit: 1).first
    }

    /// Sets newest first, at most `limit`.
    public func updateSets(limit: Int) throws(StoreError) -> [UpdateSetRecord] {
        try updateSets(where: "1", [], limit: limit)
    }

    /// The newest set still recorded as running: one a live process drives, or one whose
    /// process stopped before it ended (the next `upkeep apply --all` carries it on).
    public func unfinishedUpdateSet() throws(StoreError) -> UpdateSetRecord? {
        try updateSets(where: "outcome = 'running'", [], limit: 1).first
    }

    private func updateSets(where condition: String, _ arguments: [String], limit: Int) throws(StoreError) -> [UpdateSetRecord] {
        let rows = try read { db in
            try Row.fetchAll(db, sql: "SELECT id, set_json FROM update_sets WHERE \(condition) ORDER BY created_at DESC, id DESC LIMIT ?",
                             arguments: StatementArguments(arguments.map { $0 as (any DatabaseValueConvertible) } + [max(limit, 0)]))
                .map { ($0["id"] as String, $0["set_json"] as String) }
        }
        var sets: [UpdateSetRecord] = []
        for (id, json) in rows { sets.append(try Self.decode(UpdateSetRecord.self, json, what: "update set \(id)")) }
        return sets
    }
}
