import UpkeepCore
import UpkeepRollout
import UpkeepStore

/// What happened in one calendar month, for the monthly report a manager reads: every rollout
/// and GitOps update begun in it with outcome and duration, the nodes touched, the time in
/// maintenance mode, the rollbacks and their causes, the backups taken, and the figures behind
/// the two charts (rollout durations, success per week). Made from state-database records only
/// and pure: records in, figures out; the renderers (Markdown, HTML, PDF, JSON) only lay them out,
/// so every format carries the same figures.
struct MonthlyReport: Encodable, Equatable {
    /// `completed`, `rolled back`, `failed`, `abandoned`, `unfinished`.
    struct Rollout: Encodable, Equatable {
        var id: String
        /// `apply`, `rollback`, `recover`, or nil for a rollout recorded before Upkeep kept it.
        var kind: String?
        var by: String?
        var createdAt: Instant
        var startedAt: Instant?
        var finishedAt: Instant?
        var from: String
        var target: String
        var outcome: String
        /// The outcome with its cause, as `upkeep history` shows it.
        var detail: String
        /// From start (or creation) to finish; nil while unfinished.
        var durationSeconds: Int?
        /// Nodes with a step that started, in plan order.
        var nodes: [String]
    }

    /// One `upkeep update` (Longhorn or Flux through Git).
    struct Update: Encodable, Equatable {
        var id: String
        var component: String
        var from: String
        var to: String
        var by: String?
        var startedAt: Instant
        var finishedAt: Instant?
        /// `completed`, `reverted`, `failed`, `running`.
        var outcome: String
        var durationSeconds: Int?
        var message: String
    }

    struct Node: Encodable, Equatable {
        var node: String
        /// Rollouts of the month with a step on it that started.
        var rollouts: Int
        /// Forward steps on it that ended reverted or unhealthy.
        var failedSteps: Int
    }

    /// A period of maintenance mode that overlaps the month.
    struct Maintenance: Encodable, Equatable {
        var id: String
        var since: Instant
        var endedAt: Instant?
        var reason: String
        var by: String
        var rollout: String?
        /// Of the period, the part inside the month (to the report's moment while it lasts).
        var secondsInMonth: Int
    }

    /// A way back: a rollout rolled back on its own, one an operator asked for, a hop restored
    /// from its snapshot, or a GitOps update whose commit was reverted.
    struct Rollback: Encodable, Equatable {
        var subject: String
        var at: Instant
        /// `automatic`, `operator`, `restore`, `git revert`.
        var kind: String
        var cause: String
    }

    struct Backup: Encodable, Equatable {
        var id: String
        var takenAt: Instant
        var node: String
        /// `hop`, `manual`, `pre-restore`.
        var kind: String
        var format: String
        var bytes: Int64
        var rollout: String?
    }

    /// Days 1–7, 8–14, 15–21, 22–28 and 29 to the month's end: rollouts and updates begun in
    /// them by how they ended.
    struct Week: Encodable, Equatable {
        /// `1–7`.
        var days: String
        var start: Instant
        var end: Instant
        var succeeded: Int
        /// Rolled back, failed, abandoned, reverted.
        var failed: Int
        var unfinished: Int
    }

    struct Totals: Encodable, Equatable {
        var rollouts: Int
        var rolloutOutcomes: [String: Int]
        var updates: Int
        var updateOutcomes: [String: Int]
        /// Of the rollouts and updates that finished, the share that succeeded (nil: none finished).
        var successPercent: Int?
        var rolloutDurationMedianSeconds: Int?
        var rolloutDurationMaxSeconds: Int?
        var nodesTouched: Int
        var maintenanceSeconds: Int
        var rollbacks: Int
        var backups: Int
        var backupBytes: Int64
    }

    /// `2026-11`.
    var month: String
    /// `November 2026`.
    var title: String
    /// The IANA zone whose clocks the month's boundaries and weeks follow (`UTC` by default).
    var timeZone: String
    var start: Instant
    var end: Instant
    /// When the report was made (unfinished rollouts and open maintenance are measured to it).
    var generatedAt: Instant
    var totals: Totals
    var rollouts: [Rollout]
    var updates: [Update]
    var nodes: [Node]
    var maintenance: [Maintenance]
    var rollbacks: [Rollback]
    var backups: [Backup]
    var weeks: [Week]
    /// The history read hit its bound (`rowsMax`): older records of the month may be missing.
    var truncated: Bool

