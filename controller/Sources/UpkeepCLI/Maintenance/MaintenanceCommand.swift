import ArgumentParser
import Foundation
import UpkeepCore
import UpkeepKube
import UpkeepPOSIX
import UpkeepRuntime
import UpkeepStore

/// `upkeep maintenance`: Flux's reconciliation suspended and the cluster marked while people or
/// rollouts work on it (docs/maintenance.md).
struct MaintenanceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "maintenance",
        abstract: "Suspend Flux's reconciliation while the cluster is worked on (maintenance mode), and resume it.",
        discussion: "enable and disable hold the controller's lock (the cluster Lease kube-system/upkeep) while they run; status takes "
            + "no lock. Exit codes: 0 done (or nothing to do), 2 usage, 5 refused, 6 another controller (or operation) holds the lock, "
            + "8 the Kubernetes API failed (run the same command again: it carries on from the record), 9 the state database failed. "
            + "docs/maintenance.md.",
        subcommands: [MaintenanceEnableCommand.self, MaintenanceStatusCommand.self, MaintenanceDisableCommand.self])
}

/// `upkeep maintenance enable [--reason TEXT] [--notify]`.
struct MaintenanceEnableCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enable",
        abstract: "Suspend the Flux objects maintenance.suspend names (as `flux suspend` does) and mark the cluster.",
        discussion: "What was suspended before stays suspended after `disable`. Run again after an interruption, it finishes the enable.")

    @OptionGroup var configOption: ConfigOption

    @Option(name: .long, help: "Why, for the record (`status`, the ConfigMap, the notification).")
    var reason = "maintenance"

    @Flag(name: .long, help: "Send the maintenance.enabled notification to the configured sinks.")
    var notify = false

    @Flag(name: .customLong("force-takeover"), help: "Take the controller lock even if another controller holds it (only when that one is gone).")
    var forceTakeover = false

    func validate() throws {
        guard !reason.trimmingCharacters(in: .whitespaces).isEmpty, reason.utf8.count <= 1024, !reason.contains("\n") else {
            throw ValidationError("--reason must be one line of 1 to 1024 bytes")
        }
    }

    func run() async throws {
        try await MaintenanceSession.with(configOption, lockedFor: "maintenance enable", forceTakeover: forceTakeover) { mode, _ in
            let now = Instant.wallClockNow()
            switch try await mode.enable(reason: reason, by: OperatorIdentity.current(), notify: notify, now: now) {
            case .enabled(let period):
                print("maintenance mode \(period.id) on: \(period.suspended.count) Flux objects suspended"
                      + (period.alreadySuspended.isEmpty ? "" : ", \(period.alreadySuspended.count) suspended before and left so")
                      + "; marked in \(MaintenanceRecord.place)")
            case .alreadyOn(let period):
                print("maintenance mode is on already: \(MaintenanceStatusCommand.headline(period)); nothing changed")
            }
            if notify, let missing = mode.notifier.missingSink { print("--notify: \(missing)") }
        }
    }
}

/// `upkeep maintenance disable [--notify]`.
struct MaintenanceDisableCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "disable",
        abstract: "Resume exactly the Flux objects maintenance mode suspended (as `flux resume` does) and remove the mark.",
        discussion: "Run again after an interruption (or after a crash during enable), it finishes from the record.")

    @OptionGroup var configOption: ConfigOption

    @Flag(name: .long, help: "Send the maintenance.disabled notification to the configured sinks.")
    var notify = false

    @Flag(name: .customLong("force-takeover"), help: "Take the controller lock even if another controller holds it (only when that one is gone).")
    var forceTakeover = false

    func run() async throws {
        try await MaintenanceSession.with(configOption, lockedFor: "maintenance disable", forceTakeover: forceTakeover) { mode, store in
            let unfinished = try storeCall { try store.unfinishedRollout() }
            switch try await mode.disable(by: OperatorIdentity.current(), notify: notify, now: .wallClockNow()) {
            case .wasOff:
                print("maintenance mode is off; nothing to do")
            case .disabled(let period, let gone):
                print("maintenance mode \(period.id) off: \(period.suspended.count - gone.count) Flux objects resumed"
                      + (gone.isEmpty ? "" : "; gone meanwhile: \(gone.joined(separator: ", "))")
                      + (period.alreadySuspended.isEmpty ? "" : "; still suspended as before: \(period.alreadySuspended.joined(separator: ", "))"))
                if let rollout = period.rollout, unfinished?.id == rollout {
                    print("note: it was on for rollout \(rollout), which has not finished; `upkeep resume` switches it on again")
                }
            }
            if notify, let missing = mode.notifier.missingSink { print("--notify: \(missing)") }
        }
    }
}

