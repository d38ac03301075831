import UpkeepRollout
import UpkeepCore
import UpkeepStore

/// A Markdown report for a change record or a post-mortem, written from the state database only:
/// one rollout (outcome, times, the backup taken before it, each node's steps with durations,
/// every notice in order), or a period (outcomes, durations, nodes that failed, component
/// updates through Git, backups). Pure: records in, text out.
enum RolloutReport {
    /// One rollout in full.
    static func rollout(_ detail: RolloutDetail, backups: [BackupRecord]) -> String {
        let record = detail.record
        var text = "# Rollout \(record.id): \(record.from) → \(record.target)\n\n"
        var facts: [(String, String)] = [("Outcome", record.outcomeText), ("Created", record.createdAt.utcDescription)]
        facts.append(("Started by", record.startedBy.map { "\($0.by) (`upkeep \($0.kind.rawValue)`)" } ?? "not recorded"))
        let later = detail.operations.filter { $0 != record.startedBy }
        if !later.isEmpty {
            facts.append(("Then", later.map { "\($0.summary), \($0.at.utcDescription)" }.joined(separator: "; ")))
        }
        if let started = record.startedAt { facts.append(("Started", started.utcDescription)) }
        if let finished = record.finishedAt { facts.append(("Finished", finished.utcDescription)) }
        if let took = duration(from: record.startedAt ?? record.createdAt, to: record.finishedAt) { facts.append(("Duration", took)) }
        facts.append(("Waves", "\(detail.plan.waves.count) (\(detail.plan.waves.reduce(0) { $0 + $1.steps.count }) node steps)"))
        let policy = detail.policy
        facts.append(("Policy", "auto-rollback \(policy.autoRollback.reportText), health timeout \(policy.healthTimeoutSeconds) s, "
                      + "drain timeout \(policy.drainTimeoutSeconds) s (a restore's \(policy.restoreDrainTimeoutSeconds) s)"
                      + (policy.drain.map { ", drained with \($0.summary)" } ?? "")))
        if let gates = policy.gates, !gates.kinds.isEmpty {
            facts.append(("Gates", gates.kinds.map(\.rawValue).joined(separator: ", ") + ", held at most \(gates.holdTimeoutSeconds) s a wave"))
        }
        if let selection = detail.plan.policy.selection { facts.append(("Nodes", "\(selection.nodes.count) selected (\(selection.how))")) }
        if detail.plan.policy.canaries > 0 {
            facts.append(("Canaries", "\(detail.plan.policy.canaries), then a soak of \(detail.plan.policy.canarySoakSeconds) s"))
        }
        facts.append(("Hops", detail.plan.hops.map { hop in
            let snapshot = backups.first { $0.rolloutID == record.id && $0.hop == hop.number }.map { ", snapshot \($0.id)" } ?? ""
            return "\(hop.number) to \(hop.version): rollback \(hop.rollbackKind.rawValue)\(snapshot)"
        }.joined(separator: "; ")))
        let taken = backups.filter { $0.rolloutID == record.id }
        facts.append(("Backup", taken.isEmpty ? "none recorded" : taken.map { backup in
            "\(backup.id): \(backup.format) of \(backup.node), \(bytes(backup.bytes)), sha256 \(backup.sha256.prefix(16))…"
        }.joined(separator: "; ")))
        text += table(["", ""], facts.map { [$0.0, $0.1] }) + "\n"
        text += "## Nodes\n\n"
        text += table(["Node", "Wave", "From", "To", "Result", "Started", "Took"], record.steps.map { step in
            [step.node + (step.progress.isRollback ? " (way back)" : ""), step.progress.wave, step.progress.from.description,
             step.progress.to.description, record.stageText(step.progress.stage) + (step.progress.note.map { ": \($0)" } ?? ""),
             step.startedAt?.utcDescription ?? "-", step.startedAt.flatMap { duration(from: $0, to: step.finishedAt) } ?? "-"]
        }) + "\n"
        text += "## Timeline\n\n"
        text += detail.notices.isEmpty ? "No notices recorded.\n" : detail.notices.map { notice in
            "- \(notice.at.utcDescription) **\(notice.notice.level.rawValue)** " + (notice.notice.node.map { "\($0): " } ?? "")
                + notice.notice.message + "\n"
        }.joined()
        return text
    }

    /// What a period shows.
    struct Period: Encodable, Equatable {
        var since: Instant
        var until: Instant
        var rollouts: Int
        var outcomes: [String: Int]
        /// Of finished rollouts, from start (or creation) to finish, in seconds.
        var durationMedianSeconds: Int?
        var durationMaxSeconds: Int?
        /// Nodes with a forward step that did not end done, by how often.
        var failingNodes: [String: Int]
        var componentUpdates: [String: Int]
        var backups: Int
        var backupBytes: Int64
        /// The rollouts counted above (created within the period), in the order given: the
        /// Markdown report lists them; the JSON counts them only.
        var listed: [RolloutRecord]

        private enum CodingKeys: String, CodingKey {
            case since, until, rollouts, outcomes, durationMedianSeconds, durationMaxSeconds, failingNodes, componentUpdates
            case backups, backupBytes
        }
    }

