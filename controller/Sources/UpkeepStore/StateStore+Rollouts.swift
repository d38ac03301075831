import Foundation
import GRDB
import UpkeepRollout
import UpkeepCore

/// Rollouts: created once, then one recorded transition per engine `handle`, each in a single
/// transaction with the lease check, so the database always holds an engine state that was
/// complete when written: its latest snapshot and the events handled after it, which `engine`
/// replays.
extension StateStore {
    /// Records a new rollout (not started) under `holder`'s lease, and `stamp` (what made it and
    /// who) with it. Refused while another rollout has not finished: only one rollout runs at a time.
    public func createRollout(_ engine: RolloutEngine, holder: String, now: Instant, stamp: OperationStamp? = nil) throws(StoreError) {
        let plan = try Self.json(engine.plan)
        let policy = try Self.json(engine.policy)
        let state = try Self.json(engine)
        let status = try Self.json(engine.status)
        let steps = try engine.progress.map { step throws(StoreError) in (step, try Self.json(step)) }
        let initiator = try stamp.map { stamp throws(StoreError) in try Self.json(stamp.by) }
        try write { db in
            _ = try Self.fence(db, holder: holder, now: now)
            if try Bool.fetchOne(db, sql: "SELECT 1 FROM rollouts WHERE id = ?", arguments: [engine.rolloutID]) == true {
                throw StoreError.rolloutExists(engine.rolloutID)
            }
            if let row = try Row.fetchOne(db, sql: "SELECT id, status FROM rollouts WHERE status != 'finished' ORDER BY created_at DESC LIMIT 1") {
                throw StoreError.unfinishedRollout(id: row["id"], status: row["status"])
            }
            try db.execute(sql: """
                INSERT INTO rollouts (id, created_at, from_summary, target, plan_json, policy_json, status, status_json, engine_json)
                VALUES (?, ?, ?, ?, '', '', ?, ?, '')
                """, arguments: [engine.rolloutID, now.milliseconds, Self.fromSummary(engine.plan), engine.plan.target.description,
                                 Self.statusName(engine.status), status])
            // Not in the row every transition rewrites (schema v13-rollout-plans).
            try db.execute(sql: "INSERT INTO rollout_plans (rollout_id, plan_json, policy_json) VALUES (?, ?, ?)",
                           arguments: [engine.rolloutID, plan, policy])
            try Self.snapshot(db, rolloutID: engine.rolloutID, sequence: 0, json: state)
            for (ordinal, (step, json)) in steps.enumerated() {
                try Self.upsertStep(db, rolloutID: engine.rolloutID, ordinal: ordinal, step: step, json: json, now: now)
            }
            if let stamp, let initiator { try Self.insertOperation(db, stamp, subject: engine.rolloutID, now: now, initiator: initiator) }
        }
    }

