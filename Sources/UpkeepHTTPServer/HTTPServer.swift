import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import UpkeepCore
import UpkeepHTTP
import UpkeepTLS

/// Upkeep's one small HTTP/1.1 server: the sandbox's simulated Kubernetes API (with client
/// certificates), its release server and fake k3s health endpoints, and `upkeep serve`'s
/// metrics. docs/http.md describes it beside the client.
///
/// Each complete request (its body read whole, within `bodyBytesMax`) goes to a `Responder`;
/// keep-alive and pipelined requests are answered in order, `Connection: close` closes the
/// connection right after the answer. Every connection is bounded (`Configuration`): header
/// size, header read time, request time, idle time, and the number of connections; each bound
/// reached is counted in `limits` and logged, rate-limited. It never logs headers or bodies.
public final class HTTPServer: Sendable {
    public struct Configuration: Sendable {
        /// The request line and headers, as the decoder counts them (target, names, values):
        /// more is answered 431 and the connection closed.
        public var headerBytesMax: Int
        /// One request's body: more is answered 413 and the connection closed.
        public var bodyBytesMax: Int
        /// From a request's first byte to its complete head (and for the TLS handshake): the
        /// connection is closed without an answer when it passes.
        public var headerReadTimeoutSeconds: Double
        /// From a request's first byte to its answer: 408 while the body is still arriving, 503
        /// when the responder has not answered, then close.
        public var requestTimeoutSeconds: Double
        /// Without a request (after accept or an answer): closed, quietly.
        public var idleTimeoutSeconds: Double
        /// Connections open at once; more are closed as soon as they are accepted.
        public var connectionsMax: Int
        /// Beyond `connectionsMax`, this many more connections are kept for requests to
        /// `reservedPaths` only (a health check still answers when the server is full); other
        /// requests on them are answered 503.
        public var reservedConnections: Int
        public var reservedPaths: Set<String>
        /// The listen backlog.
        public var backlog: Int
        /// With TLS: connections in their handshake at once, which do not count against
        /// `connectionsMax`; a new one beyond this closes the oldest (docs/tls.md, "Connections in
        /// their handshake").
        public var handshakesMax: Int
        /// With TLS: of those, from one source address; a new one beyond this closes that
        /// address's oldest.
        public var handshakesPerSourceMax: Int
        /// With TLS: the handshake's time (at most `headerReadTimeoutSeconds`).
        public var handshakeTimeoutSeconds: Double

        public init(headerBytesMax: Int = 32 << 10, bodyBytesMax: Int = 8 << 20, headerReadTimeoutSeconds: Double = 10,
                    requestTimeoutSeconds: Double = 60, idleTimeoutSeconds: Double = 60, connectionsMax: Int = 256,
                    reservedConnections: Int = 0, reservedPaths: Set<String> = [], backlog: Int = 256,
                    handshakesMax: Int = 64, handshakesPerSourceMax: Int = 8, handshakeTimeoutSeconds: Double = 5)
        {
            self.handshakesMax = max(1, handshakesMax)
            self.handshakesPerSourceMax = max(1, handshakesPerSourceMax)
            self.handshakeTimeoutSeconds = min(handshakeTimeoutSeconds, headerReadTimeoutSeconds)
            self.headerBytesMax = max(1, headerBytesMax)
            self.bodyBytesMax = max(0, bodyBytesMax)
            self.headerReadTimeoutSeconds = headerReadTimeoutSeconds
            self.requestTimeoutSeconds = requestTimeoutSeconds
            self.idleTimeoutSeconds = idleTimeoutSeconds
            self.connectionsMax = max(1, connectionsMax)
            self.reservedConnections = max(0, reservedConnections)
            self.reservedPaths = reservedPaths
            self.backlog = backlog
        }

        var bounds: ConnectionDeadlines.Bounds {
            func nanoseconds(_ seconds: Double) -> Int64 { Int64(max(0, seconds) * 1e9) }
            return ConnectionDeadlines.Bounds(headerReadNanoseconds: nanoseconds(headerReadTimeoutSeconds),
                                                  requestNanoseconds: nanoseconds(requestTimeoutSeconds),
                                                  idleNanoseconds: nanoseconds(idleTimeoutSeconds))
        }
    }

    /// Who answers, and on which thread.
    public enum Responder: Sendable {
        /// On the connection's event loop: the closure must never block (the sandbox's
        /// in-memory models, behind a lock).
        case nonBlocking(@Sendable (HTTPServerRequest) -> HTTPServerResponse)
        /// On a thread of `NIOThreadPool.singleton`: the closure may block (a SQLite read,
        /// `HTTPClient.sendAndWait`); the request time bound answers 503 if it takes too long.
        case blocking(@Sendable (HTTPServerRequest) -> HTTPServerResponse)
        /// In a Swift task: the closure awaits (the sandbox's API waiting for its datastore); the
        /// request time bound answers 503 if it takes too long.
        case async(@Sendable (HTTPServerRequest) async -> HTTPServerResponse)
    }

