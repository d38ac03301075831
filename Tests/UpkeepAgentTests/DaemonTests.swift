import Foundation
import NIOCore
import NIOPosix
import Testing
import UpkeepAgent
import UpkeepPKI
import UpkeepProtocol
import UpkeepTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// The real `upkeep-agent run` process: it tells systemd READY=1 over NOTIFY_SOCKET once started
/// and serves controllers over mutual TLS on its configured port, a SQLite backup included.
@Suite(.serialized) struct DaemonTests {
    @Test func runSendsReadyAndServesAControllerOverTLS() async throws {
        let node = try FakeK3sNode(liveVersion: v1)
        try await node.startK3s()
        // A SQLite datastore, so that the backup below runs the daemon's own dlopen of libsqlite3
        // (the agent does not link it; this test process does, through the sandbox).
        try sqliteDatastore(on: node, rows: 1)
        try await withDaemon(on: node) { pki, port in
            let client = try await ProtocolClient.connect(host: "127.0.0.1", port: port, security: try pki.controllerSecurity())
            let status = try await client.call(StatusRequest(), deadline: .now + .seconds(30))
            #expect(status.agent.nodeName == "node-1" && status.agent.k3sVersion == v1 && status.unit.activeState == "active")
            let (backup, received) = try await download(BackupRequest(operationID: "backup-1"), from: client)
            #expect(backup.format == .sqliteTar && received.count == Int(backup.bytes) && !received.isEmpty)
            await client.close()
        }
    }

    /// A backup holds the datastore and the token: it is 0600 in a 0700 directory while the node
    /// keeps it, and gone once it was downloaded to its end; one whose download stopped halfway
    /// stays until the next backup (or its retention, `BackupTests`).
    @Test func aBackupLeavesTheNodeOnceDownloaded() async throws {
        let node = try FakeK3sNode(liveVersion: v1)
        try await node.startK3s()
        // Larger than the smallest download window, so a download can stop halfway.
        try sqliteDatastore(on: node, rows: 20_000)
        let backups = "\(node.dataDir)/backups"
        func files() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: backups).sorted() }
        try await withDaemon(on: node) { pki, port in
            let client = try await ProtocolClient.connect(host: "127.0.0.1", port: port, security: try pki.controllerSecurity())
            let (first, received) = try await download(BackupRequest(operationID: "backup-1"), from: client)
            #expect(received.count == Int(first.bytes) && first.bytes > Int64(StreamWindow.bytesMin))
            let afterDownload = try files()
            #expect(afterDownload.isEmpty, "the downloaded backup is still on the node: \(afterDownload)")
            #expect(try mode(backups) == 0o700)
            do {
                _ = try await download(BackupRequest(operationID: "backup-1"), from: client)
                Issue.record("a repeat of a downloaded backup's id should be refused")
            } catch ProtocolError.remote(let error) {
                #expect(error.code == .notFound && error.message.contains("take a new one"), "\(error)")
            }

            // A download that stops after its first chunk leaves the file, private.
            var small = ClientConfiguration()
            small.streamWindowBytes = StreamWindow.bytesMin
            let slow = try await ProtocolClient.connect(host: "127.0.0.1", port: port, security: try pki.controllerSecurity(), configuration: small)
            let partial = try await slow.withCall(BackupRequest(operationID: "backup-2", name: "halfway"), deadline: .now + .seconds(60)) { call in
                let result = try await call.response()
                var iterator = call.download.makeAsyncIterator()
                _ = try await iterator.next()
                return result
            }
            await slow.close()
            #expect(try files() == [partial.fileName])
            #expect(try mode("\(backups)/\(partial.fileName)") == 0o600)

            // The next backup replaces it, and leaves with its own download.
            let (third, _) = try await download(BackupRequest(operationID: "backup-3", name: "next"), from: client)
            #expect(third.fileName != partial.fileName)
            let left = try files()
            #expect(left.isEmpty, "the downloaded backup is still on the node: \(left)")
            await client.close()
        }
    }

    // MARK: Helpers

    /// A kine-shaped SQLite datastore of `rows` rows, and the token beside it.
    func sqliteDatastore(on node: FakeK3sNode, rows: Int) throws {
        let db = "\(node.root)/k3s/server/db"
        try FileManager.default.createDirectory(atPath: db, withIntermediateDirectories: true)
        let created = try runProcess("sqlite3", ["\(db)/state.db", "CREATE TABLE kine(id INTEGER PRIMARY KEY, name TEXT); "
                                                  + "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < \(rows)) "
                                                  + "INSERT INTO kine(name) SELECT '/registry/a/' || i || '/' || hex(randomblob(40)) FROM n;"])
        try #require(created.status == 0, "\(created.error)")
        _ = try node.directory.write("K10secret::server:token\n", to: "k3s/server/token")
    }

    /// Runs `call` to the end of its download; its result and the bytes.
    func download(_ request: BackupRequest, from client: ProtocolClient) async throws -> (BackupResult, [UInt8]) {
        try await client.withCall(request, deadline: .now + .seconds(60)) { call in
            let result = try await call.response()
            var received: [UInt8] = []
            _ = try await call.download.consume { received += $0.readableBytesView }
            return (result, received)
        }
    }

    /// Runs `upkeep-agent run` on `node` with mutual TLS on a free port until `body` returns.
    func withDaemon(on node: FakeK3sNode, _ body: (AgentPKI, Int) async throws -> Void) async throws {
        let pki = try AgentPKI(in: node.directory.file("pki"))
        let port = try FakeK3sNode.freePort()
        let yaml = node.configYAML() + """
            listen: {address: 127.0.0.1, port: \(port)}
            tls: {ca: \(pki.directory.caCertificatePath), certificate: \(pki.agent.certificatePath), key: \(pki.agent.keyPath)}

            """
        let config = try node.directory.write(yaml, to: "agent.yaml")
        let notify = node.directory.file("notify")
        let socket = try NotifyListener(path: notify)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try AgentBinary.path())
        process.arguments = ["run", "--config", config]
        process.environment = ["NOTIFY_SOCKET": notify, "WATCHDOG_USEC": "400000", "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // SIGKILL: a child started from a test thread inherits a mask that blocks SIGTERM.
        defer {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        let first = socket.receive()
        #expect(first?.hasPrefix("READY=1") == true, "\(first ?? "nothing")")
        #expect(socket.receive() == "WATCHDOG=1")
        try await body(pki, port)
    }
}

/// A datagram socket bound at `path`, standing in for systemd's notification socket.
final class NotifyListener {
    private let descriptor: Int32

    init(path: String) throws {
        let descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        self.descriptor = descriptor
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else { throw FileSystemError("bind", path) }
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(descriptor) }

    func receive() -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
        return count >= 0 ? String(decoding: buffer[0..<count], as: UTF8.self) : nil
    }
}
