import Foundation
import NIOCore
import NIOPosix
import Testing
import UpkeepPKI
@testable import UpkeepTLS
import UpkeepTestSupport

/// The real `openssl` binary as the peer: our server against `s_client`, our client against
/// `s_server -Verify 1 -verify_return_error`.
@Suite(.serialized) struct OpenSSLInteropTests {
    let pki: TestPKI
    let directory: URL

    init() throws {
        pki = try TestPKI()
        directory = try temporaryDirectory()
    }

    /// Runs `openssl s_client` against `port` with `input` on stdin; returns its exit status.
    func sClient(port: Int, identity: (certificate: Certificate, key: PrivateKey)?, input: String) async throws -> Int32 {
        var arguments = ["s_client", "-connect", "127.0.0.1:\(port)", "-tls1_3", "-quiet", "-no_ign_eof",
                         "-verify_return_error"]
        let caPath = directory.appendingPathComponent("ca.crt").path
        try pki.ca.certificate.pem().write(toFile: caPath, atomically: true, encoding: .utf8)
        arguments += ["-CAfile", caPath]
        if let identity {
            let files = try pki.writeFiles(identity, in: directory, name: "client-\(UUID().uuidString)")
            arguments += ["-cert", files.certificate, "-key", files.key]
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        let stdin = Pipe()
        process.standardInput = stdin
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        stdin.fileHandleForWriting.write(Data(input.utf8))
        try stdin.fileHandleForWriting.close()
        return try await waitForExit(process, seconds: 30)
    }

    func agentServer() async throws -> TestServer {
        try await TestServer.start(context: pki.context(.agent, "node-1"), expecting: .roles([.controller]))
    }

    @Test func sClientWithAControllerCertificateCompletesAHandshake() async throws {
        let server = try await agentServer()
        let status = try await sClient(port: server.port, identity: pki.identity(.controller, "controller"), input: "hello\n")
        let observation = await server.nextConnection()
        let done = try await observation.handshakeDone()
        #expect(done.peer == (try PeerIdentity(role: .controller, name: "controller")))
        #expect(done.protocolVersion == "TLSv1.3")
        #expect(status == 0)
        #expect(try await observation.firstError() == nil, "s_client closed with close_notify")
        try await server.stop()
    }

    /// No session is resumable (docs/tls.md): `s_client -msg` sees the whole handshake and no
    /// TLS 1.3 NewSessionTicket after it (OpenSSL sends two unless told none).
    @Test func theServerSendsNoSessionTicket() async throws {
        let server = try await agentServer()
        let caPath = directory.appendingPathComponent("ca.crt").path
        try pki.ca.certificate.pem().write(toFile: caPath, atomically: true, encoding: .utf8)
        let files = try pki.writeFiles(pki.identity(.controller, "controller"), in: directory, name: "tickets")
        // stdin stays open a second, so s_client reads what the server sends after the handshake.
        let result = try runProcess("/bin/sh", ["-c", "sleep 1 | openssl s_client -connect 127.0.0.1:\(server.port) -tls1_3 -msg -CAfile \(caPath) "
                                                + "-cert \(files.certificate) -key \(files.key) -verify_return_error"])
        #expect(result.output.contains("Handshake") && result.output.contains("Finished"), "s_client saw no handshake: \(result.output) \(result.error)")
        #expect(!result.output.contains("NewSessionTicket"), "\(result.output)")
        try await server.stop()
    }

    @Test func sClientWithoutACertificateIsRefused() async throws {
        let server = try await agentServer()
        _ = try await sClient(port: server.port, identity: nil, input: "hello\n")
        #expect(try await (await server.nextConnection()).firstError() == .certificateRefused(.missing))
        try await server.stop()
    }

    @Test func sClientWithAnAgentCertificateIsRefused() async throws {
        let server = try await agentServer()
        _ = try await sClient(port: server.port, identity: pki.identity(.agent, "node-2"), input: "hello\n")
        #expect(try await (await server.nextConnection()).firstError()
            == .certificateRefused(.wrongRole(expected: [.controller], actual: try PeerIdentity(role: .agent, name: "node-2"))))
        try await server.stop()
    }

