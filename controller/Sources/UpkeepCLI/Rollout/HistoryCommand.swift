import ArgumentParser
import Foundation
import UpkeepRollout
import UpkeepCore
import UpkeepStore
import UpkeepYAML
import UpkeepPOSIX

/// `upkeep history`: every rollout the state database remembers, newest first; with an id, one
/// rollout in full (plan, per-node steps with times, notices).
struct History: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List past rollouts (and `upkeep apply --all` sets), or show one in full.",
        discussion: "Exit codes: 0 shown, 2 usage (also: no rollout or set with that id), 9 the state database could not be read."
    )

    @OptionGroup var configOption: ConfigOption

    @Argument(help: "A rollout id (or a set id, s…): show it in full.")
    var id: String?

    @Option(name: .long, help: ArgumentHelp("Only rollouts created in this period: 30d, 12h, 90m.", valueName: "AGE"))
    var since: String?

    @Flag(name: .customLong("last-30-days"), help: "Only rollouts of the last 30 days (same as --since 30d).")
    var lastThirtyDays = false

    @Option(name: .long, help: "At most this many rollouts (1 to 10000).")
    var limit = 50

    @Option(name: .shortAndLong, help: "table or json.")
    var output = OutputFormat.table

    @Flag(name: .long, help: "List component updates through Git (`upkeep update`) instead of k3s rollouts.")
    var updates = false

    @Flag(name: .long, help: "List `upkeep apply --all` sets (each stage with its rollout or update) instead of k3s rollouts.")
    var sets = false

    func validate() throws {
        if updates && sets { throw ValidationError("use either --updates or --sets") }
        guard (1...10_000).contains(limit) else { throw ValidationError("--limit must be between 1 and 10000") }
        if let since { _ = try Self.ageMilliseconds(since) }
        if since != nil && lastThirtyDays { throw ValidationError("use either --since or --last-30-days") }
    }

    /// `30d`, `12h`, `90m`, `45s` as milliseconds.
    static func ageMilliseconds(_ text: String) throws -> Int64 {
        let units: [Character: Int64] = ["d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1000]
        guard let unit = text.last, let scale = units[unit], let count = Int64(text.dropLast()) else {
            throw ValidationError("--since \(text): write a whole count and a unit (d, h, m or s), e.g. 30d, 12h, 90m")
        }
        guard count > 0 else {
            throw ValidationError("--since \(text): a period of \(count) holds no rollouts; give at least 1\(unit) (e.g. 1d for the last day)")
        }
        guard count <= 36_500 else { throw ValidationError("--since \(text): at most 36500 (a century in days); e.g. 3650d for ten years") }
        return count * scale
    }

    func run() async throws {
        let config = try configOption.load()
        let store = try openStateStoreForReading(config)
        do {
            if updates {
                let records = try store.componentUpdates(limit: limit)
                if output == .json {
                    print(try jsonText(records), terminator: "")
                } else if records.isEmpty {
                    print("no component updates yet (`upkeep update`)")
                } else {
                    print(renderTable(["ID", "STARTED", "BY", "COMPONENT", "FROM", "TO", "OUTCOME", "COMMIT", "REVERT", "SNAPSHOTS", "BACKUP", "MESSAGE"],
                                      records.map { record in
                        [record.id, record.startedAt.utcDescription, record.startedBy?.by.description ?? "-", record.component, record.from, record.to,
                         record.outcome.rawValue, String((record.commit ?? "-").prefix(12)), String((record.revertCommit ?? "-").prefix(12)),
                         record.snapshots.isEmpty ? "-" : record.snapshots.joined(separator: ","), record.backupID ?? "-",
                         Self.message(record)]
                    }), terminator: "")
                }
                return
            }
            if sets {
                let records = try store.updateSets(limit: limit)
                print(output == .json ? try jsonText(records) : Self.setsTable(records), terminator: "")
                return
            }
            if let id, let set = try store.updateSet(id: id) {
                print(output == .json ? try jsonText(set) : Self.render(set, operations: try store.operations(subject: set.id)), terminator: "")
                return
            }
            if let id {
                let detail = try store.rollout(id: id)
                print(output == .json ? try jsonText(detail) : Self.render(detail), terminator: "")
                return
            }
            let age = try lastThirtyDays ? Self.ageMilliseconds("30d") : since.map(Self.ageMilliseconds)
            let records = try store.history(limit: limit, since: age.map { Instant.wallClockNow().adding(milliseconds: -$0) })
            if output == .json {
                print(try jsonText(records), terminator: "")
            } else if records.isEmpty {
                print("no rollouts recorded in \(config.resolvedStateDirectory())/upkeep.db")
            } else {
                print(renderTable(["ID", "CREATED", "BY", "FINISHED", "FROM", "TO", "STEPS", "OUTCOME"], records.map { record in
                    [record.id, record.createdAt.utcDescription, record.startedBy.map(\.summary) ?? "-", record.finishedAt?.utcDescription ?? "-",
                     record.from, record.target.description, record.nodeSummary, record.outcomeText]
                }), terminator: "")
            }
            if output == .table {
                let sets = try store.updateSets(limit: limit)
                if !sets.isEmpty { print("\nsets (upkeep apply --all; `upkeep history ID` shows one):\n" + Self.setsTable(sets), terminator: "") }
            }
        } catch let error as StoreError {
            // An id the database does not hold is the operator's to fix, as `report` says too.
            if case .unknownRollout = error { throw CommandFailure(code: RolloutExitCode.usage, message: error.description) }
            throw CommandFailure(code: RolloutExitCode.state, message: error.description)
        }
    }

    /// An update's message with what was overridden and its post-update validation.
    static func message(_ record: ComponentUpdateRecord) -> String {
        var text = record.message
        if let ignored = record.ignoredCompatibility { text += " [\(ignored.summary)]" }
        if let validation = record.validation { text += " [post-update validation: \(validation.detail ?? "recorded")]" }
        return text
    }

    static func setsTable(_ sets: [UpdateSetRecord]) -> String {
        guard !sets.isEmpty else { return "no sets yet (`upkeep apply --all`)\n" }
        return renderTable(["ID", "CREATED", "BY", "FINISHED", "STAGES", "OUTCOME"], sets.map { set in
            [set.id, set.createdAt.utcDescription, set.by.description, set.finishedAt?.utcDescription ?? "-", set.stageSummary,
             set.outcome.rawValue + (set.message.isEmpty ? "" : " (\(set.message))")]
        })
    }

    /// One set: its stages in order, each with the rollout or update it ran as, and what was
    /// recorded on the set itself (its post-update validation).
    static func render(_ set: UpdateSetRecord, operations: [OperationEntry] = []) -> String {
        var text = "set \(set.id) (upkeep apply --all) by \(set.by)\n"
        text += "created \(set.createdAt.utcDescription)" + (set.finishedAt.map { ", finished \($0.utcDescription)" } ?? "") + "\n"
        text += "outcome: \(set.outcome.rawValue)" + (set.message.isEmpty ? "" : " (\(set.message))") + "\n"
        for operation in operations { text += "\(operation.at.utcDescription) \(operation.summary)\n" }
        text += "\n"
        text += renderTable(["STAGE", "COMPONENT", "FROM", "TO", "STATE", "ID", "EXIT", "STARTED", "FINISHED"], set.stages.enumerated().map { index, stage in
            ["\(index + 1)", stage.component, stage.from, stage.to, stage.state.rawValue, stage.ref ?? "-", stage.exitCode.map(String.init) ?? "-",
             stage.startedAt?.utcDescription ?? "-", stage.finishedAt?.utcDescription ?? "-"]
        })
        text += "\n" + set.stages.enumerated().map { index, stage in
            "\(index + 1). \(stage.why)" + (stage.message.isEmpty ? "" : "; \(stage.message)") + "\n"
        }.joined()
        return text
    }

    static func render(_ detail: RolloutDetail) -> String {
        let record = detail.record
        var text = "rollout \(record.id): \(record.from) -> \(record.target)\n"
        text += "created \(record.createdAt.utcDescription)"
        if let started = record.startedAt { text += ", started \(started.utcDescription)" }
        if let finished = record.finishedAt { text += ", finished \(finished.utcDescription)" }
        text += "\noutcome: \(record.outcomeText)\n"
        for operation in detail.operations { text += "\(operation.at.utcDescription) \(operation.summary)\n" }
        for hop in detail.plan.hops { text += "hop \(hop.number) to \(hop.version): rollback \(hop.rollbackKind.rawValue)\n" }
        text += "\n"
        text += renderTable(["NODE", "WAVE", "FROM", "TO", "PHASE", "STARTED", "FINISHED"], record.steps.map { step in
            [step.node, step.progress.wave, step.progress.from.description, step.progress.to.description, record.phaseText(step.progress),
             step.startedAt?.utcDescription ?? "-", step.finishedAt?.utcDescription ?? "-"]
        })
        if !detail.notices.isEmpty {
            text += "\n"
            for notice in detail.notices {
                text += "\(notice.at.utcDescription) \(notice.notice.level.rawValue) " + (notice.notice.node.map { "\($0): " } ?? "")
                    + notice.notice.message + "\n"
            }
        }
        return text
    }
}
