import Foundation
import UpkeepCore
import UpkeepFleet
import UpkeepProtocol
import UpkeepStore

/// The state database as the agent transport's record of sealed backups: what `backup` takes
/// is recorded here (and older backups pruned), what `restoreBackup` streams is found here.
struct StoreBackupCatalog: BackupCatalog {
    let store: StateStore
    let vault: BackupVault
    let timeoutSeconds: Int
    /// `backups.kept`.
    let kept: Int

    init(store: StateStore, config: ControllerConfig, stateDirectory: String) {
        self.store = store
        vault = Backups.vault(config, stateDirectory: stateDirectory)
        timeoutSeconds = config.backups.timeoutSeconds
        kept = config.backups.kept
    }

    func recorded(id: String) throws -> TakenBackup? {
        guard let record = try store.backup(id: id) else { return nil }
        guard let format = BackupFormat(rawValue: record.format) else {
            throw BackupError("backup \(id) is recorded with the format \(record.format), which this controller cannot restore")
        }
        return TakenBackup(id: record.id, node: record.node, format: format, agentFileName: record.agentFile, path: record.path,
                           bytes: record.bytes, sha256: record.sha256, takenAtUnixMilliseconds: record.takenAt.milliseconds)
    }

    func record(_ backup: TakenBackup, purpose: BackupPurpose) throws {
        try store.recordBackup(BackupRecord(id: backup.id, rolloutID: purpose.rolloutID,
                                            takenAt: Instant(milliseconds: backup.takenAtUnixMilliseconds), node: backup.node,
                                            format: backup.format.rawValue, agentFile: backup.agentFileName, path: backup.path,
                                            bytes: backup.bytes, sha256: backup.sha256, hop: purpose.hop, k3sVersion: purpose.k3sVersion,
                                            kind: purpose.hop == nil ? .manual : .hop))
        Backups.prune(store: store, keep: kept)
    }
}
