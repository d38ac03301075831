import Foundation
import Testing
@testable import UpkeepAgent
import UpkeepAgentCore
import UpkeepTestSupport

@Suite(.serialized) struct BackupTests {
    @Test func etcdServerBacksUpWithEtcdSnapshotSave() async throws {
        let node = try FakeK3sNode(liveVersion: v1)
        try FileManager.default.createDirectory(atPath: "\(node.root)/k3s/server/db/etcd", withIntermediateDirectories: true)
        let service = try await startService(on: node)
        let outcome = try await service.backup(operationID: "backup-1", name: "pre-upgrade")
        guard case .backup(let report) = outcome.body else { Issue.record("no backup report: \(outcome.message)"); return }
        #expect(report.format == .etcdSnapshot)
        #expect(report.fileName.hasPrefix("pre-upgrade-node-1-"))
        let path = await service.datastoreBackup.path(of: report)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "etcd snapshot by \(v1)\n")
        #expect(try FileSystem.sha256(ofFile: path) == report.sha256)
        #expect(try await service.backup(operationID: "backup-1", name: "pre-upgrade") == outcome)
    }

    @Test func sqliteServerBacksUpAnOnlineCopyAndTheToken() async throws {
        let node = try FakeK3sNode(liveVersion: v1)
        let db = "\(node.root)/k3s/server/db"
        try FileManager.default.createDirectory(atPath: db, withIntermediateDirectories: true)
        let created = try runProcess("sqlite3", ["\(db)/state.db", "PRAGMA journal_mode=WAL; CREATE TABLE kine(id INTEGER PRIMARY KEY, name TEXT); "
                                                  + "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 5000) "
                                                  + "INSERT INTO kine(name) SELECT '/registry/pods/' || i FROM n;"])
        try #require(created.status == 0, "\(created.error)")
        _ = try node.directory.write("K10secret::server:token\n", to: "k3s/server/token")
        let service = try await startService(on: node)
        let outcome = try await service.backup(operationID: "backup-1", name: nil)
        guard case .backup(let report) = outcome.body else { Issue.record("no backup report: \(outcome.message)"); return }
        #expect(report.format == .sqliteTar && report.fileName.hasSuffix(".tar"))
        let extracted = try TemporaryDirectory()
        let path = await service.datastoreBackup.path(of: report)
        let untar = try runProcess("tar", ["-xf", path, "-C", extracted.path])
        #expect(untar.status == 0, "\(untar.error)")
        let listing = try runProcess("tar", ["-tvf", path]).output
        #expect(listing.split(separator: "\n").allSatisfy { $0.hasPrefix("-rw-------") }, "\(listing)")
        let count = try runProcess("sqlite3", [extracted.file("server/db/state.db"), "SELECT count(*) FROM kine;"])
        #expect(count.output == "5000\n", "\(count.error)")
        #expect(try String(contentsOfFile: extracted.file("server/token"), encoding: .utf8) == "K10secret::server:token\n")
        // The file and its directory are private; a newer backup replaces it.
        #expect(try mode(path) == 0o600 && mode("\(node.dataDir)/backups") == 0o700)
        var newest = report
        for index in 2...4 {
            guard case .backup(let next) = try await service.backup(operationID: "backup-\(index)", name: "b\(index)").body else { continue }
            newest = next
        }
        let kept = try FileManager.default.contentsOfDirectory(atPath: "\(node.dataDir)/backups")
        #expect(kept == [newest.fileName], "\(kept)")
    }

    /// What downloads and restores leave behind (`PlaintextRetention`): removed 24 hours after it
    /// was written, the temporary files of an interrupted run at start, in both directories;
    /// a directory others could enter is closed again.
    @Test func plaintextLeftOnTheNodeIsRemovedAfterItsRetention() throws {
        let directory = try TemporaryDirectory()
        let retention = PlaintextRetention(dataDir: directory.path)
        let now: Int64 = 2_000_000_000_000
        let hour: Int64 = 3_600_000
        for path in retention.directories { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) }
        chmod(retention.backupDir, 0o755)
        func file(_ path: String, writtenHoursAgo hours: Int64) throws -> String {
            try "plaintext".write(toFile: path, atomically: false, encoding: .utf8)
            let seconds = (now - hours * hour) / 1000
            var times = [timespec(tv_sec: Int(seconds), tv_nsec: 0), timespec(tv_sec: Int(seconds), tv_nsec: 0)]
            try #require(utimensat(AT_FDCWD, path, &times, 0) == 0, "utimensat \(path)")
            return path
        }
        let fresh = try file("\(retention.backupDir)/pre-upgrade-node-1-1.tar", writtenHoursAgo: 23)
        let old = try file("\(retention.backupDir)/pre-upgrade-node-1-0.tar", writtenHoursAgo: 25)
        let received = try file("\(retention.restoreDir)/\(String(repeating: "a", count: 64))", writtenHoursAgo: 24)
        let leftover = try file("\(retention.backupDir)/.state.db.copy", writtenHoursAgo: 0)

        let running = retention.sweep(nowUnixMs: now, leftovers: false)
        #expect(Set(running.removed) == [old, received] && running.failures.isEmpty, "\(running)")
        #expect(FileManager.default.fileExists(atPath: fresh) && FileManager.default.fileExists(atPath: leftover))
        #expect(try mode(retention.backupDir) == 0o700)

        let atStart = retention.sweep(nowUnixMs: now, leftovers: true)
        #expect(atStart.removed == [leftover], "\(atStart)")
        #expect(retention.sweep(nowUnixMs: now + 1 * hour, leftovers: false).removed == [fresh])
    }


    /// libsqlite3 is loaded on the first SQLite backup, not linked: the library resolves, and one
    /// that is not installed is an error that says what to install.
    @Test func sqliteIsLoadedWhenNeededAndItsAbsenceSaysWhatToInstall() throws {
        let library = try SQLiteLibrary.shared.get()
        #expect(library.errmsg(nil) != nil)
        #expect(throws: AgentFailure.self) { try SQLiteLibrary("libupkeep-absent-sqlite.so.0") }
        do {
            _ = try SQLiteLibrary("libupkeep-absent-sqlite.so.0")
        } catch {
            #expect(error.code == .io)
            #expect(error.message.contains("apt install libsqlite3-0"), "\(error)")
        }
    }

    @Test func agentNodeHasNoDatastoreToBackUp() async throws {
        let node = try FakeK3sNode(liveVersion: v1)
        let service = try await startService(on: node)
        let outcome = try await service.backup(operationID: "backup-1", name: nil)
        #expect(outcome.failure == .notFound && outcome.message.contains("agents have none"))
    }
}

/// The permission bits of `path`.
func mode(_ path: String) throws -> mode_t {
    var status = stat()
    try #require(stat(path, &status) == 0, "stat \(path)")
    return status.st_mode & 0o7777
}
