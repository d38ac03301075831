import ArgumentParser
import Foundation
import UpkeepFleet
import UpkeepKube
import UpkeepNotify
import UpkeepPOSIX
import UpkeepRollout
import UpkeepRuntime
import UpkeepStore

/// `upkeep abandon`: give up an unfinished rollout that cannot or should not be carried on (a
/// gate that will never open, a node replaced by hand), so a new `apply` can plan from the
/// cluster as it is. Nothing on any node is changed: what the rollout left behind is listed.
struct Abandon: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Give up the unfinished rollout: record it as abandoned and leave every node as it is.",
        discussion: """
            Takes the state directory's lease first, so a process of this controller still driving the rollout is never \
            raced (exit 6; --force-takeover only when that process is gone). Sends nothing to agents: nodes Upkeep \
            cordoned stay cordoned and installs not yet committed are left to their agent's watchdog; each is listed. \
            A cluster Lease kube-system/upkeep still naming this controller (left by a killed operation) is given back, \
            so another controller need not wait for it to lapse. Exit codes: 0 abandoned, 2 usage or nothing to abandon, \
            5 not confirmed, 6 lease held, 9 state database.
            """
    )

    @OptionGroup var configOption: ConfigOption

    @Argument(help: "The rollout id (default: the newest unfinished rollout).")
    var id: String?

    @Option(name: .long, help: "Why, recorded in the history (default: \"abandoned by the operator\").")
    var reason: String?

    @Flag(name: .long, help: "Do not ask for confirmation.")
    var yes = false

    @Flag(name: .customLong("force-takeover"), help: "Take the controller lease even if another controller holds it (only when that one is gone).")
    var forceTakeover = false

    func validate() throws {
        if let reason, reason.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            throw ValidationError("--reason is empty: say why the rollout is given up, or leave the option out")
        }
    }

    func run() async throws {
        let config = try configOption.load()
        let store = try openStateStore(config)
        let record: RolloutRecord
        if let id {
            do {
                record = try store.rollout(id: id).record
            } catch .unknownRollout {
                throw CommandFailure(code: RolloutExitCode.usage, message: "no rollout \(id); `upkeep history` lists them")
            } catch {
                throw CommandFailure(code: RolloutExitCode.state, message: error.description)
            }
        } else {
            guard let unfinished = try storeCall({ try store.unfinishedRollout() }) else {
                throw CommandFailure(code: RolloutExitCode.usage, message: "no unfinished rollout to abandon; `upkeep history` lists the finished ones")
            }
            record = unfinished
        }
        if record.outcome != nil {
            throw CommandFailure(code: RolloutExitCode.usage, message: "rollout \(record.id) has already finished (\(record.outcomeText)); nothing to abandon")
        }
        print("rollout \(record.id) \(record.from) -> \(record.target): \(record.outcomeText)")
        if !yes {
            print("abandoning it stops Upkeep tracking it; nodes stay as they are and nothing is rolled back")
            try Apply.confirm(record.id)
        }
        // Read before anything changes: a sink's secret that cannot be used refuses now.
        let deliverer = try NotificationRun.deliverer(config, store: store)
        let result: (engine: RolloutEngine, notices: [Notice])
        let configuration = RuntimeConfiguration(forceTakeover: forceTakeover)
        do {
            result = try RolloutRuntime.abandon(store: store, configuration: configuration,
                                                rolloutID: record.id, reason: reason ?? "abandoned by the operator")
        } catch {
            switch error {
            case .store(.leaseHeld): throw CommandFailure(code: RolloutExitCode.leaseHeld, message: error.description)
            case .store(.rolloutFinished), .store(.unknownRollout): throw CommandFailure(code: RolloutExitCode.usage, message: error.description)
            default: throw CommandFailure(code: RolloutExitCode.state, message: error.description)
            }
        }
        for notice in result.notices {
            print("\(notice.level.rawValue): \(notice.node.map { "\($0): " } ?? "")\(notice.message)")
        }
        if let period = try? store.openMaintenancePeriod(), period.rollout == record.id {
            print("warning: maintenance mode \(period.id), switched on for this rollout, stays on (\(period.suspended.count) Flux objects suspended); "
                  + "`upkeep maintenance disable` resumes them")
        }
        print(await Self.releaseLeftoverLease(config, store: store, configuration: configuration))
        // The rollout's end (rollout.failed, outcome abandoned) is told before the command ends.
        if let deliverer {
            await deliverer.start()
            await NotificationRun.finish(deliverer)
        }
    }

    /// Gives back the cluster Lease if it still names this controller (an operation killed before
    /// it could), holding this state directory's lease meanwhile; says what happened.
    static func releaseLeftoverLease(_ config: ControllerConfig, store: StateStore, configuration: RuntimeConfiguration) async -> String {
        let access = ClusterLeaseAccess.standalone(config, store: store)
        guard let lease = access.lease, let client = access.client else {
            return "note: the cluster Lease \(ClusterLease.lockName) was not looked at (\(access.problem ?? "no kubeconfig")); if this controller held it, it lapses by itself"
        }
        let said: String
        do {
            try store.acquireLease(holder: configuration.holder, ttlMilliseconds: configuration.leaseTTLMilliseconds, now: .wallClockNow())
            do {
                if let holder = try await lease.releaseLeftover() {
                    said = "gave back the cluster Lease \(ClusterLease.lockName), which \(holder) had left"
                } else {
                    said = "the cluster Lease \(ClusterLease.lockName) does not name this controller"
                }
            } catch {
                said = "note: \(error); if this controller held it, it lapses by itself"
            }
            try? store.releaseLease(holder: configuration.holder)
        } catch {
            said = "note: the cluster Lease \(ClusterLease.lockName) was not looked at: \(error)"
        }
        await client.shutdown()
        return said
    }
}
