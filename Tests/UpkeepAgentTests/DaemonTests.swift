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
        let db = "\(node.root)/k3s/server/db"
        try FileManager.default.createDirectory(atPath: db, withIntermediateDirectories: true)
        let created = try runProcess("sqlite3", ["\(db)/state.db", "CREATE TABLE kine(id INTEGER PRIMARY KEY, name TEXT); INSERT INTO kine(name) VALUES ('/registry/a');"])
        try #require(created.status == 0, "\(created.error)")
        _ = try node.directory.write("K10secret::server:token\n", to: "k3s/server/token")
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
        let client = try await ProtocolClient.connect(host: "127.0.0.1", port: port, security: try pki.controllerSecurity())
        let status = try await client.call(StatusRequest(), deadline: .now + .seconds(30))
        #expect(status.agent.nodeName == "node-1" && status.agent.k3sVersion == v1 && status.unit.activeState == "active")
        let (backup, received) = try await client.withCall(BackupRequest(operationID: "backup-1"), deadline: .now + .seconds(60)) { call in
            let result = try await call.response()
            var received: [UInt8] = []
            _ = try await call.download.consume { received += $0.readableBytesView }
            return (result, received)
        }
        #expect(backup.format == .sqliteTar && received.count == Int(backup.bytes) && !received.isEmpty)
        await client.close()
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
