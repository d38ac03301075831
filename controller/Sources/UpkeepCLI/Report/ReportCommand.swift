import ArgumentParser
import Foundation
import UpkeepRollout
import UpkeepStore
import UpkeepCore
import UpkeepPOSIX

/// `upkeep report`: a report from the state database, for a change record or a post-mortem: one
/// rollout in full or a period's summary (Markdown or JSON), or a calendar month's report for a
/// manager (`--monthly`: also HTML or PDF). Never writes the database.
struct Report: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a report of a rollout (default: the newest), of a period (--since) or of a calendar month (--monthly).",
        discussion: """
            Reads only the state database, never writes it. --monthly: the calendar month of --month (default: the last complete one) \
            on --time-zone's calendar (default: UTC), as markdown, json, html (one self-contained page) or pdf (--paper a4 or letter). \
            Exit codes: 0 written, 2 usage or no such rollout, 9 the state database could not be read.
            """
    )

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case markdown
        case json
        /// `--monthly` only.
        case html
        case pdf
    }

    @OptionGroup var configOption: ConfigOption

    @Argument(help: "A rollout id (default: the newest rollout).")
    var id: String?

    @Option(name: .long, help: ArgumentHelp("Report on a period instead: rollouts, updates and backups of the last 30d, 12h, 90m.", valueName: "AGE"))
    var since: String?

    @Flag(name: .long, help: "Report on a calendar month (default: the last complete one): rollouts, GitOps updates, maintenance, rollbacks, backups, charts.")
    var monthly = false

    @Option(name: .long, help: ArgumentHelp("The month of --monthly (implies it).", valueName: "YYYY-MM"))
    var month: String?

    @Option(name: .customLong("time-zone"), help: ArgumentHelp("The IANA zone whose calendar --monthly follows (default: UTC).", valueName: "ZONE"))
    var timeZone = "UTC"

    @Option(name: .long, help: ArgumentHelp("The paper of --format pdf: a4 or letter (default: a4).", valueName: "PAPER"))
    var paper: MonthlyReport.Paper?

    @Option(name: [.customShort("o"), .long], help: "markdown or json; with --monthly also html or pdf.")
    var format = Format.markdown

    @Option(name: .customLong("output"), help: ArgumentHelp("Write the report to this file (replaced atomically) instead of standard output.",
                                                          valueName: "PATH"))
    var path: String?

    var isMonthly: Bool { monthly || month != nil }

    func validate() throws {
        if let since { _ = try History.ageMilliseconds(since) }
        if since != nil && id != nil { throw ValidationError("use either a rollout id or --since, not both") }
        if let month, ReportMonth(month) == nil {
            throw ValidationError("--month \(month): write a calendar month as YYYY-MM, e.g. --month 2026-11")
        }
        if isMonthly && (id != nil || since != nil) { throw ValidationError("--monthly reports on a calendar month; leave out the rollout id and --since") }
        if !isMonthly && [.html, .pdf].contains(format) {
            throw ValidationError("--format \(format.rawValue) is for monthly reports; add --monthly (or use markdown or json)")
        }
        if !isMonthly && timeZone != "UTC" { throw ValidationError("--time-zone is for monthly reports; add --monthly") }
        if paper != nil && format != .pdf { throw ValidationError("--paper is for --format pdf") }
        if format == .pdf && path == nil && isatty(STDOUT_FILENO) == 1 {
            throw ValidationError("a PDF is not for a terminal: write it to a file with --output FILE (or redirect standard output)")
        }
    }

    func run() async throws {
        let config = try configOption.load()
        let store = try openStateStoreForReading(config)
        if isMonthly {
            try emit(try monthlyReport(store))
            return
        }
        let text: String
        do {
            if let since {
                let now = Instant.wallClockNow()
                let start = now.adding(milliseconds: -(try History.ageMilliseconds(since)))
                let rollouts = try store.history(limit: 10_000, since: start)
                let period = RolloutReport.period(since: start, until: now, rollouts: rollouts, updates: try store.componentUpdates(limit: 10_000),
                                                  backups: try store.backups(limit: 10_000))
                text = format == .json ? try jsonText(period) : RolloutReport.markdown(period)
            } else {
                text = try rolloutReport(store)
            }
        } catch let error as StoreError {
            throw CommandFailure(code: RolloutExitCode.state, message: error.description)
        }
        try emit(Array(text.utf8))
    }

    /// To `--output` (replaced atomically), else to standard output.
    private func emit(_ bytes: [UInt8]) throws {
        guard let path else {
            FileHandle.standardOutput.write(Data(bytes))
            return
        }
        try writeReplacing(path, bytes: bytes)
        print("wrote \(path)")
    }

    /// The month asked for (or the last complete one) on `--time-zone`'s calendar, in `format`.
    private func monthlyReport(_ store: StateStore) throws -> [UInt8] {
        let now = Instant.wallClockNow()
        let requested = month.flatMap(ReportMonth.init)
        // Rules are read from a little before the month on: that is all the report asks about.
        let from = (requested?.start(day: 1, zone: .utc) ?? now.adding(seconds: -70 * 86_400)).adding(seconds: -2 * 86_400)
        let zone: TimeZoneRule
        do {
            zone = try TimeZoneRule.isUTC(timeZone) ? .utc : ZoneInfoDirectory.system(environment: ProcessInfo.processInfo.environment, now: from)
                .rule(named: timeZone)
        } catch {
            throw CommandFailure(code: RolloutExitCode.usage, message: "--time-zone \(timeZone): \(error)")
        }
        let chosen = requested ?? ReportMonth.lastComplete(at: now, zone: zone)
        let (start, end) = chosen.span(zone: zone)
        guard start <= now else {
            throw CommandFailure(code: RolloutExitCode.usage, message: "--month \(chosen) has not begun; give a month up to the current one")
        }
        let report: MonthlyReport
        do {
            let limit = MonthlyReport.rowsMax
            let rollouts = try store.history(limit: limit, since: start)
            var operations: [String: [OperationEntry]] = [:]
            for rollout in rollouts where rollout.createdAt < end { operations[rollout.id] = try store.operations(subject: rollout.id) }
            let updates = try store.componentUpdates(limit: limit)
            let maintenance = try store.maintenancePeriods(limit: limit)
            let backups = try store.backups(limit: limit)
            let truncated = rollouts.count == limit || [updates.count, maintenance.count, backups.count].contains(limit)
            report = MonthlyReport.make(month: chosen, zone: zone, now: now, rollouts: rollouts, operations: operations, updates: updates,
                                        maintenance: maintenance, backups: backups, truncated: truncated)
        } catch {
            throw CommandFailure(code: RolloutExitCode.state, message: error.description)
        }
        switch format {
        case .markdown: return Array(report.markdown.utf8)
        case .json: return Array(try jsonText(report).utf8)
        case .html: return Array(report.html.utf8)
        case .pdf: return report.pdf(paper: paper ?? .a4)
        }
    }

    /// Full detail and the backups taken for one rollout, as JSON, or its Markdown report.
    struct Full: Encodable {
        var rollout: RolloutDetail
        var backups: [BackupRecord]
    }

    private func rolloutReport(_ store: StateStore) throws -> String {
        var chosen = id
        if chosen == nil { chosen = try store.history(limit: 1).first?.id }
        guard let chosen else {
            throw CommandFailure(code: RolloutExitCode.usage, message: "no rollouts recorded yet; `upkeep apply` starts one (or use --since)")
        }
        let detail: RolloutDetail
        do {
            detail = try store.rollout(id: chosen)
        } catch {
            guard case .unknownRollout = error else { throw error }
            throw CommandFailure(code: RolloutExitCode.usage, message: "no rollout \(chosen); `upkeep history` lists them")
        }
        let backups = try store.backups(limit: 10_000).filter { $0.rolloutID == chosen }
        return format == .json ? try jsonText(Full(rollout: detail, backups: backups)) : RolloutReport.rollout(detail, backups: backups)
    }
}

extension MonthlyReport.Paper: ExpressibleByArgument {}