    /// How many records of each kind the command reads at most.
    static let rowsMax = 10_000

    var isEmpty: Bool { rollouts.isEmpty && updates.isEmpty && maintenance.isEmpty && backups.isEmpty }

    /// The report of `month` on `zone`'s clocks from the records given (any superset of the
    /// month's; those outside it are left out). A rollout or update belongs to the month it was
    /// created or started in, however late it finished; a backup to the month it was taken in; a
    /// maintenance period counts for the part of it inside the month. `operations`: every
    /// operation recorded for each rollout (for restores and who started it).
    static func make(month: ReportMonth, zone: TimeZoneRule, now: Instant, rollouts: [RolloutRecord], operations: [String: [OperationEntry]],
                     updates: [ComponentUpdateRecord], maintenance: [MaintenancePeriod], backups: [BackupRecord], truncated: Bool) -> MonthlyReport {
        let (start, end) = month.span(zone: zone)
        let inMonth = { (at: Instant) in at >= start && at < end }
        let seconds = { (from: Instant, to: Instant?) in to.map { Int(max($0.milliseconds - from.milliseconds, 0) / 1000) } }

        let chosen = rollouts.filter { inMonth($0.createdAt) }.sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }
        var rolloutRows: [Rollout] = []
        var rollbacks: [Rollback] = []
        var touched: [String: (rollouts: Int, failed: Int, order: Int)] = [:]
        for record in chosen {
            var nodes: [String] = []
            for step in record.steps where step.startedAt != nil && !nodes.contains(step.node) { nodes.append(step.node) }
            for node in nodes {
                let order = touched.count
                touched[node, default: (0, 0, order)].rollouts += 1
            }
            for step in record.steps where !step.progress.isRollback && [.reverted, .unhealthy].contains(step.progress.stage) {
                let order = touched.count
                touched[step.node, default: (0, 0, order)].failed += 1
            }
            let made = record.startedBy
            rolloutRows.append(Rollout(id: record.id, kind: made?.kind.rawValue, by: made.map { "\($0.by)" }, createdAt: record.createdAt,
                                       startedAt: record.startedAt, finishedAt: record.finishedAt, from: record.from, target: record.target.description,
                                       outcome: RolloutReport.outcomeWord(record.status), detail: record.outcomeText,
                                       durationSeconds: seconds(record.startedAt ?? record.createdAt, record.finishedAt), nodes: nodes))
            if made?.kind == .rollback {
                rollbacks.append(Rollback(subject: record.id, at: record.createdAt, kind: "operator",
                                          cause: "`upkeep rollback` to \(record.target) by \(made.map { "\($0.by)" } ?? "an operator")"))
            }
            if case .finished(.rolledBack(let cause)) = record.status {
                rollbacks.append(Rollback(subject: record.id, at: record.finishedAt ?? record.createdAt, kind: "automatic", cause: cause))
            }
            for operation in operations[record.id] ?? [] where operation.kind == .restore && inMonth(operation.at) {
                rollbacks.append(Rollback(subject: record.id, at: operation.at, kind: "restore",
                                          cause: "`upkeep rollback --restore` (the hop's datastore snapshot) by \(operation.by)"))
            }
        }

        let updateRows = updates.filter { inMonth($0.startedAt) }.sorted { ($0.startedAt, $0.id) < ($1.startedAt, $1.id) }.map { update in
            Update(id: update.id, component: update.component, from: update.from, to: update.to, by: update.startedBy.map { "\($0.by)" },
                   startedAt: update.startedAt, finishedAt: update.finishedAt, outcome: update.outcome.rawValue,
                   durationSeconds: seconds(update.startedAt, update.finishedAt), message: update.message)
        }
        for update in updateRows where update.outcome == ComponentUpdateRecord.Outcome.reverted.rawValue {
            rollbacks.append(Rollback(subject: update.id, at: update.finishedAt ?? update.startedAt, kind: "git revert",
                                      cause: update.message.isEmpty ? "the update failed; its commit was reverted" : update.message))
        }
        rollbacks.sort { ($0.at, $0.subject) < ($1.at, $1.subject) }

