import ArgumentParser
import Foundation
import UpkeepRollout
import UpkeepCore
import UpkeepStore
import UpkeepPOSIX

/// `upkeep status`: the rollout in progress (or the last one), each node's phase, and who holds
/// the controller lease.
struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the rollout in progress, or the last one, node by node.",
        discussion: "Exit codes: 0 shown, 2 usage, 9 the state database could not be read."
    )

    @OptionGroup var configOption: ConfigOption

    @Option(name: .shortAndLong, help: "table or json.")
    var output = OutputFormat.table

    @OptionGroup var remote: RemoteStatusOptions

    struct Report: Codable {
        var rollout: RolloutRecord?
        var inProgress: Bool
        var lease: Lease?
        var cordonedByUpkeep: [String]
        /// How each hop is undone, its snapshot, whether it was.
        var hops: [HopStatus]
        /// What `upkeep rollback --restore` would do now, or why it cannot.
        var restore: String?
        /// The rollout's maintenance windows with their zones, and whether they are open now.
        var windows: String?
        /// Maintenance mode, as this controller recorded it (docs/maintenance.md); nil: off.
        var maintenance: MaintenancePeriod?
    }

    func run() async throws {
        let config = try configOption.load()
        if remote.server != nil {
            let body = try await remote.fetch(config)
            print(output == .json ? try jsonText(body) : (body.serve.map(RemoteStatusOptions.line) ?? "") + Self.render(body.status), terminator: "")
            return
        }
        let store = try openStateStoreForReading(config)
        let report = try await Self.report(config, store: store)
        print(output == .json ? try jsonText(report) : Self.render(report), terminator: "")
    }

    /// The report `status` prints and `upkeep serve` answers `/v1/status` with.
    static func report(_ config: ControllerConfig, store: StateStore) async throws -> Report {
        do {
            let unfinished = try store.unfinishedRollout()
            let record = try unfinished ?? store.history(limit: 1).first
            let engine = try record.map { try store.engine(rolloutID: $0.id) }
            let restore: String? = engine.map { engine in
                switch engine.restoreChoice {
                case .ready(let hop, let snapshot):
                    "`upkeep rollback --restore` would undo hop \(hop) with backup \(snapshot.backupID) taken "
                        + "\(MaintenanceWindowClock.text(snapshot.takenAt)) (every object written since then is lost)"
                case .refused(let why): "no restore now: \(why)"
                }
            }
            return Report(rollout: record, inProgress: unfinished != nil, lease: try store.currentLease(),
                          cordonedByUpkeep: engine?.cordonedByUpkeep ?? [], hops: engine?.hopStatus ?? [], restore: restore,
                          windows: unfinished == nil ? nil : engine?.policy.maintenanceWindows.map { Self.windows($0, now: .wallClockNow()) },
                          maintenance: try store.openMaintenancePeriod())
        } catch let error as StoreError {
            throw CommandFailure(code: RolloutExitCode.state, message: error.description)
        }
    }

    /// `Sat 02:00-06:00 Europe/Berlin: closed; the next opens at Sat 2026-12-12 02:00 CET (01:00 UTC)`.
    static func windows(_ windows: [MaintenanceWindow], now: Instant) -> String {
        guard windows.isOpen(at: now) else { return "\(windows.listed): closed; the next opens at \(windows.nextOpenText(atOrAfter: now))" }
        guard let closes = windows.closing(after: now) else { return "\(windows.listed): open, and together they never close" }
        return "\(windows.listed): open until \(MaintenanceWindowClock.text(closes, in: windows.sharedZone))"
    }

    static func render(_ report: Report) -> String {
        let maintenance = report.maintenance.map { period in
            var line = "maintenance mode: on, \(MaintenanceStatusCommand.headline(period)); \(period.suspended.count) Flux objects suspended"
            if let rollout = period.rollout, rollout == report.rollout?.id, case .blocked = report.rollout?.status {
                line += "; it stays on while this rollout is blocked"
            }
            return line + "\n"
        } ?? ""
        guard let record = report.rollout else { return maintenance + "no rollouts yet; start one with `upkeep plan` and `upkeep apply`\n" }
        var text = maintenance + (report.inProgress ? "rollout in progress: " : "last rollout: ")
        text += "\(record.id) \(record.from) -> \(record.target): \(record.outcomeText)\n"
        if let lease = report.lease {
            text += "lease: \(lease.holder) until \(lease.expiresAt.utcDescription)\n"
        }
        if let windows = report.windows { text += "maintenance windows: \(windows)\n" }
        if !report.cordonedByUpkeep.isEmpty {
            text += "cordoned by upkeep: \(report.cordonedByUpkeep.joined(separator: ", "))\n"
        }
        for hop in report.hops { text += hop.line + "\n" }
        if let restore = report.restore { text += restore + "\n" }
        text += "\n" + renderTable(["NODE", "WAVE", "FROM", "TO", "PHASE"], record.steps.map { step in
            [step.node, step.progress.wave, step.progress.from.description, step.progress.to.description,
             record.phaseText(step.progress) + (step.progress.note.map { " (\($0))" } ?? "")]
        })
        return text
    }
}
