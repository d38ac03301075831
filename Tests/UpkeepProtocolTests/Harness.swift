import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing
import UpkeepPKI
import UpkeepProtocol
import UpkeepTLS

/// How a test connects: plaintext, or mutual TLS with certificates from a throwaway cluster CA
/// (the agent accepts only controller certificates; the controller expects node-1's agent).
enum Transport: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case plaintext
    case mutualTLS

    var testDescription: String { rawValue }
}

/// A throwaway cluster CA and the contexts of one controller and one agent (node-1).
struct TestCluster: Sendable {
    static let nodeName = "node-1"
    let ca: CertificateAuthority
    let agent: TLSContext
    let controller: TLSContext

    init() throws {
        ca = try CertificateAuthority.create(commonName: "upkeep-protocol-test-ca", keyType: .ecdsaP256, validity: .days(1))
        agent = try Self.context(ca, PeerIdentity(role: .agent, name: Self.nodeName))
        controller = try Self.context(ca, PeerIdentity(role: .controller, name: "controller-1"))
    }

    static func context(_ ca: CertificateAuthority, _ identity: PeerIdentity) throws -> TLSContext {
        let issued = try ca.issue(identity: identity, keyType: .ecdsaP256, validity: .days(1))
        return try TLSContext.internal(ca: [ca.certificate], chain: [issued.certificate], key: issued.key)
    }

    /// One cluster for the whole test run: key generation is the slow part.
    static let shared: TestCluster = {
        do { return try TestCluster() } catch { preconditionFailure("test CA: \(error)") }
    }()

    func serverSecurity(_ transport: Transport) -> ConnectionSecurity {
        switch transport {
        case .plaintext: .plaintext
        case .mutualTLS: .tls(agent, expecting: .roles([.controller]))
        }
    }

    func clientSecurity(_ transport: Transport) throws -> ConnectionSecurity {
        switch transport {
        case .plaintext: .plaintext
        case .mutualTLS: .tls(controller, expecting: .identity(try PeerIdentity(role: .agent, name: Self.nodeName)))
        }
    }
}

/// An agent for tests: canned answers, or whatever `respond` does.
struct TestAgent: RequestHandler {
    static let info = AgentInfo(agentVersion: "0.1.0-test", nodeName: TestCluster.nodeName, arch: "amd64", role: .server,
                                k3sVersion: "v1.30.6+k3s1")
    var respond: @Sendable (IncomingRequest) async throws -> Reply = { request in try await TestAgent.canned(request) }

    func agentInfo() -> AgentInfo { Self.info }

    func handle(_ request: IncomingRequest) async throws -> Reply { try await respond(request) }

    static let probeOK = ProbeResult(healthy: true, checks: [ProbeCheck(name: "unit", ok: true, latencyMs: 1, message: "active")])

    /// Probe opens `entered`, then runs until cancelled and opens `cancelled`; the rest is canned.
    static func hangingProbe(entered: Gate, cancelled: Gate) -> TestAgent {
        TestAgent { request in
            guard case .probe = request.payload else { return try await canned(request) }
            entered.open()
            do {
                try await Task.sleep(for: .seconds(60))
            } catch {
                cancelled.open()
                throw error
            }
            return try await canned(request)
        }
    }

    /// A plausible answer per method; probe echoes `expectedK3sVersion` so multiplexed answers
    /// can be matched to their requests.
    static func canned(_ request: IncomingRequest) async throws -> Reply {
        switch request.payload {
        case .probe(let probe):
            return Reply(.probe(ProbeResult(healthy: true, checks: [
                ProbeCheck(name: "echo", ok: true, latencyMs: 0, message: probe.expectedK3sVersion ?? "")])))
        case .cordon:
            return Reply(.cordon(CordonResult(wasUnschedulable: false)))
        case .stage(let stage):
            guard let summary = try await request.upload.consume({ _ in }) else {
                throw ErrorResponse(.badRequest, "no upload")
            }
            guard summary.sha256 == stage.sha256, summary.bytes == stage.bytes else {
                throw ErrorResponse(.digestMismatch, "upload is \(summary.bytes) bytes with sha256 \(summary.sha256), expected \(stage.bytes) with \(stage.sha256)")
            }
            return Reply(.stage(StageResult(sha256: summary.sha256, bytes: summary.bytes, alreadyStaged: false)))
        default:
            throw ErrorResponse(.notImplemented, "the test agent does not serve \(request.method)")
        }
    }
}

/// A running server plus what tests need around it.
struct Served: Sendable {
    let server: ProtocolServer
    let transport: Transport

    static func start(_ transport: Transport = .plaintext, configuration: ServerConfiguration = ServerConfiguration(),
                      port: Int = 0, agent: TestAgent = TestAgent()) async throws -> Served {
        let server = try await ProtocolServer.bind(host: "127.0.0.1", port: port,
                                                   security: TestCluster.shared.serverSecurity(transport),
                                                   handler: agent, configuration: configuration)
        return Served(server: server, transport: transport)
    }

    func connect(_ configuration: ClientConfiguration = ClientConfiguration()) async throws -> ProtocolClient {
        try await ProtocolClient.connect(host: "127.0.0.1", port: server.port,
                                         security: try TestCluster.shared.clientSecurity(transport),
                                         configuration: configuration)
    }
}

func soon(_ seconds: Double = 10) -> ContinuousClock.Instant {
    .now + .milliseconds(Int(seconds * 1000))
}

/// Polls `condition` until it holds or `seconds` pass.
func eventually(within seconds: Double = 10, _ condition: @Sendable () async -> Bool) async -> Bool {
    let deadline = soon(seconds)
    while ContinuousClock.now < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return await condition()
}