        let periods = maintenance.compactMap { period -> Maintenance? in
            let until = period.endedAt ?? (period.state == .ended ? period.since : now)
            let from = max(period.since, start), to = min(until, end)
            guard period.since < end, until >= start, from <= to else { return nil }
            return Maintenance(id: period.id, since: period.since, endedAt: period.endedAt, reason: period.reason, by: period.by, rollout: period.rollout,
                               secondsInMonth: Int((to.milliseconds - from.milliseconds) / 1000))
        }.sorted { ($0.since, $0.id) < ($1.since, $1.id) }

        let backupRows = backups.filter { inMonth($0.takenAt) }.sorted { ($0.takenAt, $0.id) < ($1.takenAt, $1.id) }.map { backup in
            Backup(id: backup.id, takenAt: backup.takenAt, node: backup.node, kind: backup.kind.rawValue, format: backup.format,
                   bytes: backup.bytes, rollout: backup.rolloutID)
        }

        var weeks: [Week] = []
        var first = 1
        while first <= month.days {
            let last = first == 29 ? month.days : first + 6
            weeks.append(Week(days: "\(first)–\(last)", start: month.start(day: first, zone: zone), end: month.start(day: last + 1, zone: zone),
                              succeeded: 0, failed: 0, unfinished: 0))
            first = last + 1
        }
        func count(_ at: Instant, _ verdict: Verdict) {
            guard let index = weeks.firstIndex(where: { at >= $0.start && at < $0.end }) else { return }
            switch verdict {
            case .succeeded: weeks[index].succeeded += 1
            case .failed: weeks[index].failed += 1
            case .unfinished: weeks[index].unfinished += 1
            }
        }
        for rollout in rolloutRows { count(rollout.createdAt, Verdict(rolloutOutcome: rollout.outcome)) }
        for update in updateRows { count(update.startedAt, Verdict(updateOutcome: update.outcome)) }

