#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import UpkeepAgentCore
import UpkeepCore

/// A stopped server's datastore changed as k3s documents a restore
/// (https://docs.k3s.io/datastore/backup-restore, https://docs.k3s.io/upgrades/roll-back): a
/// received backup restored (etcd: `k3s server --cluster-reset --cluster-reset-restore-path`;
/// SQLite: `server/db/state.db` and `server/token` put back), or `server/db` deleted so the server
/// rejoins the restored cluster. Received backups are `<restoreDir>/<sha256>.<format>`, 0600 in a
/// 0700 directory, until a restore used them (`PlaintextRetention` sweeps what is left).
public struct DatastoreRestore: Sendable {
    /// What k3s prints when `--cluster-reset` is done; the reset counts only with it.
    public static let resetLine = "Managed etcd cluster membership has been reset"
    static let stateDB = "server/db/state.db"
    static let token = "server/token"

    public let k3sBinary: String
    public let k3sDataDir: String
    public let restoreDir: String
    /// The bound on `k3s server --cluster-reset`; reaching it is counted in `limits`.
    public let timeoutSeconds: Double
    public let limits: AgentLimits?

    public init(k3sBinary: String, k3sDataDir: String, restoreDir: String, timeoutSeconds: Double = 600, limits: AgentLimits? = nil) {
        self.k3sBinary = k3sBinary
        self.k3sDataDir = k3sDataDir
        self.restoreDir = restoreDir
        self.timeoutSeconds = timeoutSeconds
        self.limits = limits
    }

    public func path(sha256: String, format: BackupReport.Format) -> String { "\(restoreDir)/\(sha256).\(format.rawValue)" }

    /// The received backup with this digest and its format, if it is here.
    public func received(_ sha256: String) -> BackupReport.Format? {
        [BackupReport.Format.etcdSnapshot, .sqliteTar].first { FileSystem.exists(path(sha256: sha256, format: $0)) }
    }

    /// Removes every received backup but `keeping` (a new one replaces the others).
    public func removeReceived(except keeping: String? = nil) {
        for name in (try? FileSystem.list(restoreDir)) ?? [] where !name.hasPrefix(".") {
            if let keeping, name.hasPrefix("\(keeping).") { continue }
            unlink("\(restoreDir)/\(name)")
        }
    }

    /// Removes the received backup with this digest (a restore used it).
    public func remove(_ sha256: String) {
        for format in [BackupReport.Format.etcdSnapshot, .sqliteTar] { unlink(path(sha256: sha256, format: format)) }
    }

    /// A SQLite backup must hold the database and the token, or it cannot be restored.
    static func checkSQLiteTar(_ path: String) throws(AgentFailure) {
        let tar = try TarReader(path: path)
        let missing = [stateDB, token].filter { tar.member($0) == nil }
        guard missing.isEmpty else {
            throw AgentFailure(.badRequest, "the sqliteTar backup lacks \(missing.joined(separator: " and ")); send the file `backup` produced on a SQLite server")
        }
    }

    /// Restores the received backup into the stopped server's datastore.
    public func restore(sha256: String, format: BackupReport.Format) async throws(AgentFailure) {
        let file = path(sha256: sha256, format: format)
        guard FileSystem.exists(file) else {
            throw AgentFailure(.notFound, "the received backup \(sha256) is gone from \(restoreDir); send it again with restoreBackup")
        }
        switch format {
        case .etcdSnapshot:
            let (limits, timeoutSeconds) = (limits, timeoutSeconds)
            let outcome = try await ProcessRunner.run(k3sBinary, ["server", "--cluster-reset", "--cluster-reset-restore-path=\(file)",
                                                                  "--data-dir=\(k3sDataDir)"], timeoutSeconds: timeoutSeconds) {
                limits?.record(.clusterReset, "k3s server --cluster-reset ran \(Int(timeoutSeconds)) s, its bound, and was stopped; the restore failed "
                               + "and k3s stays stopped. Look at why etcd did not reset (the k3s output in the agent's log, free space in "
                               + "\(k3sDataDir)/server/db), then send the restore again")
            }
            guard outcome.succeeded, outcome.output.contains(Self.resetLine) || outcome.error.contains(Self.resetLine) else {
                throw AgentFailure(.conflict, "k3s server --cluster-reset --cluster-reset-restore-path=\(file) did not reset the cluster "
                                   + "(exit \(outcome.exitCode.map(String.init) ?? "by signal")): \(outcome.summary)")
            }
        case .sqliteTar:
            let tar = try TarReader(path: file)
            guard let database = tar.member(Self.stateDB), let token = tar.member(Self.token) else {
                throw AgentFailure(.badRequest, "the received backup \(sha256) lacks \(Self.stateDB) or \(Self.token)")
            }
            let db = "\(k3sDataDir)/server/db"
            do { try FileSystem.makeDirectories(db) } catch { throw .io(error) }
            try put(database, of: tar, at: "\(k3sDataDir)/\(Self.stateDB)")
            for suffix in ["-wal", "-shm"] {
                do { try FileSystem.removeIfPresent("\(k3sDataDir)/\(Self.stateDB)\(suffix)") } catch { throw .io(error) }
            }
            try put(token, of: tar, at: "\(k3sDataDir)/\(Self.token)")
        }
    }

    /// `server/db` deleted (an etcd member's data, or SQLite's files), as k3s documents for the
    /// other servers after a `--cluster-reset`.
    public func clear() throws(AgentFailure) {
        do { try FileSystem.removeTree("\(k3sDataDir)/server/db") } catch { throw .io(error) }
    }

    /// The member written beside `destination` and renamed over it.
    private func put(_ member: TarReader.Member, of tar: TarReader, at destination: String) throws(AgentFailure) {
        let temporary = "\(PathName.directory(destination))/.\(PathName.base(destination)).upkeep-restore"
        try tar.extract(member, to: temporary)
        do {
            try FileSystem.publish(temporary, over: destination)
        } catch {
            unlink(temporary)
            throw .io(error)
        }
    }
}