/// Counts events across tasks and lets a test wait for a count.
final class Counter: Sendable {
    private let state = Mutex((value: 0, peak: 0, current: 0))

    func increment() { state.withLock { $0.value += 1 } }
    var value: Int { state.withLock { $0.value } }

    /// For concurrency: enter/leave a section and remember the most inside at once.
    func enter() { state.withLock { $0.current += 1; $0.peak = max($0.peak, $0.current) } }
    func leave() { state.withLock { $0.current -= 1 } }
    var peak: Int { state.withLock { $0.peak } }
}

/// A one-shot signal handlers can wait on.
final class Gate: Sendable {
    private let state = Mutex((open: false, waiters: [CheckedContinuation<Void, Never>]()))

    func open() {
        let waiters = state.withLock { state in
            state.open = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    var isOpen: Bool { state.withLock { $0.open } }

    func wait() async {
        await withCheckedContinuation { continuation in
            let resumeNow = state.withLock { state in
                if state.open { return true }
                state.waiters.append(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }
}

/// A frame-level client for tests that break the rules on purpose: writes any bytes or frames,
/// and decodes what comes back with the real decoder; plaintext, or over the project's own TLS
/// client (`tls`), and able to stop reading (`pauseReading`) as a peer that never calls recv.
final class RawPeer: Sendable {
    private let channel: any Channel
    private let inbox: Inbox

    private final class Inbox: Sendable {
        let state = Mutex((bytes: ByteBuffer(), closed: false))
    }

    private final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let inbox: Inbox
        init(_ inbox: Inbox) { self.inbox = inbox }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var bytes = unwrapInboundIn(data)
            inbox.state.withLock { _ = $0.bytes.writeBuffer(&bytes) }
        }
        func channelInactive(context: ChannelHandlerContext) { inbox.state.withLock { $0.closed = true } }
        func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
    }

    /// `tls`: a client context (the controller's) expecting node-1's agent. `receiveBufferBytes`
    /// shrinks the socket's receive buffer, so that a peer that stops reading holds little in
    /// its kernel and the server's own buffer fills soon.
    init(port: Int, tls: TLSContext? = nil, receiveBufferBytes: Int? = nil) async throws {
        let inbox = Inbox()
        self.inbox = inbox
        var bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        if let receiveBufferBytes { bootstrap = bootstrap.channelOption(.socketOption(.so_rcvbuf), value: SocketOptionValue(receiveBufferBytes)) }
        let agent = try PeerIdentity(role: .agent, name: TestCluster.nodeName)
        channel = try await bootstrap
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(tls.makeClientHandler(expecting: .identity(agent))) }
                    try channel.pipeline.syncOperations.addHandler(Collector(inbox))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
    }

    /// Stops reading from the socket: what the server sends stays in the kernel and then in the
    /// server's buffer.
    func pauseReading() async throws {
        try await channel.setOption(.autoRead, value: false).get()
    }

    /// Reads again (and so notices a close by the server, which a peer that does not read cannot;
    /// a write may have found it closed already).
    func resumeReading() async {
        _ = try? await channel.setOption(.autoRead, value: true).get()
    }

    /// Connects and completes Hello, announcing `streamWindowBytes` as its receive window.
    static func hello(port: Int, tls: TLSContext? = nil, receiveBufferBytes: Int? = nil,
                      streamWindowBytes: Int = StreamWindow.bytesDefault) async throws -> (RawPeer, HelloReply) {
        let peer = try await RawPeer(port: port, tls: tls, receiveBufferBytes: receiveBufferBytes)
        try await peer.send(.hello(Hello(software: "raw test peer", streamWindowBytes: streamWindowBytes)))
        guard case .helloReply(let reply)? = try await peer.next()?.message() else {
            throw ProtocolError.protocolViolation("no HelloReply")
        }
        return (peer, reply)
    }

    func send(_ message: FrameMessage, requestID: UInt32 = 0) async throws {
        try await send(Frame(message, requestID: requestID))
    }

    func send(_ frame: Frame) async throws {
        try await sendBytes(FrameEncoder.encode(frame))
    }

    func sendBytes(_ bytes: ByteBuffer) async throws {
        try await channel.writeAndFlush(bytes)
    }

    /// The next frame, or nil when the connection closed or nothing came within `seconds`.
    /// Throws when the bytes received are not a frame.
    func next(within seconds: Double = 10) async throws -> Frame? {
        let deadline = soon(seconds)
        while true {
            let (frame, closed) = try inbox.state.withLock { state throws -> (Frame?, Bool) in
                (try FrameDecoder.next(from: &state.bytes), state.closed)
            }
            if let frame { return frame }
            if closed || ContinuousClock.now >= deadline { return nil }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Skips frames until one of `type` arrives (nil if none did).
    func next(_ type: FrameType, within seconds: Double = 10) async throws -> Frame? {
        let deadline = soon(seconds)
        while let frame = try await next(within: max(0.01, Double((deadline - .now) / .milliseconds(1)) / 1000)) {
            if frame.type == type { return frame }
        }
        return nil
    }

    var isOpen: Bool { channel.isActive }

    func waitClosed(within seconds: Double = 10) async -> Bool {
        await eventually(within: seconds) { !self.isOpen }
    }

    func close() async {
        try? await channel.close()
    }
}

/// Reads this process's VmRSS and VmHWM (bytes) from /proc/self/status.
func residentMemory() -> (rss: Int, peak: Int) {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return (0, 0) }
    func field(_ name: String) -> Int {
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }) else { return 0 }
        return (Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? 0) * 1024
    }
    return (field("VmRSS"), field("VmHWM"))
}