        var rolloutOutcomes: [String: Int] = [:]
        for rollout in rolloutRows { rolloutOutcomes[rollout.outcome, default: 0] += 1 }
        var updateOutcomes: [String: Int] = [:]
        for update in updateRows { updateOutcomes[update.outcome, default: 0] += 1 }
        let succeeded = weeks.reduce(0) { $0 + $1.succeeded }, failed = weeks.reduce(0) { $0 + $1.failed }
        let durations = rolloutRows.compactMap(\.durationSeconds).sorted()
        let totals = Totals(rollouts: rolloutRows.count, rolloutOutcomes: rolloutOutcomes, updates: updateRows.count, updateOutcomes: updateOutcomes,
                            successPercent: succeeded + failed == 0 ? nil : succeeded * 100 / (succeeded + failed),
                            rolloutDurationMedianSeconds: durations.isEmpty ? nil : durations[durations.count / 2],
                            rolloutDurationMaxSeconds: durations.last, nodesTouched: touched.count,
                            maintenanceSeconds: periods.reduce(0) { $0 + $1.secondsInMonth }, rollbacks: rollbacks.count,
                            backups: backupRows.count, backupBytes: backupRows.reduce(0) { $0 + $1.bytes })
        let nodes = touched.sorted { $0.value.order < $1.value.order }.map { Node(node: $0.key, rollouts: $0.value.rollouts, failedSteps: $0.value.failed) }
        return MonthlyReport(month: month.description, title: month.name, timeZone: zone.name, start: start, end: end, generatedAt: now,
                             totals: totals, rollouts: rolloutRows, updates: updateRows, nodes: nodes, maintenance: periods, rollbacks: rollbacks,
                             backups: backupRows, weeks: weeks, truncated: truncated)
    }

    /// How a rollout or update counts in the weekly chart.
    enum Verdict {
        case succeeded, failed, unfinished

        init(rolloutOutcome: String) {
            self = rolloutOutcome == "completed" ? .succeeded : rolloutOutcome == "unfinished" ? .unfinished : .failed
        }

        init(updateOutcome: String) {
            self = updateOutcome == "completed" ? .succeeded : updateOutcome == "running" ? .unfinished : .failed
        }
    }

    // MARK: - Shared wording

    /// The facts at the top of every format, as label and text.
    var facts: [(String, String)] {
        var facts: [(String, String)] = [("Period", "\(start.utcDescription) – \(end.utcDescription) (\(timeZone) month boundaries)")]
        let outcomes = { (counts: [String: Int]) in counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ") }
        facts.append(("Rollouts", totals.rollouts == 0 ? "none" : "\(totals.rollouts) (\(outcomes(totals.rolloutOutcomes)))"))
        facts.append(("GitOps updates", totals.updates == 0 ? "none" : "\(totals.updates) (\(outcomes(totals.updateOutcomes)))"))
        facts.append(("Success", totals.successPercent.map { "\($0) % of finished rollouts and updates" } ?? "nothing finished"))
        if let median = totals.rolloutDurationMedianSeconds, let longest = totals.rolloutDurationMaxSeconds {
            facts.append(("Rollout duration", "median \(RolloutReport.clock(median)), longest \(RolloutReport.clock(longest))"))
        }
        facts.append(("Nodes touched", nodes.isEmpty ? "none" : "\(nodes.count): " + nodes.map(\.node).joined(separator: ", ")))
        facts.append(("Maintenance mode", maintenance.isEmpty ? "none" : "\(RolloutReport.clock(totals.maintenanceSeconds)) in \(maintenance.count) period"
                      + (maintenance.count == 1 ? "" : "s")))
        facts.append(("Rollbacks", rollbacks.isEmpty ? "none" : "\(rollbacks.count)"))
        facts.append(("Backups", "\(backups.count) (\(RolloutReport.bytes(totals.backupBytes)))"))
        return facts
    }

    /// Said instead of tables when the month holds nothing.
    var emptyText: String { "Nothing was recorded in \(title): no rollouts, GitOps updates, maintenance or backups." }

    /// Said when the read hit its bound.
    var truncatedText: String {
        "The state database holds more than \(Self.rowsMax) records of a kind; only the newest \(Self.rowsMax) were read, so this month may be incomplete."
    }

    /// Rollout rows as the tables show them.
    var rolloutTable: Table {
        (["Rollout", "Started", "From → to", "Outcome", "Duration", "Nodes"], rollouts.map { rollout in
            [rollout.id + (rollout.kind.map { $0 == "apply" ? "" : " (\($0))" } ?? ""), (rollout.startedAt ?? rollout.createdAt).utcDescription,
             "\(rollout.from) → \(rollout.target)", rollout.detail, rollout.durationSeconds.map(RolloutReport.clock) ?? "-",
             rollout.nodes.joined(separator: ", ")]
        })
    }

    var updateTable: Table {
        (["Update", "Component", "From → to", "Started", "Outcome", "Duration"], updates.map { update in
            [update.id, update.component, "\(update.from) → \(update.to)", update.startedAt.utcDescription,
             update.outcome + (update.outcome == "completed" || update.message.isEmpty ? "" : ": \(update.message)"),
             update.durationSeconds.map(RolloutReport.clock) ?? "-"]
        })
    }

    var nodeTable: Table {
        (["Node", "Rollouts", "Failed steps"], nodes.map { [$0.node, "\($0.rollouts)", "\($0.failedSteps)"] })
    }

    var maintenanceTable: Table {
        (["Period", "Since", "Ended", "In the month", "Reason"], maintenance.map { period in
            [period.id + (period.rollout.map { " (rollout \($0))" } ?? ""), period.since.utcDescription, period.endedAt?.utcDescription ?? "still on",
             RolloutReport.clock(period.secondsInMonth), period.reason + " (by \(period.by))"]
        })
    }

    var rollbackTable: Table {
        (["Of", "At", "Kind", "Cause"], rollbacks.map { [$0.subject, $0.at.utcDescription, $0.kind, $0.cause] })
    }

    var backupTable: Table {
        (["Backup", "Taken", "Node", "Kind", "Size", "Before rollout"], backups.map { backup in
            [backup.id, backup.takenAt.utcDescription, backup.node, "\(backup.kind) (\(backup.format))", RolloutReport.bytes(backup.bytes), backup.rollout ?? "-"]
        })
    }

    typealias Table = (header: [String], rows: [[String]])

    /// The sections after the facts, in order, each with its table (an empty one is left out).
    var sections: [(title: String, table: Table)] {
        let all: [(title: String, table: Table)] = [("Rollouts", rolloutTable), ("GitOps updates", updateTable), ("Nodes touched", nodeTable), ("Maintenance mode", maintenanceTable),
         ("Rollbacks and their causes", rollbackTable), ("Backups", backupTable)]
        return all.filter { !$0.table.rows.isEmpty }
    }
}
