import Foundation
import NIOCore
import Testing
import UpkeepAgent
import UpkeepPKI
import UpkeepProtocol
import UpkeepTestSupport

/// The restore methods served by the real `upkeep-agent run` process over mutual TLS, on a SQLite
/// server: `operation` answers from the journal, `restoreBackup` keeps the plaintext private and
/// verified, `stopK3s` stops the unit, and `restore` puts the backup's `state.db` and token back
/// and brings k3s up at the staged version (https://docs.k3s.io/datastore/backup-restore).
extension DaemonTests {
    @Test func aSQLiteServerIsRestoredFromAReceivedBackup() async throws {
        let node = try FakeK3sNode(liveVersion: v2)
        try await node.startK3s()
        try sqliteDatastore(on: node, rows: 3)
        let db = "\(node.root)/k3s/server/db/state.db"
        let token = "\(node.root)/k3s/server/token"
        let restoreDir = "\(node.dataDir)/restore"
        func rows() throws -> String {
            let counted = try runProcess("sqlite3", [db, "SELECT count(*) FROM kine;"])
            return counted.output.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        func received() -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: restoreDir)) ?? []).sorted() }
        try await withDaemon(on: node) { pki, port in
            let client = try await ProtocolClient.connect(host: "127.0.0.1", port: port, security: try pki.controllerSecurity())
            let (backup, tar) = try await download(BackupRequest(operationID: "backup-1"), from: client)
            #expect(backup.format == .sqliteTar)

            // operation: the journal's view of a known id, and of one never sent.
            let known = try await client.call(OperationRequest(operationID: "backup-1"), deadline: .now + .seconds(30))
            #expect(known.state == .succeeded && known.method == .backup && known.failure == nil, "\(known)")
            let unknown = try await client.call(OperationRequest(operationID: "never-sent"), deadline: .now + .seconds(30))
            #expect(unknown == OperationResult(state: .unknown))

            // Objects written after the backup, and a changed token: the restore must undo both.
            let written = try runProcess("sqlite3", [db, "INSERT INTO kine(name) VALUES ('/registry/after'); INSERT INTO kine(name) VALUES ('/registry/after2');"])
            try #require(written.status == 0, "\(written.error)")
            try "K10other::server:token\n".write(toFile: token, atomically: true, encoding: .utf8)
            #expect(try rows() == "5")

            // restoreBackup: a wrong digest is refused and keeps nothing; the right one is 0600 in 0700.
            let sha = try #require(SHA256Hex(rawValue: SHA256.hex(tar)))
            let wrong = try #require(SHA256Hex(rawValue: String(repeating: "ab", count: 32)))
            do {
                _ = try await client.call(RestoreBackupRequest(operationID: "receive-bad", sha256: wrong, bytes: Int64(tar.count), format: .sqliteTar, k3sVersion: v1),
                                          upload: ChunkSource(bytes: ByteBuffer(bytes: tar)), deadline: .now + .seconds(60))
                Issue.record("a backup with the wrong digest was accepted")
            } catch ProtocolError.remote(let error) {
                #expect(error.code == .digestMismatch, "\(error)")
            }
            #expect(received().isEmpty, "a refused backup left \(received())")
            let accepted = try await client.call(RestoreBackupRequest(operationID: "receive-1", sha256: sha, bytes: Int64(tar.count), format: .sqliteTar, k3sVersion: v1),
                                                 upload: ChunkSource(bytes: ByteBuffer(bytes: tar)), deadline: .now + .seconds(60))
            #expect(accepted.alreadyReceived == false)
            #expect(received() == ["\(sha.rawValue).sqliteTar"])
            #expect(try mode(restoreDir) == 0o700 && mode("\(restoreDir)/\(sha.rawValue).sqliteTar") == 0o600)

            // stopK3s stops the unit.
            let stopped = try await client.call(StopK3sRequest(operationID: "stop-1"), deadline: .now + .seconds(60))
            #expect(stopped.wasActive)
            #expect(node.runningVersion == nil)
            let again = try await client.call(StopK3sRequest(operationID: "stop-2"), deadline: .now + .seconds(60))
            #expect(!again.wasActive)

            // restore with the staged v1 binary: state.db and the token back, k3s up at v1.
            let artifact = try node.binary(v1)
            let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: artifact.path)))
            let binary = try #require(SHA256Hex(rawValue: artifact.sha256))
            _ = try await client.call(StageRequest(operationID: "stage-1", k3sVersion: v1, sha256: binary, bytes: Int64(bytes.count)),
                                      upload: ChunkSource(bytes: ByteBuffer(bytes: bytes)), deadline: .now + .seconds(60))
            let restored = try await client.call(RestoreRequest(operationID: "restore-1", backupSHA256: sha, binarySHA256: binary, k3sVersion: v1,
                                                                healthTimeoutSeconds: 30), deadline: .now + .seconds(120))
            #expect(restored.k3sVersion == v1 && restored.probe.healthy, "\(restored)")
            #expect(try rows() == "3")
            #expect(try String(contentsOfFile: token, encoding: .utf8) == "K10secret::server:token\n")
            #expect(try mode(token) == 0o600 && mode(db) == 0o600)
            #expect(node.runningVersion == v1)
            #expect(received().isEmpty, "the restored backup's plaintext is still on the node: \(received())")
            let asked = try await client.call(OperationRequest(operationID: "restore-1"), deadline: .now + .seconds(30))
            #expect(asked.state == .succeeded && asked.method == .restore)
            await client.close()
        }
    }
}