    static func period(since: Instant, until: Instant, rollouts: [RolloutRecord], updates: [ComponentUpdateRecord],
                       backups: [BackupRecord]) -> Period {
        let inRange = { (at: Instant) in at >= since && at <= until }
        let chosen = rollouts.filter { inRange($0.createdAt) }
        var outcomes: [String: Int] = [:]
        var failing: [String: Int] = [:]
        var durations: [Int] = []
        for record in chosen {
            outcomes[outcomeWord(record.status), default: 0] += 1
            if let finished = record.finishedAt {
                durations.append(Int((finished.milliseconds - (record.startedAt ?? record.createdAt).milliseconds) / 1000))
            }
            for step in record.steps where !step.progress.isRollback && [.reverted, .unhealthy].contains(step.progress.stage) {
                failing[step.node, default: 0] += 1
            }
        }
        durations.sort()
        var components: [String: Int] = [:]
        for update in updates where inRange(update.startedAt) { components["\(update.component) \(update.outcome.rawValue)", default: 0] += 1 }
        let kept = backups.filter { inRange($0.takenAt) }
        return Period(since: since, until: until, rollouts: chosen.count, outcomes: outcomes,
                      durationMedianSeconds: durations.isEmpty ? nil : durations[durations.count / 2], durationMaxSeconds: durations.last,
                      failingNodes: failing, componentUpdates: components, backups: kept.count, backupBytes: kept.reduce(0) { $0 + $1.bytes },
                      listed: chosen)
    }

    static func markdown(_ period: Period) -> String {
        var text = "# Upkeep report \(period.since.utcDescription) – \(period.until.utcDescription)\n\n"
        let outcomes = period.outcomes.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
        let completed = period.outcomes["completed"] ?? 0
        let finished = period.outcomes.filter { $0.key != "unfinished" }.values.reduce(0, +)
        var facts: [[String]] = [["Rollouts", period.rollouts == 0 ? "none" : "\(period.rollouts) (\(outcomes))"]]
        if finished > 0 { facts.append(["Completed", "\(completed * 100 / finished) % of finished rollouts"]) }
        if let median = period.durationMedianSeconds, let longest = period.durationMaxSeconds {
            facts.append(["Duration", "median \(clock(median)), longest \(clock(longest))"])
        }
        facts.append(["Nodes that failed a step", period.failingNodes.isEmpty ? "none"
                      : period.failingNodes.sorted { ($1.value, $0.key) < ($0.value, $1.key) }.map { "\($0.key) (\($0.value))" }.joined(separator: ", ")])
        facts.append(["Updates through Git", period.componentUpdates.isEmpty ? "none"
                      : period.componentUpdates.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")])
        facts.append(["Backups", "\(period.backups) (\(bytes(period.backupBytes)))"])
        text += table(["", ""], facts) + "\n"
        if !period.listed.isEmpty {
            text += "## Rollouts\n\n" + table(["Rollout", "Created", "By", "From", "To", "Outcome"], period.listed.map { record in
                [record.id, record.createdAt.utcDescription, record.startedBy.map(\.summary) ?? "-", record.from, record.target.description,
                 record.outcomeText]
            })
        }
        return text
    }

    // MARK: - Formatting

    /// `completed`, `rolled back`, `failed`, `abandoned`, or `unfinished` (running or blocked).
    static func outcomeWord(_ status: RolloutEngine.Status) -> String {
        switch status {
        case .finished(.completed): "completed"
        case .finished(.rolledBack): "rolled back"
        case .finished(.failed): "failed"
        case .finished(.abandoned): "abandoned"
        case .notStarted, .running, .stopping, .blocked: "unfinished"
        }
    }

    static func duration(from start: Instant, to end: Instant?) -> String? {
        end.map { clock(Int(max($0.milliseconds - start.milliseconds, 0) / 1000)) }
    }

    /// `1h 02m 05s`, `4m 12s`, `9s`.
    static func clock(_ seconds: Int) -> String {
        let (hours, minutes, rest) = (seconds / 3600, seconds % 3600 / 60, seconds % 60)
        if hours > 0 { return "\(hours)h \(minutes < 10 ? "0" : "")\(minutes)m \(rest < 10 ? "0" : "")\(rest)s" }
        return minutes > 0 ? "\(minutes)m \(rest < 10 ? "0" : "")\(rest)s" : "\(rest)s"
    }

    static func bytes(_ count: Int64) -> String {
        count >= 1 << 20 ? "\(((count * 10) >> 20) / 10).\(((count * 10) >> 20) % 10) MiB" : count >= 1024 ? "\(count >> 10) KiB" : "\(count) B"
    }

    /// A Markdown table; `|` and line breaks inside cells are escaped.
    static func table(_ header: [String], _ rows: [[String]]) -> String {
        let cell = { (text: String) in text.replacing("|", with: "\\|").replacing("\n", with: " ") }
        var text = "| " + header.map(cell).joined(separator: " | ") + " |\n|" + String(repeating: "---|", count: header.count) + "\n"
        for row in rows { text += "| " + row.map(cell).joined(separator: " | ") + " |\n" }
        return text
    }
}

extension AutoRollback {
    /// How the report names the policy.
    var reportText: String {
        switch self {
        case .off: "off"
        case .binaries: "by binaries where safe (a hop that needs a restore blocks)"
        case .restore: "by binaries or by restoring the hop's datastore snapshot"
        }
    }
}
