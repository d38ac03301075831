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

    /// About 1,100 plain TCP connections that never send a byte (what held every `upkeep agents`
    /// off an agent, issue 19): they only push each other out of the handshake budget, and a
    /// controller still connects, says Hello and gets a Ping answered within a second. The flood
    /// is counted in the metrics text file and logged a few times, not once per connection.
    @Test func silentConnectionsDoNotKeepTheControllerOut() async throws {
        let node = try FakeK3sNode(liveVersion: v1)
        try await node.startK3s()
        let stderr = node.directory.file("agent.stderr")
        try await withDaemon(on: node, stderr: stderr) { pki, port in
            let flood = SilentConnections()
            defer { flood.closeAll() }
            let opened = flood.open(1_100, port: port)
            #expect(opened == 1_100, "opened \(opened) connections")
            // Let the agent accept them all (a silent peer's connection is accepted by the kernel
            // at once; the agent's accept loop then takes each).
            try await Task.sleep(for: .seconds(2))

            let started = ContinuousClock.now
            let client = try await ProtocolClient.connect(host: "127.0.0.1", port: port, security: try pki.controllerSecurity())
            _ = try await client.ping(deadline: .now + .seconds(1))
            let took = ContinuousClock.now - started
            #expect(took < .seconds(1), "the controller took \(took) to connect and ping")
            await client.close()

            let textfile = "\(node.dataDir)/metrics/upkeep-agent.prom"
            var text = ""
            for _ in 0..<30 {
                text = (try? String(contentsOfFile: textfile, encoding: .utf8)) ?? ""
                if let count = Self.count(text, #"upkeep_agent_limit_reached_total{limit="handshakes_per_source"}"#), count > 1_000 { break }
                try await Task.sleep(for: .milliseconds(200))
            }
            let evicted = Self.count(text, #"upkeep_agent_limit_reached_total{limit="handshakes_per_source"}"#) ?? 0
            #expect(evicted >= 1_100 - 8, "\(text)")
        }
        let lines = (try String(contentsOfFile: stderr, encoding: .utf8)).split(separator: "\n")
        let flood = lines.filter { $0.contains("TLS handshake") }
        #expect(!flood.isEmpty && flood.count <= 3, "\(flood.count) lines about the flood: \(flood.prefix(5))")
        #expect(flood.first?.contains("from 127.0.0.1") == true, "\(flood.first ?? "")")
    }

    /// agent.yaml's `listen:` limits are the ones the running agent keeps: 10 silent connections
    /// through 2 handshakes per address leave 2, closed after the 1 s handshake time; a second
    /// controller beyond `connectionsMax: 1` hears that the agent is at its connection limit.
    @Test func theListenLimitsOfAgentYamlAreKept() async throws {
        let node = try FakeK3sNode(liveVersion: v1)
        try await node.startK3s()
        let limits = ", connectionsMax: 1, handshakesMax: 4, handshakesPerSourceMax: 2, handshakeTimeoutSeconds: 1"
        try await withDaemon(on: node, listenLimits: limits) { pki, port in
            let flood = SilentConnections()
            defer { flood.closeAll() }
            #expect(flood.open(10, port: port) == 10)
            let textfile = "\(node.dataDir)/metrics/upkeep-agent.prom"
            func counts() -> (perSource: Int, timeout: Int, connections: Int) {
                let text = (try? String(contentsOfFile: textfile, encoding: .utf8)) ?? ""
                return (Self.count(text, #"upkeep_agent_limit_reached_total{limit="handshakes_per_source"}"#) ?? -1,
                        Self.count(text, #"upkeep_agent_limit_reached_total{limit="handshake_timeout"}"#) ?? -1,
                        Self.count(text, #"upkeep_agent_limit_reached_total{limit="connections"}"#) ?? -1)
            }
            for _ in 0..<40 where counts().timeout < 2 { try await Task.sleep(for: .milliseconds(100)) }
            #expect(counts().perSource == 8 && counts().timeout == 2, "\(counts())")

            let first = try await ProtocolClient.connect(host: "127.0.0.1", port: port, security: try pki.controllerSecurity())
            _ = try await first.ping(deadline: .now + .seconds(2))
            await #expect {
                let second = try await ProtocolClient.connect(host: "127.0.0.1", port: port, security: try pki.controllerSecurity())
                _ = try await second.ping(deadline: .now + .seconds(2))
            } throws: { error in
                "\(error)".contains("connection limit")
            }
            await first.close()
            for _ in 0..<20 where counts().connections < 1 { try await Task.sleep(for: .milliseconds(100)) }
            #expect(counts().connections == 1, "\(counts())")
        }
    }

    /// Each TLS handshake at the agent's port is counted once, by how it ended, in the metrics
    /// text file: a controller's completes; a plain TCP peer that sends an HTTP request and
    /// `openssl s_client` without a certificate fail (the first of them is logged, the second
    /// within the minute only counted); a silent connection pushed out of the handshake
    /// budget (2 per address here) is displaced. The daemon starts OpenSSL without its error
    /// strings; they are loaded for the first failure, whose log line still reads in words.
    @Test func tlsHandshakesAreCountedByHowTheyEnded() async throws {
        let node = try FakeK3sNode(liveVersion: v1)
        try await node.startK3s()
        let stderr = node.directory.file("agent.stderr")
        try await withDaemon(on: node, stderr: stderr, listenLimits: ", handshakesPerSourceMax: 2, handshakeTimeoutSeconds: 60") { pki, port in
            let textfile = "\(node.dataDir)/metrics/upkeep-agent.prom"
            func handshakes() -> [String: Int] {
                let text = (try? String(contentsOfFile: textfile, encoding: .utf8)) ?? ""
                var counts: [String: Int] = [:]
                for result in ["completed", "failed", "displaced"] {
                    counts[result] = Self.count(text, #"upkeep_agent_tls_handshakes_total{result=""# + result + #""}"#)
                }
                return counts
            }
            /// Polls the file (written at most once a second) until `expected`, for up to 30 s.
            func awaitCounts(_ expected: [String: Int]) async throws {
                for _ in 0..<300 where handshakes() != expected { try await Task.sleep(for: .milliseconds(100)) }
            }
            try await awaitCounts(["completed": 0, "failed": 0, "displaced": 0])
            #expect(handshakes() == ["completed": 0, "failed": 0, "displaced": 0], "written at start: \(handshakes())")

            let client = try await ProtocolClient.connect(host: "127.0.0.1", port: port, security: try pki.controllerSecurity())
            _ = try await client.ping(deadline: .now + .seconds(30))
            await client.close()
            try await awaitCounts(["completed": 1, "failed": 0, "displaced": 0])
            #expect(handshakes() == ["completed": 1, "failed": 0, "displaced": 0], "\(handshakes())")

            let plain = try runProcess("python3", ["-c", """
                import socket
                s = socket.create_connection(("127.0.0.1", \(port)), timeout=30)
                s.sendall(b"GET / HTTP/1.1\\r\\nHost: agent\\r\\n\\r\\n")
                try:
                    while s.recv(4096): pass
                except ConnectionResetError:
                    pass
                """], timeoutSeconds: 60)
            #expect(plain.status == 0, "the agent closes a plain connection: \(plain.error)")
            let sClient = try runProcess("/bin/sh", ["-c", "sleep 1 | openssl s_client -connect 127.0.0.1:\(port) -tls1_3 -CAfile "
                                                      + "\(pki.directory.caCertificatePath) -servername node-1"], timeoutSeconds: 30)
            #expect(sClient.error.contains("alert certificate required"), "\(sClient.error)")
            try await awaitCounts(["completed": 1, "failed": 2, "displaced": 0])
            #expect(handshakes() == ["completed": 1, "failed": 2, "displaced": 0], "\(handshakes())")
            let log = (try? String(contentsOfFile: stderr, encoding: .utf8)) ?? ""
            #expect(log.contains("the peer does not speak TLS (http request)"), "OpenSSL's reason in words: \(log)")

            let silent = SilentConnections()
            defer { silent.closeAll() }
            #expect(silent.open(3, port: port) == 3)
            try await awaitCounts(["completed": 1, "failed": 2, "displaced": 1])
            #expect(handshakes() == ["completed": 1, "failed": 2, "displaced": 1], "\(handshakes())")
        }
    }

    static func count(_ exposition: String, _ series: String) -> Int? {
        exposition.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap { Int($0.dropFirst(series.count + 1)) }
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
    func withDaemon(on node: FakeK3sNode, stderr: String? = nil, listenLimits: String = "",
                    _ body: (AgentPKI, Int) async throws -> Void) async throws {
        let pki = try AgentPKI(in: node.directory.file("pki"))
        let port = try FakeK3sNode.freePort()
        let yaml = node.configYAML() + """
            listen: {address: 127.0.0.1, port: \(port)\(listenLimits)}
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
        if let stderr {
            _ = FileManager.default.createFile(atPath: stderr, contents: nil)
            process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: stderr))
        } else {
            process.standardError = FileHandle.nullDevice
        }
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

/// Plain TCP connections to 127.0.0.1 that send nothing, made without waiting (non-blocking
/// connects), held until `closeAll`.
final class SilentConnections {
    private var descriptors: [Int32] = []

    /// Opens `count` connections to `port`; returns how many were started.
    func open(_ count: Int, port: Int) -> Int {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        for _ in 0..<count {
            let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard descriptor >= 0 else { break }
            _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
            let result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard result == 0 || errno == EINPROGRESS else {
                close(descriptor)
                break
            }
            descriptors.append(descriptor)
        }
        return descriptors.count
    }

    func closeAll() {
        for descriptor in descriptors { close(descriptor) }
        descriptors = []
    }
}