    public let channel: any Channel
    public let host: String
    public let port: Int
    public let configuration: Configuration
    /// How often each bound was reached; the owner may export it as a metric.
    public let limits: LimitLog<ServerLimit>
    private let connections: OpenConnections

    private init(channel: any Channel, host: String, configuration: Configuration, limits: LimitLog<ServerLimit>, connections: OpenConnections) {
        self.channel = channel
        self.host = host
        port = channel.localAddress?.port ?? 0
        self.configuration = configuration
        self.limits = limits
        self.connections = connections
    }

    /// Connections accepted so far, refused ones included (to see keep-alive at work).
    public var acceptedConnections: Int { connections.accepted }
    /// Connections open now.
    public var openConnections: Int { connections.openCount }

    /// Listens on `host:port` (port 0: any free port, then read `port`). With `tls`, every
    /// connection is TLS first (a context requiring client certificates gives mutual TLS, and
    /// `peers` what the client's certificate must say: `.roles([.operator])` for serve's API).
    public static func start(host: String, port: Int, configuration: Configuration = Configuration(), tls: TLSContext? = nil,
                             peers: PeerExpectation = .any,
                             group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                             logger: Logger = Logger(label: "upkeep.http.server"), responder: Responder) async throws -> HTTPServer
    {
        let limits = LimitLog<ServerLimit>(logger: logger, level: { $0 == .idleTimeout ? .debug : .warning })
        let connections = OpenConnections(handshakes: HandshakeBudget(handshakesMax: configuration.handshakesMax,
                                                                      handshakesPerSourceMax: configuration.handshakesPerSourceMax))
        let shared = HTTPServerHandler.Shared(configuration: configuration, responder: responder, limits: limits)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: Int32(configuration.backlog))
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                let ceiling = configuration.connectionsMax + (configuration.reservedPaths.isEmpty ? 0 : configuration.reservedConnections)
                let source = channel.remoteAddress?.ipAddress ?? "an unknown address"
                guard let (number, open, displaced) = connections.open(channel, ceiling: ceiling, handshakeFrom: tls == nil ? nil : source) else {
                    limits.record(.connections, "refused a connection from \(source): \(ceiling) open (connectionsMax \(configuration.connectionsMax))")
                    return channel.close()
                }
                for (close, other) in displaced {
                    limits.record(close.reason == .perSource ? .handshakesPerSource : .handshakes,
                                  close.detail(handshakesMax: configuration.handshakesMax, handshakesPerSourceMax: configuration.handshakesPerSourceMax))
                    other?.close(promise: nil)
                }
                channel.closeFuture.whenComplete { _ in connections.closed(channel) }
                return channel.eventLoop.makeCompletedFuture {
                    let operations = channel.pipeline.syncOperations
                    if let tls {
                        try operations.addHandler(tls.makeServerHandler(
                            expecting: peers, handshakeTimeout: .nanoseconds(Int64(max(0, configuration.handshakeTimeoutSeconds) * 1e9))))
                        try operations.addHandler(HandshakeWatch(connections: connections, limits: limits,
                                                                 timeoutSeconds: configuration.handshakeTimeoutSeconds))
                    }
                    let handler = HTTPServerHandler(shared: shared, connection: number, isReserve: open > configuration.connectionsMax)
                    try operations.addHandler(ByteWatch(handler: handler))
                    var decoderLimits = NIOHTTPDecoderLimitConfiguration()
                    decoderLimits.maxHeaderFieldSize = configuration.headerBytesMax
                    decoderLimits.maxHeaderListSize = configuration.headerBytesMax
                    try operations.configureHTTPServerPipeline(withErrorHandling: false, withEncoderConfiguration: .init(),
                                                               withDecoderLimitConfiguration: decoderLimits)
                    try operations.addHandler(handler)
                }
            }
            .bind(host: host, port: port).get()
        return HTTPServer(channel: channel, host: host, configuration: configuration, limits: limits, connections: connections)
    }

    /// Stops listening and closes every open connection, as a process's are when it ends.
    public func close() async {
        try? await channel.close()
        for connection in connections.all { try? await connection.close() }
    }
}