    /// Persists one `handle`: the transition (the event, to be replayed), the changed steps, the
    /// notices and the notifications of its milestones, in one transaction that first checks (and
    /// extends) `holder`'s lease; and a snapshot of the whole engine when the bytes written since
    /// the last one pass its size (so what a rollout writes grows with its transitions, not with
    /// their number times its size), when it is not replayable, and when the rollout blocks or
    /// finishes. `stamp`: the operation this transition begins (a resume, a restore, an abandon),
    /// recorded with it. Returns the transition's sequence number. Call it before performing the actions.
    @discardableResult
    public func record(_ transition: Transition, holder: String, now: Instant, stamp: OperationStamp? = nil) throws(StoreError) -> Int {
        let engine = transition.engine
        let status = try Self.json(engine.status)
        let statusName = Self.statusName(engine.status)
        let steps = try transition.changedSteps.map { step throws(StoreError) in (step, try Self.json(step)) }
        let eventJSON = try transition.replayable.map { event throws(StoreError) in try Self.json(event) }
        let finished = if case .finished = engine.status { true } else { false }
        let events = notifications.routes.isEmpty ? [] : transition.milestones.map { NotificationEvent.rollout($0, engine: engine, cluster: notifications.cluster, at: now) }
        let initiator = try stamp.map { stamp throws(StoreError) in try Self.json(stamp.by) }
        var journalBytes = transition.event.utf8.count + transition.actions.utf8.count + (eventJSON?.utf8.count ?? 0)
        for (_, json) in steps { journalBytes += json.utf8.count }
        for notice in transition.notices { journalBytes += notice.message.utf8.count }
        return try write { db in
            _ = try Self.fence(db, holder: holder, now: now)
            guard let row = try Row.fetchOne(db, sql: "SELECT transitions, status, snapshot_bytes, journal_bytes FROM rollouts WHERE id = ?",
                                             arguments: [engine.rolloutID]) else {
                throw StoreError.unknownRollout(engine.rolloutID)
            }
            let sequence = (row["transitions"] as Int) + 1
            try db.execute(sql: "INSERT INTO transitions (rollout_id, sequence, at, event, actions, event_json) VALUES (?, ?, ?, ?, ?, ?)",
                           arguments: [engine.rolloutID, sequence, now.milliseconds, transition.event, transition.actions, eventJSON])
            let journal = (row["journal_bytes"] as Int) + journalBytes
            let ends = (statusName == "blocked" || finished) && (row["status"] as String) != statusName
            let snapshot = eventJSON == nil || ends || journal > max(row["snapshot_bytes"] as Int, journalBytesPerSnapshotMin)
            let snapshotBytes: Int
            if snapshot {
                let state = try Self.json(engine)
                try Self.snapshot(db, rolloutID: engine.rolloutID, sequence: sequence, json: state)
                snapshotBytes = state.utf8.count
            } else {
                snapshotBytes = row["snapshot_bytes"]
            }
            let started: Int64? = engine.status == .notStarted ? nil : now.milliseconds
            try db.execute(sql: """
                UPDATE rollouts SET transitions = ?, status = ?, status_json = ?, outcome = ?, snapshot_bytes = ?, journal_bytes = ?,
                    started_at = COALESCE(started_at, ?),
                    finished_at = CASE WHEN ? THEN COALESCE(finished_at, ?) ELSE NULL END
                WHERE id = ?
                """, arguments: [sequence, statusName, status, Self.outcomeName(engine.status), snapshotBytes, snapshot ? 0 : journal,
                                 started, finished, now.milliseconds, engine.rolloutID])
            for (ordinal, (step, json)) in zip(transition.changedOrdinals, steps) {
                try Self.upsertStep(db, rolloutID: engine.rolloutID, ordinal: ordinal, step: step, json: json, now: now)
            }
            for notice in transition.notices {
                try db.execute(sql: "INSERT INTO notices (rollout_id, sequence, at, level, node, message) VALUES (?, ?, ?, ?, ?, ?)",
                               arguments: [engine.rolloutID, sequence, now.milliseconds, notice.level.rawValue, notice.node, notice.message])
            }
            // Told exactly when the transition is recorded: a crash loses neither, nor repeats it.
            for event in events {
                _ = try Self.enqueue(db, event, sinks: notifications.sinks(for: event.event), rowsMax: notifications.rowsMax, now: now)
            }
            if let stamp, let initiator { try Self.insertOperation(db, stamp, subject: engine.rolloutID, now: now, initiator: initiator) }
            return sequence
        }
    }

