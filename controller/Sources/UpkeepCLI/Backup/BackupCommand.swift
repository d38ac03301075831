import ArgumentParser
import Foundation
import UpkeepRollout
import UpkeepCore
import UpkeepFleet
import UpkeepProtocol
import UpkeepStore
import UpkeepPOSIX

/// Taking, keeping and opening sealed datastore backups, for `apply`, `rollback` and `upkeep backup`.
enum Backups {
    static func vault(_ config: ControllerConfig, stateDirectory: String) -> BackupVault {
        BackupVault(directory: "\(stateDirectory)/backups", keyFile: config.backups.keyFile ?? "\(stateDirectory)/backup.key")
    }

    /// Takes a backup from the first server (in name order, Ready ones first) whose agent gives
    /// one, seals it, records it, and keeps only the newest `backups.kept`.
    static func take(id: String, session: ClusterSession, store: StateStore, reading: FleetReading) async throws -> BackupRecord {
        let servers = reading.nodes.map(\.node).filter { $0.role == .server }
            .sorted { ($0.ready ? 0 : 1, $0.name) < ($1.ready ? 0 : 1, $1.name) }
        let catalog = StoreBackupCatalog(store: store, config: session.config, stateDirectory: session.stateDirectory)
        let fleet = try await session.fleet(for: reading)
        let taken: TakenBackup
        do {
            taken = try await BackupTaker(fleet: fleet, vault: catalog.vault, timeoutSeconds: catalog.timeoutSeconds)
                .take(id: id, servers: servers.map(\.name), now: { Instant.wallClockNow().milliseconds })
        } catch {
            throw CommandFailure(code: RolloutExitCode.refused, message: "backup: \(error)")
        }
        let version = servers.first { $0.name == taken.node }?.version
        do {
            try catalog.record(taken, purpose: BackupPurpose(rolloutID: nil, hop: nil, k3sVersion: version))
            guard let record = try store.backup(id: taken.id) else { throw StoreError.unknownRollout(taken.id) }
            return record
        } catch {
            unlink(taken.path)
            throw CommandFailure(code: RolloutExitCode.state, message: "\(error)")
        }
    }

    /// The backup before a Longhorn or Flux update commits (`backups.beforeUpdate`), as a
    /// rollout takes one before its first server: from a server's agent, sealed, recorded, the
    /// oldest pruned. A failure is told (`backup.failed`) and refuses the update (exit 5).
    static func beforeUpdate(_ updateID: String, session: ClusterSession, store: StateStore) async throws -> String {
        // Its own suffix: `backup now` names its backups from the same clock second (b<time>),
        // and an agent refuses an id it has used.
        let id = updateID.replacingOccurrences(of: "u", with: "b", options: .anchored) + "-update"
        print("taking a datastore backup before the commit (backups.beforeUpdate)")
        do {
            let record = try await take(id: id, session: session, store: store, reading: try await session.read())
            prune(store: store, keep: session.config.backups.kept)
            print(describe(record))
            return record.id
        } catch {
            let reason = (error as? CommandFailure)?.message ?? "\(error)"
            _ = try? store.emit(.backupFailed, summary: "The datastore backup \(id) before update \(updateID) failed: \(reason)",
                                details: ["backup": id, "update": updateID, "reason": reason], now: .wallClockNow())
            throw CommandFailure(code: RolloutExitCode.refused,
                                 message: "refused: the datastore backup before the update failed (\(reason)); nothing was committed. Fix the "
                                     + "agents (`upkeep agents`), or set backups.beforeUpdate: false to update without one")
        }
    }

    /// Removes sealed files and records beyond the newest `keep`, but never the hop snapshots of
    /// the newest rollout or of one not finished: `upkeep rollback --restore` needs them.
    static func prune(store: StateStore, keep: Int) {
        guard let all = try? store.backups(limit: 100_000), all.count > keep else { return }
        var needed = Set<String>()
        if let newest = try? store.history(limit: 1).first { needed.insert(newest.id) }
        if let unfinished = try? store.unfinishedRollout() { needed.insert(unfinished.id) }
        let old = Array(all.dropFirst(keep)).filter { backup in backup.rolloutID.map { !needed.contains($0) } ?? true }
        for backup in old { unlink(backup.path) }
        try? store.deleteBackups(ids: old.map(\.id))
    }

    static func describe(_ record: BackupRecord) -> String {
        "backup \(record.id) of \(record.node)'s datastore (\(record.format), \(byteCount(record.bytes)), sha256 \(record.sha256.prefix(16))…) "
            + "sealed in \(record.path)"
    }

