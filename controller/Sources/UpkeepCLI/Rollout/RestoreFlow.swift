import Foundation
import UpkeepCore
import UpkeepFleet
import UpkeepRollout
import UpkeepStore

/// `upkeep rollback --restore`: what it will restore and lose, the typed confirmation, then the
/// engine's restore procedure run by the runtime (docs/planning.md, "The restore procedure").
enum RestoreFlow {
    static func rollbackRestore(config: ControllerConfig, store: StateStore, rolloutID: String?, change: ChangeOptions) async throws -> Int32 {
        let newest = try storeCall { try store.history(limit: 1).first }
        guard let id = rolloutID ?? newest?.id else {
            throw CommandFailure(code: RolloutExitCode.usage, message: "no rollout recorded; nothing to restore (`upkeep recover --from-backup` restores a backup by itself)")
        }
        let engine = try storeCall { try store.engine(rolloutID: id) }
        if let newest, newest.id != id {
            throw CommandFailure(code: RolloutExitCode.refused,
                                 message: "refused: rollout \(newest.id) was made after \(id); restoring \(id)'s snapshot would undo it as well. "
                                     + "Restore \(newest.id) first; nothing was changed")
        }
        guard case .ready(let hop, let snapshot) = engine.restoreChoice else {
            if case .refused(let why) = engine.restoreChoice {
                throw CommandFailure(code: RolloutExitCode.refused, message: "refused: \(why); nothing was changed")
            }
            preconditionFailure("a restore choice is ready or refused")
        }
        guard let record = try storeCall({ try store.backup(id: snapshot.backupID) }), FileManager.default.fileExists(atPath: record.path) else {
            throw CommandFailure(code: RolloutExitCode.refused,
                                 message: "refused: the sealed file of backup \(snapshot.backupID) is gone from the state directory; "
                                     + "restore another backup with `upkeep recover --from-backup ID|FILE`; nothing was changed")
        }
        print(describe(rolloutID: id, plan: engine.plan, hop: hop, snapshot: snapshot, record: record), terminator: "")
        if change.dryRun {
            print("dry run: nothing was changed")
            return RolloutExitCode.done
        }
        if !change.yes { try Apply.confirm(snapshot.backupID) }
        return try await ClusterSession.with(config) { session in
            try await RolloutDriver(session: session, store: store, forceTakeover: change.forceTakeover)
                .run(.restore(id), reading: try await session.read())
        }
    }

    /// What the restore does and what is lost, for the confirmation.
    static func describe(rolloutID: String, plan: Plan, hop: Int, snapshot: RestoreSnapshot, record: BackupRecord) -> String {
        let target = hop <= plan.hops.count ? " (to \(plan.hops[hop - 1].version))" : ""
        let taken = MaintenanceWindowClock.text(snapshot.takenAt)
        return """
            Rollback of rollout \(rolloutID), hop \(hop)\(target), by restoring its datastore snapshot \
            (https://docs.k3s.io/upgrades/roll-back):
              backup \(snapshot.backupID): \(record.format) of \(snapshot.node) at \(snapshot.version), taken \(taken), \
            \(Backups.byteCount(record.bytes))
              every object written to the cluster since \(taken) is lost (workloads applied, secrets and config maps changed, \
            Flux reconciliations); Upkeep cannot bring them back
              steps: stage the old k3s on every server and stream the backup to the restoring server (nothing stops before \
            that is complete); drain every node; stop k3s on every server; restore the snapshot on the first server; clear \
            and rejoin the other servers one at a time; return the hop's agents; uncordon; wait for every node Ready

            """
    }
}
