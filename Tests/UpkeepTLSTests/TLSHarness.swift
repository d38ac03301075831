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

    /// The handshake's facts, or the side's first error; bounded so a hang fails the test.
    func handshakeDone() async throws -> TLSHandshakeCompleted { try await handshake.futureResult.get(withinSeconds: 30) }

    /// The handshake result; a failure carries the side's first error.
    /// The first TLSError this side reported before its channel closed (nil: clean).
    func firstError() async throws -> TLSError? { try await closed.futureResult.get(withinSeconds: 30) }
}

struct TestTimeout: Error, CustomStringConvertible {
    let seconds: Int64
    var description: String { "nothing happened within \(seconds) s" }
}

extension EventLoopFuture where Value: Sendable {
    /// The value, or `TestTimeout` after `seconds`: no test waits forever.
    func get(withinSeconds seconds: Int64) async throws -> Value {
        let promise = eventLoop.makePromise(of: Value.self)
        let timeout = eventLoop.scheduleTask(in: .seconds(seconds)) { promise.fail(TestTimeout(seconds: seconds)) }
        cascade(to: promise)
        defer { timeout.cancel() }
        return try await promise.futureResult.get()
    }
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
    private var waiters: [(count: Int, promise: EventLoopPromise<[UInt8]>)] = []
    /// Written as soon as TCP connects, before the TLS handshake has even started.
    let greeting: String?
    /// Whether the handshake was still unfinished when the greeting was written.
    var greetingWasEarly = false

    init(observation: Observation, echo: Bool, greeting: String? = nil) {
        self.observation = observation
        self.echo = echo
        self.greeting = greeting
    }

    func channelActive(context: ChannelHandlerContext) {
        if let greeting {
            greetingWasEarly = (try? context.pipeline.syncOperations.handler(type: TLSHandler.self).session) == nil
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: greeting)), promise: nil)
        }
        context.fireChannelActive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let completed = event as? TLSHandshakeCompleted { observation.handshake.succeed(completed) }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        received.append(contentsOf: buffer.readableBytesView)
        if echo { context.writeAndFlush(wrapOutboundOut(buffer), promise: nil) }
        let ready = waiters.filter { received.count >= $0.count }
        waiters.removeAll { received.count >= $0.count }
        for waiter in ready { waiter.promise.succeed(received) }
    }

    /// Everything received once at least `count` bytes have arrived.
    func whenReceived(atLeast count: Int, on eventLoop: any EventLoop) -> EventLoopFuture<[UInt8]> {
        let promise = eventLoop.makePromise(of: [UInt8].self)
        if received.count >= count { promise.succeed(received) } else { waiters.append((count, promise)) }
        return promise.futureResult
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
        for waiter in waiters { waiter.promise.fail(ChannelError.ioOnClosedChannel) }
        waiters = []
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
                serverName: String? = nil, handshakeTimeout: TimeAmount = .seconds(5), greeting: String? = nil)
    async throws -> (any Channel, Observation) {
    let eventLoop = MultiThreadedEventLoopGroup.singleton.next()
    let observation = Observation(eventLoop: eventLoop)
    let channel = try await ClientBootstrap(group: eventLoop)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(
                    context.makeClientHandler(expecting: expecting, serverName: serverName, handshakeTimeout: handshakeTimeout), name: "tls")
                try channel.pipeline.syncOperations.addHandler(ObservingHandler(observation: observation, echo: false, greeting: greeting))
            }
        }
        .connect(host: host, port: port).get()
    return (channel, observation)
}

extension Channel {
    /// The plaintext this channel's `ObservingHandler` received, once there are `count` bytes.
    func received(atLeast count: Int) async throws -> [UInt8] {
        try await pipeline.handler(type: ObservingHandler.self).flatMap { handler in
            handler.whenReceived(atLeast: count, on: self.eventLoop)
        }.get(withinSeconds: 20)
    }
}