/// The bounds of `HTTPServer`, as `HTTPServer.limits` counts them.
public enum ServerLimit: String, CaseIterable, Hashable, Sendable {
    /// `connectionsMax` (and the reserve): a connection closed at accept.
    case connections
    /// With TLS, `handshakesMax`: the oldest connection still in its handshake was closed.
    case handshakes
    /// With TLS, `handshakesPerSourceMax`: one address's oldest connection in its handshake was closed.
    case handshakesPerSource = "handshakes_per_source"
    /// With TLS, `handshakeTimeoutSeconds`: the handshake did not complete in time.
    case handshakeTimeout = "handshake_timeout"
    /// With TLS, a handshake refused (a certificate, or bytes that are not TLS; not a bound).
    case tlsRefused = "tls_refused"
    /// `headerBytesMax`: answered 431.
    case headerBytes = "header_bytes"
    /// `headerReadTimeoutSeconds`: closed without an answer.
    case headerReadTimeout = "header_read_timeout"
    /// `bodyBytesMax`: answered 413.
    case bodyBytes = "body_bytes"
    /// `requestTimeoutSeconds`: answered 408 or 503.
    case requestTimeout = "request_timeout"
    /// `idleTimeoutSeconds`: closed quietly (logged at debug level: keep-alive expiry is routine).
    case idleTimeout = "idle_timeout"
}

/// Accepted and open connections, shared by the accept path of every event loop. Connections
/// still in their TLS handshake are kept in a budget of their own and do not count against the
/// ceiling, so silent peers cannot take the places of served ones.
final class OpenConnections: Sendable {
    private struct State {
        var accepted = 0
        var open: [ObjectIdentifier: any Channel] = [:]
        var handshakes: HandshakeBudget<ObjectIdentifier>
    }

    private let state: NIOLockedValueBox<State>

    init(handshakes: HandshakeBudget<ObjectIdentifier> = HandshakeBudget(handshakesMax: 64, handshakesPerSourceMax: 8)) {
        state = NIOLockedValueBox(State(handshakes: handshakes))
    }

    /// Counts an accepted connection and keeps it, unless `ceiling` are open already besides
    /// those in their handshake: its serial number, how many are open with it (handshakes not
    /// counted), and the connections it displaces from the handshake budget when it begins one
    /// (`handshakeFrom` its source address); nil when refused.
    func open(_ channel: any Channel, ceiling: Int, handshakeFrom source: String? = nil)
        -> (number: Int, open: Int, displaced: [(HandshakeBudget<ObjectIdentifier>.Close, (any Channel)?)])?
    {
        state.withLockedValue { state in
            state.accepted += 1
            guard state.open.count - state.handshakes.count < ceiling else { return nil }
            let key = ObjectIdentifier(channel)
            let closes = source.map { state.handshakes.begin(key, source: $0) } ?? []
            state.open[key] = channel
            return (state.accepted, state.open.count - state.handshakes.count, closes.map { ($0, state.open[$0.key]) })
        }
    }

    /// The connection's handshake ended (completed or failed): it counts as open from now on.
    func handshakeEnded(_ channel: any Channel) {
        state.withLockedValue { _ = $0.handshakes.end(ObjectIdentifier(channel)) }
    }

    func closed(_ channel: any Channel) {
        state.withLockedValue { state in
            let key = ObjectIdentifier(channel)
            state.open[key] = nil
            state.handshakes.end(key)
        }
    }
    var accepted: Int { state.withLockedValue { $0.accepted } }
    var openCount: Int { state.withLockedValue { $0.open.count } }
    var all: [any Channel] { state.withLockedValue { Array($0.open.values) } }
}

/// After the TLS handler: moves the connection out of the handshake budget when its handshake
/// ends, and counts and logs (rate-limited, with the peer's address) a handshake that timed out
/// or was refused.
final class HandshakeWatch: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let connections: OpenConnections
    private let limits: LimitLog<ServerLimit>
    private let timeoutSeconds: Double

    init(connections: OpenConnections, limits: LimitLog<ServerLimit>, timeoutSeconds: Double) {
        self.connections = connections
        self.limits = limits
        self.timeoutSeconds = timeoutSeconds
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is TLSHandshakeCompleted { connections.handshakeEnded(context.channel) }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? TLSError {
            connections.handshakeEnded(context.channel)
            let from = "from \(context.channel.remoteAddress?.description ?? "an unknown address")"
            switch error {
            case .handshakeTimeout:
                limits.record(.handshakeTimeout, "closed a connection \(from): no TLS handshake within \(timeoutSeconds) s (handshakeTimeoutSeconds)")
            case .closedDuringHandshake, .uncleanShutdown, .closed:
                break
            default:
                limits.record(.tlsRefused, "refused a TLS connection \(from): \(error)")
            }
        }
        context.fireErrorCaught(error)
    }
}
