import NIOCore
import NIOPosix
import Testing
import UpkeepCore
import UpkeepPKI
@testable import UpkeepTLS
import UpkeepTestSupport

/// Peers that do not speak TLS, never finish, or vanish: bounded, typed, and closed.
@Suite struct HandshakeFailureTests {
    let pki: TestPKI

    init() throws { pki = try TestPKI() }

    /// A plain TCP client that sends `bytes` and reports when the server closes on it.
    func rawClient(port: Int, sending bytes: [UInt8]) async throws -> (any Channel, EventLoopFuture<Void>) {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port).get()
        // The server may already have refused and closed by the time the write happens; what
        // matters is the server's verdict, so a failed write is not the test's failure.
        if !bytes.isEmpty { try? await channel.writeAndFlush(ByteBuffer(bytes: bytes)) }
        return (channel, channel.closeFuture)
    }

    @Test func garbageInsteadOfAClientHelloIsRefusedAsNotTLS() async throws {
        let server = try await TestServer.start(context: pki.context(.agent, "node-1"), expecting: .roles([.controller]),
                                                handshakeTimeout: .seconds(60))
        let (_, closed) = try await rawClient(port: server.port, sending: Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        let observation = await server.nextConnection()
        guard case .notTLS = try await observation.firstError() else {
            Issue.record("expected notTLS")
            return
        }
        try await closed.get()
        try await server.stop()
    }

    @Test func randomBytesAreRefused() async throws {
        let server = try await TestServer.start(context: pki.context(.agent, "node-1"), expecting: .roles([.controller]),
                                                handshakeTimeout: .seconds(60))
        var generator = SeededGenerator(seed: TestSeed.fresh())
        let noise = (0..<512).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let (_, closed) = try await rawClient(port: server.port, sending: [0x16, 0x03, 0x01, 0xff, 0xff] + noise)
        let error = try await (await server.nextConnection()).firstError()
        #expect(error != nil, "random bytes must never pass as a handshake (seed \(generator.seed); UPKEEP_TEST_SEED replays it)")
        try await closed.get()
        try await server.stop()
    }

    @Test func aClientThatNeverFinishesIsCutAtTheTimeout() async throws {
        let server = try await TestServer.start(context: pki.context(.agent, "node-1"), expecting: .roles([.controller]),
                                                handshakeTimeout: .milliseconds(300))
        let (_, closed) = try await rawClient(port: server.port, sending: [])
        #expect(try await (await server.nextConnection()).firstError() == .handshakeTimeout)
        try await closed.get()
        try await server.stop()
    }

    @Test func aServerThatNeverAnswersIsCutAtTheTimeout() async throws {
        // A listener that accepts and then says nothing.
        let silent = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let (channel, client) = try await connectTLS(port: silent.localAddress!.port!, context: pki.context(.controller, "c"),
                                                     expecting: .identity(try PeerIdentity(role: .agent, name: "node-1")),
                                                     handshakeTimeout: .milliseconds(300))
        #expect(try await client.firstError() == .handshakeTimeout)
        try await channel.closeFuture.get()
        try await silent.close()
    }

    @Test func aPeerThatHangsUpMidHandshakeIsReported() async throws {
        let hangUp = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in channel.close() }
            .bind(host: "127.0.0.1", port: 0).get()
        let (_, client) = try await connectTLS(port: hangUp.localAddress!.port!, context: pki.context(.controller, "c"),
                                               expecting: .identity(try PeerIdentity(role: .agent, name: "node-1")))
        #expect(try await client.firstError() == .closedDuringHandshake)
        try await hangUp.close()
    }

    @Test func eofWithoutCloseNotifyIsAnUncleanShutdown() async throws {
        let server = try await TestServer.start(context: pki.context(.agent, "node-1"), expecting: .roles([.controller]), echo: false)
        let (channel, client) = try await connectTLS(port: server.port, context: pki.context(.controller, "c"),
                                                     expecting: .identity(try PeerIdentity(role: .agent, name: "node-1")))
        _ = try await client.handshakeDone()
        let serverObservation = await server.nextConnection()
        _ = try await serverObservation.handshakeDone()
        // The client drops its TLS layer and closes the socket: no close_notify goes out.
        try await channel.pipeline.removeHandler(name: "tls").get()
        try await channel.close()
        #expect(try await serverObservation.firstError() == .uncleanShutdown)
        try await server.stop()
    }
}