    /// The engine after the last recorded transition: its snapshot with the events recorded
    /// after it replayed through `handle` at their moments. Each replayed transition must return
    /// what was recorded, and the result must show the recorded status and steps; otherwise it
    /// throws `replayDiverged` rather than hand out an engine that is not the one that acted.
    public func engine(rolloutID: String) throws(StoreError) -> RolloutEngine {
        let (snapshot, journal, recorded) = try read { db in
            guard let snapshot = try Row.fetchOne(db, sql: "SELECT sequence, engine_json FROM engine_snapshots WHERE rollout_id = ?",
                                                  arguments: [rolloutID]),
                  let status = try String.fetchOne(db, sql: "SELECT status_json FROM rollouts WHERE id = ?", arguments: [rolloutID]) else {
                throw StoreError.unknownRollout(rolloutID)
            }
            let journal = try Row.fetchAll(db, sql: """
                SELECT sequence, at, actions, event_json FROM transitions WHERE rollout_id = ? AND sequence > ? ORDER BY sequence
                """, arguments: [rolloutID, snapshot["sequence"] as Int])
            let steps = journal.isEmpty ? [] : try Row.fetchAll(db, sql: "SELECT move_key, progress_json FROM steps WHERE rollout_id = ?",
                                                                  arguments: [rolloutID])
            return (snapshot, journal, (status: status, steps: Dictionary(steps.map { ($0["move_key"] as String, $0["progress_json"] as String) },
                                                                          uniquingKeysWith: { first, _ in first })))
        }
        var engine = try Self.decode(RolloutEngine.self, snapshot["engine_json"], what: "state of rollout \(rolloutID)")
        guard !journal.isEmpty else { return engine }
        for row in journal {
            let sequence: Int = row["sequence"]
            guard let json = row["event_json"] as String? else {
                throw StoreError.unreadable(what: "transition \(sequence) of rollout \(rolloutID)", reason: "it has no recorded event to replay")
            }
            let what = "event of transition \(sequence) of rollout \(rolloutID)"
            guard let event = try Self.decode(RecordedEvent.self, json, what: what).event(before: engine.latestObservation) else {
                throw StoreError.unreadable(what: what, reason: "the change it records does not fit the cluster seen before it")
            }
            let actions = TransitionLog.describe(engine.handle(event, now: Instant(milliseconds: row["at"])))
            guard actions == row["actions"] else {
                throw StoreError.replayDiverged(rolloutID: rolloutID, sequence: sequence, recorded: row["actions"], replayed: actions)
            }
        }
        let last: Int = journal[journal.count - 1]["sequence"]
        let status = try Self.json(engine.status)
        guard status == recorded.status else {
            throw StoreError.replayDiverged(rolloutID: rolloutID, sequence: last, recorded: "status \(recorded.status)", replayed: "status \(status)")
        }
        let progress = engine.progress
        for step in progress {
            let json = try Self.json(step)
            guard recorded.steps[step.key] == json else {
                throw StoreError.replayDiverged(rolloutID: rolloutID, sequence: last, recorded: recorded.steps[step.key] ?? "no step \(step.key)",
                                                replayed: json)
            }
        }
        guard progress.count == recorded.steps.count else {
            throw StoreError.replayDiverged(rolloutID: rolloutID, sequence: last, recorded: "\(recorded.steps.count) steps",
                                            replayed: "\(progress.count) steps")
        }
        return engine
    }

    /// The engine of `rolloutID` as last snapshotted, not replayed: after transition `sequence`
    /// of the `transitions` recorded. Only for giving up a rollout whose replay diverges
    /// (`upkeep abandon` when `engine(rolloutID:)` throws `replayDiverged`): it can be behind
    /// what the rollout did, and whoever uses it must say so. Refuses a finished rollout.
    public func snapshotEngine(rolloutID: String) throws(StoreError) -> (engine: RolloutEngine, sequence: Int, transitions: Int) {
        let row = try read { db in
            try Row.fetchOne(db, sql: """
                SELECT s.sequence, s.engine_json, r.transitions FROM engine_snapshots s JOIN rollouts r ON r.id = s.rollout_id WHERE s.rollout_id = ?
                """, arguments: [rolloutID])
        }
        guard let row else { throw StoreError.unknownRollout(rolloutID) }
        let engine = try Self.decode(RolloutEngine.self, row["engine_json"], what: "state of rollout \(rolloutID)")
        if case .finished(let outcome) = engine.status { throw StoreError.rolloutFinished(id: rolloutID, outcome: Self.outcomeText(outcome)) }
        return (engine, row["sequence"], row["transitions"])
    }

    /// Keeps `json` as the engine of `rolloutID` after transition `sequence`, replacing the one before.
    private static func snapshot(_ db: Database, rolloutID: String, sequence: Int, json: String) throws {
        try db.execute(sql: """
            INSERT INTO engine_snapshots (rollout_id, sequence, engine_json) VALUES (?, ?, ?)
            ON CONFLICT(rollout_id) DO UPDATE SET sequence = excluded.sequence, engine_json = excluded.engine_json
            """, arguments: [rolloutID, sequence, json])
        try db.execute(sql: "UPDATE rollouts SET snapshot_bytes = ? WHERE id = ?", arguments: [json.utf8.count, rolloutID])
    }

