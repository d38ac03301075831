import NIOCore
import NIOPosix
import UpkeepPKI
@testable import UpkeepTLS

/// What one side of a test connection saw: the handshake (if it completed), the first error,
/// and every plaintext byte received.
final class Observation: Sendable {
    let handshake: EventLoopPromise<TLSHandshakeCompleted>
    let closed: EventLoopPromise<TLSError?>

    init(eventLoop: any EventLoop) {
        handshake = eventLoop.makePromise()
        closed = eventLoop.makePromise()
    }

    /// The handshake result; a failure carries the side's first error.
    func handshakeResult() async -> Result<TLSHandshakeCompleted, any Error> {
        do { return .success(try await handshake.futureResult.get()) } catch { return .failure(error) }
    }

    /// The first TLSError this side reported before its channel closed (nil: clean).
    func firstError() async throws -> TLSError? { try await closed.futureResult.get() }
}

/// Records handshake events and errors; echoes plaintext when `echo` is set.
final class ObservingHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let observation: Observation
    let echo: Bool
    private var firstError: TLSError?
    private var otherError: (any Error)?
    var received: [UInt8] = []
    var onRead: ((ChannelHandlerContext, ByteBuffer) -> Void)?

    init(observation: Observation, echo: Bool) {
        self.observation = observation
        self.echo = echo
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let completed = event as? TLSHandshakeCompleted { observation.handshake.succeed(completed) }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        received.append(contentsOf: buffer.readableBytesView)
        if echo { context.writeAndFlush(wrapOutboundOut(buffer), promise: nil) }
        onRead?(context, buffer)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let tls = error as? TLSError {
            if firstError == nil { firstError = tls }
        } else if otherError == nil {
            otherError = error
        }
        observation.handshake.fail(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        observation.handshake.fail(ChannelError.ioOnClosedChannel)
        observation.closed.succeed(firstError)
    }
}

@available(*, unavailable)
extension ObservingHandler: Sendable {}

/// A TLS server on 127.0.0.1 with an ephemeral port. Each accepted connection's observation
/// is yielded in order.
struct TestServer {
    let channel: any Channel
    let connections: AsyncStream<Observation>
    var port: Int { channel.localAddress!.port! }

    static func start(context: TLSContext, expecting: PeerExpectation = .any, echo: Bool = true,
                      handshakeTimeout: TimeAmount = .seconds(5)) async throws -> TestServer {
        let (stream, continuation) = AsyncStream<Observation>.makeStream()
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let observation = Observation(eventLoop: channel.eventLoop)
                    continuation.yield(observation)
                    try channel.pipeline.syncOperations.addHandler(
                        context.makeServerHandler(expecting: expecting, handshakeTimeout: handshakeTimeout), name: "tls")
                    try channel.pipeline.syncOperations.addHandler(ObservingHandler(observation: observation, echo: echo))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return TestServer(channel: channel, connections: stream)
    }

    func nextConnection() async -> Observation {
        var iterator = connections.makeAsyncIterator()
        return await iterator.next()!
    }

    func stop() async throws { try await channel.close() }
}

/// Dials `port` with TLS and returns the client channel and its observation.
func connectTLS(port: Int, host: String = "127.0.0.1", context: TLSContext, expecting: PeerExpectation,
                serverName: String? = nil, handshakeTimeout: TimeAmount = .seconds(5)) async throws -> (any Channel, Observation) {
    let eventLoop = MultiThreadedEventLoopGroup.singleton.next()
    let observation = Observation(eventLoop: eventLoop)
    let channel = try await ClientBootstrap(group: eventLoop)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(
                    context.makeClientHandler(expecting: expecting, serverName: serverName, handshakeTimeout: handshakeTimeout), name: "tls")
                try channel.pipeline.syncOperations.addHandler(ObservingHandler(observation: observation, echo: false))
            }
        }
        .connect(host: host, port: port).get()
    return (channel, observation)
}
