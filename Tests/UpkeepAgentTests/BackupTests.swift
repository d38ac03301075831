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
        // Older backups beyond the bound are removed.
        for index in 2...4 { _ = try await service.backup(operationID: "backup-\(index)", name: "b\(index)") }
        let kept = try FileManager.default.contentsOfDirectory(atPath: "\(node.dataDir)/backups").filter { !$0.hasPrefix(".") }
        #expect(kept.count == DatastoreBackup.keptMax, "\(kept)")
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