/// `upkeep maintenance status [--json]`.
struct MaintenanceStatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Whether maintenance mode is on: since when, why, by whom, and what is suspended.")

    @OptionGroup var configOption: ConfigOption

    @Flag(name: .long, help: "Print JSON.")
    var json = false

    /// What `--json` prints.
    struct Report: Encodable {
        var on: Bool
        /// enabling, enabled or disabling (an interrupted enable or disable shows as such).
        var state: String?
        var id: String?
        var since: String?
        var reason: String?
        var by: String?
        var rollout: String?
        var suspended: [String]
        var alreadySuspended: [String]
        /// Where the record was read: the ConfigMap, or this controller's database when it is gone.
        var record: String?
    }

    func run() async throws {
        try await MaintenanceSession.with(configOption) { mode, store in
            let cluster: MaintenancePeriod?, local: MaintenancePeriod?
            var unreadable: String?
            do {
                (cluster, local) = try await mode.current()
            } catch MaintenanceError.cluster(let why) {
                // The API is down: what this controller recorded is still worth showing.
                (cluster, local, unreadable) = (nil, try storeCall { try store.openMaintenancePeriod() }, why)
            }
            let period = cluster ?? local
            let source: Source = cluster != nil ? .cluster : (unreadable.map { .apiUnreadable($0) } ?? .configMapGone)
            let report = Report(on: period != nil, state: period?.state.rawValue, id: period?.id, since: period.map { KubeTime.format($0.since.unixSeconds) },
                                reason: period?.reason, by: period?.by, rollout: period?.rollout, suspended: period?.suspended ?? [],
                                alreadySuspended: period?.alreadySuspended ?? [],
                                record: period == nil && unreadable == nil ? nil : source.json)
            print(json ? try jsonText(report) : Self.render(period, source: source), terminator: "")
        }
    }

    /// `m… since 2026-12-07T10:00:00Z by alice@ctl: kernel updates`.
    static func headline(_ period: MaintenancePeriod) -> String {
        "\(period.id) since \(KubeTime.format(period.since.unixSeconds)) by \(period.by): \(period.reason)"
            + (period.rollout.map { " (for rollout \($0))" } ?? "")
    }

    /// Where `status` read the record.
    enum Source {
        case cluster
        /// The ConfigMap is gone: this controller's database.
        case configMapGone
        /// The API could not be read (why): this controller's database, which may not know of
        /// a period another controller started.
        case apiUnreadable(String)

        var json: String {
            switch self {
            case .cluster: MaintenanceRecord.place
            case .configMapGone: "state database (the ConfigMap is gone)"
            case .apiUnreadable(let why): "state database (the Kubernetes API could not be read: \(why))"
            }
        }

        var line: String {
            switch self {
            case .cluster: "record: \(MaintenanceRecord.place)"
            case .configMapGone: "record: this controller's state database (\(MaintenanceRecord.place) is gone)"
            case .apiUnreadable(let why):
                "record: this controller's state database only; another controller's maintenance mode would not show here "
                    + "(the Kubernetes API could not be read: \(why))"
            }
        }
    }

    static func render(_ period: MaintenancePeriod?, source: Source) -> String {
        guard let period else {
            if case .apiUnreadable = source { return "maintenance mode: off as far as this controller knows\n\(source.line)\n" }
            return "maintenance mode: off\n"
        }
        var lines = ["maintenance mode: on, \(headline(period))"]
        switch period.state {
        case .enabling: lines.append("its enable was interrupted: `upkeep maintenance enable` finishes it, `upkeep maintenance disable` undoes it")
        case .disabling: lines.append("its disable was interrupted: `upkeep maintenance disable` finishes it")
        case .enabled, .ended: break
        }
        lines.append("suspended by it (\(period.suspended.count)): " + (period.suspended.isEmpty ? "nothing" : period.suspended.joined(separator: ", ")))
        if !period.alreadySuspended.isEmpty {
            lines.append("suspended before it, left so (\(period.alreadySuspended.count)): \(period.alreadySuspended.joined(separator: ", "))")
        }
        lines.append(source.line)
        return lines.joined(separator: "\n") + "\n"
    }
}

/// The Kubernetes API and the state database for one maintenance command; errors as exit codes.
enum MaintenanceSession {
    /// `lockedFor`: the operation that holds the controller's lock (this state directory's
    /// lease and the cluster Lease `kube-system/upkeep`) around `body`, as every command that
    /// changes the cluster does (docs/controller.md, "The lock"); held by another, the command is
    /// refused before it reads or writes anything of maintenance mode (exit 6). nil: read only,
    /// no lock (`status`). `forceTakeover`: take the lock from a live holder too.
    static func with(_ configOption: ConfigOption, lockedFor operation: String? = nil, forceTakeover: Bool = false,
                     _ body: (MaintenanceMode, StateStore) async throws -> Void) async throws {
        let config = try configOption.load()
        let store = try openStateStore(config)
        try await NotificationRun.with(config, store: store) {
            try await ClusterSession.with(config) { session in
                var mode = session.maintenanceMode(store: store, say: { print($0) })
                guard let operation else { return try await run(body, mode, store) }
                let lock = OperationLock(store: store, cluster: try session.clusterLease(store: store), configuration: RuntimeConfiguration(forceTakeover: forceTakeover))
                mode.fence = { lock.loss() }
                try await lock.holding(operation, untouched: "nothing was changed", say: { print($0) }) { try await run(body, mode, store) }
            }
        }
    }

    private static func run(_ body: (MaintenanceMode, StateStore) async throws -> Void, _ mode: MaintenanceMode, _ store: StateStore) async throws {
        do {
            try await body(mode, store)
        } catch {
            throw failure(error)
        }
    }

    /// A `MaintenanceError` as its exit code; anything else unchanged.
    static func failure(_ error: any Error) -> any Error {
        guard let error = error as? MaintenanceError else { return error }
        switch error {
        case .cluster: return CommandFailure(code: RolloutExitCode.unreachable, message: error.description)
        case .unreadableRecord, .disableInterrupted, .configMapGone, .tooManyObjects:
            return CommandFailure(code: RolloutExitCode.refused, message: error.description)
        case .lockLost: return CommandFailure(code: RolloutExitCode.leaseHeld, message: error.description)
        }
    }
}