    @Test func sClientWithACertificateFromAnotherCAIsRefused() async throws {
        let server = try await agentServer()
        let other = try TestPKI(name: "other")
        _ = try await sClient(port: server.port, identity: other.identity(.controller, "controller"), input: "hello\n")
        #expect(try await (await server.nextConnection()).firstError() == .certificateRefused(.unknownCA))
        try await server.stop()
    }

    @Test func ourClientCompletesAHandshakeWithSServerThatRequiresACertificate() async throws {
        let port = try await freePort()
        let agent = try pki.writeFiles(pki.identity(.agent, "node-1"), in: directory, name: "agent")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = ["s_server", "-accept", "127.0.0.1:\(port)", "-tls1_3", "-cert", agent.certificate,
                             "-key", agent.key, "-CAfile", agent.ca, "-Verify", "1", "-verify_return_error", "-rev"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        process.standardInput = Pipe()
        try process.run()
        defer { stop(process) }
        try await waitForListener(port: port, seconds: 20)

        let (channel, observation) = try await connectTLS(port: port, context: pki.context(.controller, "controller"),
                                                          expecting: .identity(try PeerIdentity(role: .agent, name: "node-1")))
        let done = try await observation.handshakeDone()
        #expect(done.peer?.name == "node-1")
        try await channel.writeAndFlush(ByteBuffer(string: "upkeep\n"))
        #expect(String(decoding: try await channel.received(atLeast: 7), as: UTF8.self) == "peekpu\n")
        try await channel.close()
    }

    @Test func sServerRefusesOurClientWithoutAnAcceptableCertificate() async throws {
        let port = try await freePort()
        let agent = try pki.writeFiles(pki.identity(.agent, "node-1"), in: directory, name: "agent2")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = ["s_server", "-accept", "127.0.0.1:\(port)", "-tls1_3", "-cert", agent.certificate,
                             "-key", agent.key, "-CAfile", agent.ca, "-Verify", "1", "-verify_return_error"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        process.standardInput = Pipe()
        try process.run()
        defer { stop(process) }
        try await waitForListener(port: port, seconds: 20)
        let stranger = try TestPKI(name: "stranger")
        let foreign = try stranger.identity(.controller, "controller")
        let context = try TLSContext.internal(ca: [pki.ca.certificate], chain: [foreign.certificate], key: foreign.key)
        let (_, observation) = try await connectTLS(port: port, context: context,
                                                    expecting: .identity(try PeerIdentity(role: .agent, name: "node-1")))
        guard case .alertReceived = try await observation.firstError() else {
            Issue.record("s_server should have refused a certificate from another CA")
            return
        }
    }
}

/// An ephemeral loopback port that was free a moment ago.
func freePort() async throws -> Int {
    let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .bind(host: "127.0.0.1", port: 0).get()
    let port = channel.localAddress!.port!
    try await channel.close()
    return port
}

struct NotReady: Error, CustomStringConvertible { let description: String }

/// Waits (without blocking a thread) until something accepts TCP connections on `port`.
func waitForListener(port: Int, seconds: Double) async throws {
    let deadline = ContinuousClock.now + .seconds(seconds)
    while ContinuousClock.now < deadline {
        if let channel = try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port).get() {
            try? await channel.close()
            return
        }
        try await Task.sleep(for: .milliseconds(50))
    }
    throw NotReady(description: "nothing listened on 127.0.0.1:\(port) within \(seconds) s")
}

/// Waits (without blocking a thread) for `process` to exit; terminates it after `seconds`.
func waitForExit(_ process: Process, seconds: Double) async throws -> Int32 {
    let deadline = ContinuousClock.now + .seconds(seconds)
    while process.isRunning && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
    if process.isRunning { stop(process) }
    return process.isRunning ? -1 : process.terminationStatus
}

/// Ends `process` for sure and within a bound: SIGTERM, then SIGKILL. A child started from a
/// concurrency thread can inherit a mask that blocks SIGTERM, so SIGTERM alone may do nothing.
func stop(_ process: Process) {
    guard process.isRunning else { return }
    process.terminate()
    for _ in 0..<50 where process.isRunning { usleep(10_000) }
    if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    for _ in 0..<200 where process.isRunning { usleep(10_000) }
}
