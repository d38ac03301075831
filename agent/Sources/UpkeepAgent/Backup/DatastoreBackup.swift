#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import UpkeepAgentCore

/// Backs up this server's k3s datastore: `k3s etcd-snapshot save` on embedded etcd, otherwise an
/// online SQLite copy plus the cluster token (without which a restore cannot join). Agents have
/// no datastore. The file is 0600 in a 0700 directory and only the newest backup stays: it leaves
/// the node once downloaded (`AgentRequestHandler`) or after `PlaintextRetention.retentionMs`.
public struct DatastoreBackup: Sendable {
    public let k3sBinary: String
    public let k3sDataDir: String
    public let backupDir: String
    public let nodeName: String
    public let timeoutSeconds: Double

    public init(k3sBinary: String, k3sDataDir: String, backupDir: String, nodeName: String, timeoutSeconds: Double = 600) {
        self.k3sBinary = k3sBinary
        self.k3sDataDir = k3sDataDir
        self.backupDir = backupDir
        self.nodeName = nodeName
        self.timeoutSeconds = timeoutSeconds
    }

    public func path(of report: BackupReport) -> String { "\(backupDir)/\(report.fileName)" }

    public func run(name: String, nowUnixMs: Int64) async throws(AgentFailure) -> BackupReport {
        guard !name.isEmpty, name.utf8.count <= 64, name.utf8.allSatisfy({ Self.nameBytes.contains($0) }) else {
            throw AgentFailure(.conflict, "backup name \"\(name)\" must be 1...64 characters from a-z A-Z 0-9 . _ -")
        }
        do { try PlaintextRetention.secure(backupDir) } catch { throw .io(error) }
        let db = "\(k3sDataDir)/server/db"
        let report: BackupReport
        if FileSystem.isDirectory("\(db)/etcd") {
            report = try await etcdSnapshot(name: name)
        } else if FileSystem.exists("\(db)/state.db") {
            report = try sqlite(name: name, nowUnixMs: nowUnixMs)
        } else {
            throw AgentFailure(.notFound, "no k3s datastore under \(db) (neither etcd/ nor state.db): agents have none; back up a server")
        }
        removeOthers(keeping: report.fileName)
        return report
    }

    private static let nameBytes = Set(Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-".utf8))

    private func etcdSnapshot(name: String) async throws(AgentFailure) -> BackupReport {
        let before = Set((try? FileSystem.list(backupDir)) ?? [])
        let outcome = try await ProcessRunner.run(k3sBinary, ["etcd-snapshot", "save", "--name", name, "--dir", backupDir],
                                                  timeoutSeconds: timeoutSeconds)
        guard outcome.succeeded else {
            throw AgentFailure(.io, "k3s etcd-snapshot save failed (exit \(outcome.exitCode.map(String.init) ?? "by signal")): \(outcome.summary)")
        }
        let created = ((try? FileSystem.list(backupDir)) ?? []).filter { !before.contains($0) && $0.hasPrefix("\(name)-") }
        guard created.count == 1, let file = created.first else {
            throw AgentFailure(.io, "k3s etcd-snapshot save succeeded but left \(created.count) new files named \(name)-* in \(backupDir)")
        }
        return try describe(file, format: .etcdSnapshot)
    }

    private func sqlite(name: String, nowUnixMs: Int64) throws(AgentFailure) -> BackupReport {
        let server = "\(k3sDataDir)/server"
        guard FileSystem.exists("\(server)/token") else {
            throw AgentFailure(.notFound, "\(server)/token is missing; a SQLite backup without the token cannot be restored")
        }
        let seconds = Int(nowUnixMs / 1000)
        let copy = "\(backupDir)/.state.db.copy"
        try SQLiteOnlineBackup.copy(from: "\(server)/db/state.db", to: copy)
        defer { unlink(copy) }
        let file = "\(name)-\(nodeName)-\(seconds).tar"
        let temporary = "\(backupDir)/.\(file)"
        let tar = try TarWriter(path: temporary)
        try tar.add(file: copy, as: "server/db/state.db", mode: 0o600, modifiedUnix: seconds)
        try tar.add(file: "\(server)/token", as: "server/token", mode: 0o600, modifiedUnix: seconds)
        try tar.finish()
        do { try FileSystem.publish(temporary, over: "\(backupDir)/\(file)") } catch { throw .io(error) }
        return try describe(file, format: .sqliteTar)
    }

    private func describe(_ file: String, format: BackupReport.Format) throws(AgentFailure) -> BackupReport {
        let path = "\(backupDir)/\(file)"
        chmod(path, 0o600)
        do {
            return BackupReport(format: format, fileName: file, bytes: Int64(try FileSystem.fileStatus(path).st_size),
                                sha256: try FileSystem.sha256(ofFile: path))
        } catch {
            throw .io(error)
        }
    }

    /// A new backup replaces any earlier one whose download never completed.
    private func removeOthers(keeping: String) {
        for name in (try? FileSystem.list(backupDir)) ?? [] where !name.hasPrefix(".") && name != keeping {
            unlink("\(backupDir)/\(name)")
        }
    }
}
