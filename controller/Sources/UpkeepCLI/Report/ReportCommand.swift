import ArgumentParser
import Foundation
import UpkeepRollout
import UpkeepStore
import UpkeepCore
import UpkeepPOSIX

/// `upkeep report`: a Markdown (or JSON) report from the state database, for a change record or a
/// post-mortem: one rollout in full, or a period's summary.
struct Report: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a report of a rollout (default: the newest) or of a period (--since), as Markdown or JSON.",
        discussion: "Reads only the state database. Exit codes: 0 written, 2 usage or no such rollout, 9 the state database could not be read."
    )

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case markdown
        case json
    }

    @OptionGroup var configOption: ConfigOption

    @Argument(help: "A rollout id (default: the newest rollout).")
    var id: String?

    @Option(name: .long, help: ArgumentHelp("Report on a period instead: rollouts, updates and backups of the last 30d, 12h, 90m.", valueName: "AGE"))
    var since: String?

    @Option(name: [.customShort("o"), .long], help: "markdown or json.")
    var format = Format.markdown

    @Option(name: .customLong("output"), help: ArgumentHelp("Write the report to this file (replaced atomically) instead of standard output.",
                                                          valueName: "PATH"))
    var path: String?

    func validate() throws {
        if let since { _ = try History.ageMilliseconds(since) }
        if since != nil && id != nil { throw ValidationError("use either a rollout id or --since, not both") }
    }

    func run() async throws {
        let config = try configOption.load()
        let store = try openStateStoreForReading(config)
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
        guard let path else {
            print(text, terminator: "")
            return
        }
        try writeReplacing(path, with: text)
        print("wrote \(path)")
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
