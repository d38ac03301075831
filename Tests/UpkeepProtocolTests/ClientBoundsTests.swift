import NIOCore
import NIOPosix
import Testing
import UpkeepHTTP
import UpkeepProtocol

/// The controller's side of the protocol reaches its bounds against a real socket, and counts
/// each in `ProtocolClient.limits` (exported by `upkeep serve`, docs/metrics.md "Bounds").
@Suite(.timeLimit(.minutes(1))) struct ClientBoundsTests {
    /// A listener that answers whatever a client sends first with `reply` (nothing: it never says
    /// HelloReply), as an agent broken or hostile would; with `thenStopReading`, it never reads
    /// again after that (its socket's receive buffer `receiveBufferBytes`).
    struct RawAgent {
        let channel: any Channel
        var port: Int { channel.localAddress?.port ?? 0 }

        final class Answer: ChannelInboundHandler, Sendable {
            typealias InboundIn = ByteBuffer
            typealias OutboundOut = ByteBuffer
            let reply: ByteBuffer?
            let thenStopReading: Bool
            init(_ reply: ByteBuffer?, thenStopReading: Bool) {
                self.reply = reply
                self.thenStopReading = thenStopReading
            }

            func channelRead(context: ChannelHandlerContext, data: NIOAny) {
                if thenStopReading { context.channel.setOption(.autoRead, value: false).whenComplete { _ in } }
                guard let reply else { return }
                context.writeAndFlush(wrapOutboundOut(reply), promise: nil)
            }
        }

        static func start(answering reply: ByteBuffer?, thenStopReading: Bool = false, receiveBufferBytes: Int? = nil) async throws -> RawAgent {
            var bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            if let receiveBufferBytes { bootstrap = bootstrap.childChannelOption(.socketOption(.so_rcvbuf), value: SocketOptionValue(receiveBufferBytes)) }
            let channel = try await bootstrap
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(Answer(reply, thenStopReading: thenStopReading))
                    }
                }
                .bind(host: "127.0.0.1", port: 0).get()
            return RawAgent(channel: channel)
        }
    }

    @Test func anOversizeFrameFromTheAgentIsRefusedAndCounted() async throws {
        var header = ByteBuffer(bytes: [0x55, 0x4B, 1, FrameType.response.rawValue, 0, 0, 0, 1])
        header.writeInteger(UInt32.max)
        let agent = try await RawAgent.start(answering: header)
        let before = ProtocolClient.limits.count(.frameBytes)
        await #expect(throws: ProtocolError.self) { _ = try await ProtocolClient.connect(host: "127.0.0.1", port: agent.port) }
        #expect(ProtocolClient.limits.count(.frameBytes) - before == 1)
        try await agent.channel.close()
    }

    @Test func anAgentThatNeverSaysHelloReplyIsCountedAtTheTimeout() async throws {
        let agent = try await RawAgent.start(answering: nil)
        var configuration = ClientConfiguration()
        // One second, not the default ten: the error names the bound it reached. Long enough that
        // a loaded machine's TCP connect (bounded by the same setting) is not what runs out.
        configuration.connectTimeout = .seconds(1)
        let before = ProtocolClient.limits.count(.helloTimeout)
        await #expect(throws: ProtocolError.connectFailed("no HelloReply within 1.0 seconds")) {
            _ = try await ProtocolClient.connect(host: "127.0.0.1", port: agent.port, configuration: configuration)
        }
        #expect(ProtocolClient.limits.count(.helloTimeout) - before == 1)
        try await agent.channel.close()
    }
}
