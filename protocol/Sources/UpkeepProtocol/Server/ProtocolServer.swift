import Logging
import NIOCore
import NIOPosix
import UpkeepHTTP
import UpkeepTLS

/// Serves the agent protocol on a TCP port: accepts connections up to a limit, runs each
/// request through a `RequestHandler`, closes idle connections, and shuts down gracefully.
/// It never trusts the peer's sizes or counts: every buffer, queue and wait is bounded, and
/// connections still in their TLS handshake have a small budget of their own
/// (`ServerConfiguration.handshakesMax`), so they never take the places of authenticated ones.
/// Each bound reached and each refusal is counted in `limits` and logged, rate-limited.
public final class ProtocolServer: Sendable {
    private let listener: any Channel
    private let shared: ServerShared
    /// Where the server listens (the port is chosen by the system when bound to port 0).
    public let localAddress: SocketAddress

    public var port: Int { localAddress.port ?? 0 }
    /// Authenticated connections open now.
    public var connectionCount: Int { shared.registry.count }
    /// Connections in their TLS handshake now.
    public var handshakeCount: Int { shared.registry.handshakeCount }
    /// TLS handshakes completed since the server started: one per connection a controller made.
    public var handshakesCompleted: Int { shared.registry.handshakesCompleted }
    /// How each connection's TLS handshake ended since the server started; the owner may export it.
    public var handshakes: LimitTally<HandshakeOutcome> { shared.registry.handshakes }
    /// How often each bound was reached and each refusal made; the owner may export it.
    public var limits: LimitLog<ProtocolServerLimit> { shared.registry.limits }

    private init(listener: any Channel, shared: ServerShared) {
        self.listener = listener
        self.shared = shared
        guard let address = listener.localAddress else { preconditionFailure("a bound channel has an address") }
        localAddress = address
    }

    /// Listens on `host`:`port` and serves every connection with `handler`.
    public static func bind(host: String, port: Int, security: ConnectionSecurity, handler: some RequestHandler,
                            configuration: ServerConfiguration = ServerConfiguration(),
                            logger: Logger = Logger(label: "upkeep.protocol.server"), limits: LimitLog<ProtocolServerLimit>? = nil,
                            handshakes: LimitTally<HandshakeOutcome>? = nil,
                            eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> ProtocolServer {
        try await bind(host: host, port: port, security: { security }, handler: handler, configuration: configuration,
                       logger: logger, limits: limits, handshakes: handshakes, eventLoopGroup: eventLoopGroup)
    }

    /// Listens on `host`:`port`, securing each new connection with what `security` returns at
    /// its accept (a renewed certificate serves the next connection; open ones keep theirs).
    /// `limits` counts the bounds reached (by default a `LimitLog` of its own on `logger`),
    /// `handshakes` how TLS handshakes ended (by default a tally of its own).
    public static func bind(host: String, port: Int, security: @escaping @Sendable () -> ConnectionSecurity, handler: some RequestHandler,
                            configuration: ServerConfiguration = ServerConfiguration(),
                            logger: Logger = Logger(label: "upkeep.protocol.server"), limits: LimitLog<ProtocolServerLimit>? = nil,
                            handshakes: LimitTally<HandshakeOutcome>? = nil,
                            eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> ProtocolServer {
        let shared = ServerShared(handler: handler, configuration: configuration, logger: logger,
                                  limits: limits ?? LimitLog(logger: logger), handshakes: handshakes ?? LimitTally())
        let listener = try await ServerBootstrap(group: eventLoopGroup)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try Self.initialize(channel, security: security(), shared: shared)
                }
            }
            .bind(host: host, port: port).get()
        return ProtocolServer(listener: listener, shared: shared)
    }

    private static func initialize(_ channel: any Channel, security: ConnectionSecurity, shared: ServerShared) throws {
        let admission = shared.registry.accept(channel, needsHandshake: security.needsHandshake)
        if admission == .dropped { throw ChannelError.ioOnClosedChannel }  // the bootstrap closes it
        let pipeline = channel.pipeline.syncOperations
        let waitsForTLS = try security.install(in: pipeline, side: .server, handshakeTimeoutMax: TimeAmount(shared.configuration.handshakeTimeout))
        let limits = shared.limits
        try pipeline.addHandler(OutboundBacklogHandler(bounds: shared.configuration.outbound) { limits.recordOutbound($0, $1) },
                                position: .first)
        try pipeline.addHandler(FrameReader())
        try pipeline.addHandler(FrameEncoder())
        if case .refused(let refusal) = admission {
            try pipeline.addHandler(ServerConnectionHandler(shared: shared, waitsForTLS: waitsForTLS, refusal: refusal))
            return
        }
        try pipeline.addHandler(IdleStateHandler(readTimeout: TimeAmount(shared.configuration.idleTimeout)))
        let handler = ServerConnectionHandler(shared: shared, waitsForTLS: waitsForTLS)
        try pipeline.addHandler(handler)
        let bound = NIOLoopBound(handler, eventLoop: channel.eventLoop)
        if shared.registry.register(channel, handler: bound) == .shuttingDown {
            // Shutdown began after admission and did not see this connection: it goes away itself.
            channel.eventLoop.execute { bound.value.goAway(reason: "shutting down") }
        }
    }

    /// Graceful shutdown: stop accepting, send GoAway on every connection, let running requests
    /// finish for up to `gracePeriod` (default: the configuration's), then stop what still runs
    /// (answered `cancelled`) and close. Returns when every connection is closed.
    public func shutdown(gracePeriod: Duration? = nil) async {
        let connections = shared.registry.beginShutdown()
        try? await listener.close()
        for connection in connections {
            let handler = connection.handler
            handler.eventLoop.execute { handler.value.goAway(reason: "shutting down") }
        }
        let grace = TimeAmount(gracePeriod ?? shared.configuration.shutdownGracePeriod)
        let forced = listener.eventLoop.scheduleTask(in: grace) {
            for connection in connections {
                let handler = connection.handler
                handler.eventLoop.execute { handler.value.forceClose(reason: "the agent shut down") }
            }
        }
        for connection in connections {
            try? await connection.channel.closeFuture.get()
        }
        forced.cancel()
    }

    /// Serves until the calling task is cancelled, then shuts down gracefully.
    public func run() async {
        let (cancelled, continuation) = AsyncStream<Never>.makeStream()
        await withTaskCancellationHandler {
            for await _ in cancelled {}
        } onCancel: {
            continuation.finish()
        }
        await shutdown()
    }
}
