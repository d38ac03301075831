import ArgumentParser
import Foundation
import UpkeepRollout
import UpkeepCore
import UpkeepFleet
import UpkeepKube
import UpkeepPOSIX
import UpkeepStore

/// `upkeep status`: the rollout in progress (or the last one), each node's phase, and who holds
/// the cluster Lease (read from the API, bounded) and this state directory's lease.
struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the rollout in progress, or the last one, node by node.",
        discussion: "The cluster Lease kube-system/upkeep is read from the Kubernetes API (at most 5 s; shown as unreadable "
            + "otherwise). Exit codes: 0 shown, 2 usage, 9 the state database could not be read."
    )

    @OptionGroup var configOption: ConfigOption

    @Option(name: .shortAndLong, help: "table or json.")
    var output = OutputFormat.table

    @OptionGroup var remote: RemoteStatusOptions

    /// The cluster Lease as the API shows it.
    struct ClusterLeaseView: Codable, Equatable {
        var name = ClusterLease.lockName
        /// nil: nobody holds it (released, or never taken).
        var holder: String?
        var acquireTime: String?
        var renewTime: String?
        var durationSeconds: Int?
        var transitions = 0
        /// When it lapses unless renewed.
        var expiresAt: String?
        /// Held but not renewed in time: another controller may take it over.
        var expired = false
        /// Whether the object exists at all.
        var exists = false
        /// Why it could not be read.
        var error: String?

        init(error: String) {
            self.error = error
        }

        init(_ lease: CoordinationLease?, now: Instant) {
            guard let spec = lease?.spec else { return }
            exists = true
            holder = spec.holderIdentity
            acquireTime = spec.acquireTime.map(KubeTime.format)
            renewTime = spec.renewTime.map(KubeTime.format)
            durationSeconds = spec.leaseDurationSeconds
            transitions = spec.leaseTransitions
            let expiry = LeaseElection.expiry(of: spec)
            expiresAt = expiry.map { KubeTime.format(Double($0.milliseconds) / 1000) }
            expired = holder != nil && !LeaseElection.isLive(spec, at: now)
        }

        var line: String {
            if let error { return "cluster Lease \(name): cannot be read: \(error)" }
            guard exists else { return "cluster Lease \(name): not taken yet" }
            guard let holder else { return "cluster Lease \(name): free (given back \(renewTime ?? "?"); \(transitions) changes of holder)" }
            return "cluster Lease \(name): held by \(holder) since \(acquireTime ?? "?"), renewed \(renewTime ?? "?"), "
                + (expired ? "EXPIRED at \(expiresAt ?? "?") (not renewed: its holder is gone or cut off; another controller may take it over)"
                           : "until \(expiresAt ?? "?") unless renewed")
        }
    }

    struct Report: Codable {
        var rollout: RolloutRecord?
        var inProgress: Bool
        var clusterLease: ClusterLeaseView
        /// This state directory's lease (its holder is a process of this controller).
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
        /// The configured gates: what holds the current wave, and what they said when last read.
        var gates: GatesStatus?
        /// The `upkeep apply --all` set not finished (running, or its process gone), if any.
        var updateSet: UpdateSetRecord? = nil
        /// Why this upkeep cannot rebuild the rollout's engine (another version ran it, and
        /// replaying it decides otherwise): the steps are shown as recorded, and what comes from
        /// the engine (cordons, hops, restore, windows, gates) is left out.
        var engineProblem: String? = nil
    }

    struct GatesStatus: Codable {
        struct Hold: Codable {
            var gate: String
            var reason: String
        }

        /// The wave the gates hold, since when, and when the hold turns into a block (or did).
        var wave: String?
        var heldSince: String?
        var blocksAt: String?
        var blocked: Bool
        var holds: [Hold]
        /// The newest read, one line per gate, and when it was made.
        var lastRead: [String]
        var readAt: String?

        init?(_ engine: RolloutEngine) {
            let hold = engine.gateHold
            let read = engine.lastGateReport
            guard hold != nil || read != nil else { return nil }
            wave = hold?.wave
            heldSince = hold.map { MaintenanceWindowClock.text($0.since) }
            blocksAt = hold.map { MaintenanceWindowClock.text($0.blocksAt) }
            blocked = hold?.blocked ?? false
            holds = hold?.holds.map { Hold(gate: $0.gate.rawValue, reason: $0.reason) } ?? []
            lastRead = read?.report.lines ?? []
            readAt = read.map { MaintenanceWindowClock.text($0.at) }
        }

        var text: String {
            var text = ""
            if let wave, let heldSince, let blocksAt, !holds.isEmpty {
                text += "gates hold \(wave) since \(heldSince)" + (blocked ? " (blocked at \(blocksAt)):\n" : "; blocks at \(blocksAt):\n")
                text += holds.map { "  \($0.gate): \($0.reason)\n" }.joined()
            }
            if let readAt, !lastRead.isEmpty {
                text += "gates read \(readAt):\n" + lastRead.map { "  \($0)\n" }.joined()
            }
            return text
        }
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
            var engine: RolloutEngine?
            var engineProblem: String?
            if let record {
                switch Result(catching: { () throws(StoreError) in try store.engine(rolloutID: record.id) }) {
                case .success(let rebuilt): engine = rebuilt
                case .failure(let error):
                    guard case .replayDiverged = error else { throw error }
                    engineProblem = error.description + (unfinished == nil ? "" : "; or give it up with `upkeep abandon` (from its last snapshot)")
                }
            }
            let restore: String? = engine.map { engine in
                switch engine.restoreChoice {
                case .ready(let hop, let snapshot):
                    "`upkeep rollback --restore` would undo hop \(hop) with backup \(snapshot.backupID) taken "
                        + "\(MaintenanceWindowClock.text(snapshot.takenAt)) (every object written since then is lost)"
                case .refused(let why): "no restore now: \(why)"
                }
            }
            return Report(rollout: record, inProgress: unfinished != nil, clusterLease: await Self.clusterLease(config, store: store),
                          lease: try store.currentLease(),
                          cordonedByUpkeep: engine?.cordonedByUpkeep ?? [], hops: engine?.hopStatus ?? [], restore: restore,
                          windows: unfinished == nil ? nil : engine?.policy.maintenanceWindows.map { Self.windows($0, now: .wallClockNow()) },
                          maintenance: try store.openMaintenancePeriod(), gates: engine.flatMap(GatesStatus.init),
                          updateSet: try store.unfinishedUpdateSet(), engineProblem: engineProblem)
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

    /// The cluster Lease as the API shows it now (a client of its own, 5 s at most).
    static func clusterLease(_ config: ControllerConfig, store: StateStore) async -> ClusterLeaseView {
        let access = ClusterLeaseAccess.standalone(config, store: store)
        guard let lease = access.lease, let client = access.client else { return ClusterLeaseView(error: access.problem ?? "no kubeconfig") }
        let view: ClusterLeaseView
        do {
            view = ClusterLeaseView(try await lease.observe(), now: .wallClockNow())
        } catch {
            switch error {
            case .unreachable(_, let reason), .refused(_, let reason): view = ClusterLeaseView(error: reason)
            case .held: view = ClusterLeaseView(error: error.description)
            }
        }
        await client.shutdown()
        return view
    }

    /// The unfinished set, its stage and what to do when its process is gone.
    static func setLine(_ set: UpdateSetRecord) -> String {
        guard let index = set.stages.firstIndex(where: { $0.state == .running }) else {
            return "set \(set.id) (upkeep apply --all) has not finished: \(set.stageSummary); `upkeep apply --all` carries it on\n"
        }
        let stage = set.stages[index]
        let what = stage.component == "k3s"
            ? "if its process is gone: `upkeep resume` finishes rollout \(stage.ref ?? "(none started)"), then `upkeep apply --all` carries the set on"
            : "if its process is gone: `upkeep apply --all` carries update \(stage.ref ?? "(none started)") and the set on"
        return "set \(set.id) (upkeep apply --all) has not finished: stage \(index + 1) of \(set.stages.count), \(stage.component) "
            + "\(stage.from) → \(stage.to), is running; \(what)\n"
    }

    static func render(_ report: Report) -> String {
        let maintenance = report.maintenance.map { period in
            var line = "maintenance mode: on, \(MaintenanceStatusCommand.headline(period)); \(period.suspended.count) Flux objects suspended"
            if let rollout = period.rollout, rollout == report.rollout?.id, case .blocked = report.rollout?.status {
                line += "; it stays on while this rollout is blocked"
            }
            return line + "\n"
        } ?? ""
        let set = report.updateSet.map(Self.setLine) ?? ""
        var leases = report.clusterLease.line + "\n"
        if let lease = report.lease {
            leases += "state directory lease: \(lease.holder) until \(lease.expiresAt.utcDescription)\n"
        }
        guard let record = report.rollout else {
            return set + maintenance + leases + "no rollouts yet; start one with `upkeep plan` and `upkeep apply`\n"
        }
        var text = set + maintenance + (report.inProgress ? "rollout in progress: " : "last rollout: ")
        text += "\(record.id) \(record.from) -> \(record.target): \(record.outcomeText)\n"
        if let made = record.startedBy { text += "started: \(made.summary) at \(made.at.utcDescription)\n" }
        text += leases
        if let problem = report.engineProblem { text += "warning: \(problem); the steps below are as recorded\n" }
        if let windows = report.windows { text += "maintenance windows: \(windows)\n" }
        if !report.cordonedByUpkeep.isEmpty {
            text += "cordoned by upkeep: \(report.cordonedByUpkeep.joined(separator: ", "))\n"
        }
        for hop in report.hops { text += hop.line + "\n" }
        if let restore = report.restore { text += restore + "\n" }
        if let gates = report.gates { text += gates.text }
        text += "\n" + renderTable(["NODE", "WAVE", "FROM", "TO", "PHASE"], record.steps.map { step in
            [step.node, step.progress.wave, step.progress.from.description, step.progress.to.description,
             record.phaseText(step.progress) + (step.progress.note.map { " (\($0))" } ?? "")]
        })
        return text
    }
}