    /// The engine to resume: of `rolloutID`, or of the newest unfinished rollout when nil.
    /// Refuses a finished rollout (`rolloutFinished`) and an empty history (`nothingToResume`).
    public func resumableEngine(rolloutID: String? = nil) throws(StoreError) -> RolloutEngine {
        let id: String
        if let rolloutID {
            id = rolloutID
        } else {
            guard let unfinished = try unfinishedRollout() else { throw StoreError.nothingToResume }
            id = unfinished.id
        }
        let engine = try engine(rolloutID: id)
        if case .finished(let outcome) = engine.status { throw StoreError.rolloutFinished(id: id, outcome: Self.outcomeText(outcome)) }
        return engine
    }

    /// The newest rollout that has not finished, if any.
    public func unfinishedRollout() throws(StoreError) -> RolloutRecord? {
        try records(where: "status != 'finished'", arguments: [], limit: 1).first
    }

    /// Rollouts newest first, at most `limit`, optionally only those created at or after `since`.
    public func history(limit: Int, since: Instant? = nil) throws(StoreError) -> [RolloutRecord] {
        if let since { return try records(where: "created_at >= ?", arguments: [since.milliseconds], limit: limit) }
        return try records(where: "1", arguments: [], limit: limit)
    }

    /// Everything stored about one rollout: record with steps, plan, policy and notices.
    public func rollout(id: String) throws(StoreError) -> RolloutDetail {
        guard let record = try records(where: "id = ?", arguments: [id], limit: 1).first else { throw StoreError.unknownRollout(id) }
        let (row, noticeRows, operationRows) = try read { db in
            (try Row.fetchOne(db, sql: """
                SELECT p.plan_json, p.policy_json, r.transitions FROM rollouts r JOIN rollout_plans p ON p.rollout_id = r.id WHERE r.id = ?
                """, arguments: [id]),
             try Row.fetchAll(db, sql: "SELECT sequence, at, level, node, message FROM notices WHERE rollout_id = ? ORDER BY id", arguments: [id]),
             try Self.operationRows(db, subject: id, limit: 1000))
        }
        guard let row else { throw StoreError.unknownRollout(id) }
        let plan = try Self.decode(Plan.self, row["plan_json"], what: "plan of rollout \(id)")
        let policy = try Self.decode(RolloutPolicy.self, row["policy_json"], what: "policy of rollout \(id)")
        let notices = noticeRows.map(Self.notice)
        return RolloutDetail(record: record, plan: plan, policy: policy, notices: notices, transitionCount: row["transitions"],
                             operations: operationRows.compactMap(Self.operation))
    }

    private static func notice(_ row: Row) -> NoticeRecord {
        let level = Notice.Level(rawValue: row["level"]) ?? .info
        let notice = Notice(level, node: row["node"], row["message"])
        return NoticeRecord(sequence: row["sequence"], at: Instant(milliseconds: row["at"]), notice: notice)
    }

    /// The recorded transitions of a rollout in order, the last `limit` of them.
    public func transitions(rolloutID: String, limit: Int = 1000) throws(StoreError) -> [TransitionRecord] {
        try read { db in
            try Row.fetchAll(db, sql: """
                SELECT sequence, at, event, actions FROM transitions WHERE rollout_id = ? ORDER BY sequence DESC LIMIT ?
                """, arguments: [rolloutID, limit]).reversed().map { row in
                TransitionRecord(sequence: row["sequence"], at: Instant(milliseconds: row["at"]), event: row["event"], actions: row["actions"])
            }
        }
    }

    // MARK: - Rows

    private func records(where condition: String, arguments: StatementArguments, limit: Int) throws(StoreError) -> [RolloutRecord] {
        let rows = try read { db in
            let rollouts = try Row.fetchAll(db, sql: """
                SELECT id, created_at, started_at, finished_at, from_summary, target, status_json FROM rollouts
                WHERE \(condition) ORDER BY created_at DESC, rowid DESC LIMIT ?
                """, arguments: arguments + [max(limit, 0)])
            return try rollouts.map { row in
                let id: String = row["id"]
                let steps = try Row.fetchAll(db, sql: "SELECT started_at, finished_at, progress_json FROM steps WHERE rollout_id = ? ORDER BY ordinal",
                                             arguments: [id])
                return (row, steps, try Self.makerRow(db, subject: id))
            }
        }
        return try rows.map { row, steps, made throws(StoreError) in try Self.record(row, steps, startedBy: made.flatMap(Self.operation)) }
    }