    static func byteCount(_ bytes: Int64) -> String {
        bytes >= 1 << 20 ? String(format: "%.1f MiB", Double(bytes) / 1_048_576) : String(format: "%.1f KiB", Double(bytes) / 1024)
    }
}

/// `upkeep backup`: take, list and open sealed datastore backups.
struct BackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Take, list and open the sealed datastore backups Upkeep keeps (one is taken before every rollout).",
        subcommands: [BackupNow.self, BackupList.self, BackupOpen.self]
    )
}

struct BackupNow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "now",
        abstract: "Take a backup of the k3s datastore now (etcd snapshot, or the SQLite datastore with its token), sealed with the backup key."
    )

    @OptionGroup var configOption: ConfigOption

    func run() async throws {
        let config = try configOption.load()
        let store = try openStateStore(config)
        let id = RolloutDriver.newRolloutID().replacingOccurrences(of: "r", with: "b", options: .anchored)
        let record = try await NotificationRun.with(config, store: store) {
            do {
                return try await ClusterSession.with(config) { session in
                    try await Backups.take(id: id, session: session, store: store, reading: try await session.read())
                }
            } catch {
                let reason = (error as? CommandFailure)?.message ?? "\(error)"
                _ = try? store.emit(.backupFailed, summary: "The datastore backup \(id) (upkeep backup now) failed: \(reason)",
                                    details: ["backup": id, "reason": reason], now: .wallClockNow())
                throw error
            }
        }
        print(Backups.describe(record))
    }
}

struct BackupList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "The sealed backups, newest first.")

    @OptionGroup var configOption: ConfigOption

    @Option(name: .shortAndLong, help: "table or json.")
    var output = OutputFormat.table

    func run() throws {
        let config = try configOption.load()
        let store = try openStateStore(config)
        let records = try storeCall { try store.backups(limit: 1000) }
        if output == .json {
            print(try jsonText(records), terminator: "")
            return
        }
        guard !records.isEmpty else {
            print("no backups yet; `upkeep apply` takes one before it starts, `upkeep backup now` takes one at once")
            return
        }
        print(renderTable(["ID", "TAKEN", "NODE", "FORMAT", "SIZE", "ROLLOUT", "FILE"], records.map { record in
            [record.id, record.takenAt.utcDescription, record.node, record.format, Backups.byteCount(record.bytes), record.rolloutID ?? "-",
             FileManager.default.fileExists(atPath: record.path) ? record.path : "\(record.path) (missing)"]
        }), terminator: "")
    }
}

struct BackupOpen: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "open",
        abstract: "Decrypt a sealed backup into a file, for a restore (see docs/backups.md).",
        discussion: "The output appears only once the whole file has verified; a damaged file or another key leaves nothing behind."
    )

    @OptionGroup var configOption: ConfigOption

    @Argument(help: "A backup id from `upkeep backup list`, or the path of a sealed .upkb file.")
    var backup: String

    @Option(name: .shortAndLong, help: ArgumentHelp("Where to write the plaintext (mode 0600).", valueName: "PATH"))
    var output: String

    @Flag(name: .long, help: "Replace the output file if it exists.")
    var force = false

    func run() throws {
        let config = try configOption.load()
        let stateDirectory = config.resolvedStateDirectory()
        let vault = Backups.vault(config, stateDirectory: stateDirectory)
        var expected: BackupRecord?
        let path: String
        if backup.contains("/") || backup.hasSuffix(".upkb") {
            path = backup
        } else {
            let store = try openStateStore(config)
            guard let record = try storeCall({ try store.backup(id: backup) }) else {
                throw CommandFailure(code: RolloutExitCode.usage, message: "no backup \(backup); `upkeep backup list` shows them")
            }
            expected = record
            path = record.path
        }
        let opened: (bytes: Int64, sha256: String)
        do {
            opened = try vault.open(path, to: output, replace: force)
        } catch {
            throw CommandFailure(code: RolloutExitCode.usage, message: "\(error)")
        }
        if let expected, expected.sha256 != opened.sha256 {
            unlink(output)
            throw CommandFailure(code: RolloutExitCode.usage,
                                 message: "\(path) decrypted but is not the backup recorded as \(expected.id) (sha256 differs); it was removed")
        }
        print("wrote \(output) (\(Backups.byteCount(opened.bytes)), sha256 \(opened.sha256))")
    }
}