    private static func record(_ row: Row, _ stepRows: [Row], startedBy: OperationEntry?) throws(StoreError) -> RolloutRecord {
        let id: String = row["id"]
        let target: K3sVersion
        do { target = try K3sVersion(row["target"] as String) } catch { throw StoreError.unreadable(what: "target of rollout \(id)", reason: "\(error)") }
        let status = try decode(RolloutEngine.Status.self, row["status_json"], what: "status of rollout \(id)")
        var steps: [StepRecord] = []
        for step in stepRows {
            let progress = try decode(MoveProgress.self, step["progress_json"], what: "step of rollout \(id)")
            steps.append(StepRecord(progress: progress, startedAt: instant(step, "started_at"), finishedAt: instant(step, "finished_at")))
        }
        return RolloutRecord(id: id, createdAt: Instant(milliseconds: row["created_at"]), startedAt: instant(row, "started_at"),
                             finishedAt: instant(row, "finished_at"), from: row["from_summary"], target: target, status: status, steps: steps,
                             startedBy: startedBy)
    }

    private static func instant(_ row: Row, _ column: String) -> Instant? {
        (row[column] as Int64?).map(Instant.init(milliseconds:))
    }

    private static func upsertStep(_ db: Database, rolloutID: String, ordinal: Int, step: MoveProgress, json: String, now: Instant) throws {
        let started: Int64? = step.stage == .waiting ? nil : now.milliseconds
        let finished: Int64? = step.stage == .waiting || step.stage == .working ? nil : now.milliseconds
        try db.execute(sql: """
            INSERT INTO steps (rollout_id, ordinal, move_key, node, rollback, from_version, to_version, stage, phase,
                               started_at, finished_at, progress_json)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(rollout_id, move_key) DO UPDATE SET
                stage = excluded.stage, phase = excluded.phase, progress_json = excluded.progress_json,
                started_at = COALESCE(steps.started_at, excluded.started_at),
                finished_at = CASE WHEN excluded.finished_at IS NULL THEN NULL ELSE COALESCE(steps.finished_at, excluded.finished_at) END
            """, arguments: [rolloutID, ordinal, step.key, step.node, step.isRollback, step.from.description, step.to.description,
                             step.stage.rawValue, step.phase, started, finished, json])
    }

    // MARK: - Encoding

    static func json(_ value: some Encodable) throws(StoreError) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        do {
            return String(decoding: try encoder.encode(value), as: UTF8.self)
        } catch {
            preconditionFailure("encoding \(type(of: value)) failed: \(error)")
        }
    }

    static func decode<T: Decodable>(_ type: T.Type, _ json: String, what: String) throws(StoreError) -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(json.utf8))
        } catch {
            throw StoreError.unreadable(what: what, reason: "\(error)")
        }
    }

    /// `v1.30.6+k3s1 (3 nodes), v1.29.9+k3s1 (1 node)`: the versions the plan moves nodes from.
    static func fromSummary(_ plan: Plan) -> String {
        var counts: [K3sVersion: Int] = [:]
        var seen = Set<String>()
        for step in plan.waves.flatMap(\.steps) where seen.insert(step.node).inserted { counts[step.from, default: 0] += 1 }
        guard !counts.isEmpty else { return "nothing to move" }
        return counts.sorted { $0.key > $1.key }.map { "\($0.key) (\($0.value) node\($0.value == 1 ? "" : "s"))" }.joined(separator: ", ")
    }

    static func statusName(_ status: RolloutEngine.Status) -> String {
        switch status {
        case .notStarted: "notStarted"
        case .running: "running"
        case .stopping: "stopping"
        case .blocked: "blocked"
        case .finished: "finished"
        }
    }

    static func outcomeName(_ status: RolloutEngine.Status) -> String? {
        guard case .finished(let outcome) = status else { return nil }
        switch outcome {
        case .completed: return "completed"
        case .rolledBack: return "rolledBack"
        case .failed: return "failed"
        case .abandoned: return "abandoned"
        }
    }

    static func outcomeText(_ outcome: RolloutOutcome) -> String {
        switch outcome {
        case .completed: "completed"
        case .rolledBack(let cause): "rolled back: \(cause)"
        case .failed(let cause): "failed: \(cause)"
        case .abandoned(let reason): "abandoned: \(reason)"
        }
    }
}
