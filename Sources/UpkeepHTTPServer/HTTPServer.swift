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
        /// From a request's first byte (a new connection's first request: from accept) to its
        /// complete head (and for the TLS handshake): the connection is closed without an answer
        /// when it passes.
        public var headerReadTimeoutSeconds: Double
        /// From a request's first byte to its answer: 408 while the body is still arriving, 503
        /// when the responder has not answered, then close.
        public var requestTimeoutSeconds: Double
        /// Without a request after an answer (keep-alive): closed, quietly.
        public var idleTimeoutSeconds: Double
        /// Connections served at once: a connection takes a place with its first request's head
        /// and keeps it until it closes. A request finding every place taken is answered 503 and
        /// its connection closed.
        public var connectionsMax: Int
        /// Beyond `connectionsMax`, this many more places for requests to `reservedPaths` only,
        /// each answered and closed (a health check still answers when the server is full).
        public var reservedConnections: Int
        public var reservedPaths: Set<String>
        /// Connections accepted (with TLS: handshake done) that have not sent their first
        /// request's head yet, at once; they hold no place. A new one beyond this closes the
        /// oldest, so peers that connect and stay silent or trickle cannot keep a client out.
        public var awaitingRequestMax: Int
        /// Of those, from one source address; a new one beyond this closes that address's oldest.
        public var awaitingRequestPerSourceMax: Int
        /// The listen backlog.
        public var backlog: Int
        /// With TLS: connections in their handshake at once, which hold no place; a new one
        /// beyond this closes the oldest (docs/tls.md, "Connections in their handshake").
        public var handshakesMax: Int
        /// With TLS: of those, from one source address; a new one beyond this closes that
        /// address's oldest.
        public var handshakesPerSourceMax: Int
        /// With TLS: the handshake's time (at most `headerReadTimeoutSeconds`).
        public var handshakeTimeoutSeconds: Double
        /// What a connection may hold for a client that stops reading (write buffer water marks,
        /// the bytes of answers waiting at most, the time to drain them): the next pipelined
        /// request waits while it is not writable; past the cap or the drain time the connection
        /// is closed (docs/tls.md, "A peer that stops reading").
        public var outbound: OutboundBounds

        public init(headerBytesMax: Int = 32 << 10, bodyBytesMax: Int = 8 << 20, headerReadTimeoutSeconds: Double = 10,
                    requestTimeoutSeconds: Double = 60, idleTimeoutSeconds: Double = 60, connectionsMax: Int = 256,
                    reservedConnections: Int = 0, reservedPaths: Set<String> = [], awaitingRequestMax: Int = 64,
                    awaitingRequestPerSourceMax: Int = 64, backlog: Int = 256,
                    handshakesMax: Int = 64, handshakesPerSourceMax: Int = 8, handshakeTimeoutSeconds: Double = 5,
                    outbound: OutboundBounds = OutboundBounds())
        {
            self.outbound = outbound
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
            self.awaitingRequestMax = max(1, awaitingRequestMax)
            self.awaitingRequestPerSourceMax = max(1, awaitingRequestPerSourceMax)
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
    /// Connections open now, whether or not they hold a place.
    public var openConnections: Int { connections.openCount }
    /// Connections holding one of the `connectionsMax` places now.
    public var placedConnections: Int { connections.placedCount }

    /// Listens on `host:port` (port 0: any free port, then read `port`). With `tls`, every
    /// connection is TLS first (a context requiring client certificates gives mutual TLS, and
    /// `peers` what the client's certificate must say: `.roles([.operator])` for serve's API).
    public static func start(host: String, port: Int, configuration: Configuration = Configuration(), tls: TLSContext? = nil,
                             peers: PeerExpectation = .any,
                             group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                             logger: Logger = Logger(label: "upkeep.http.server"), responder: Responder) async throws -> HTTPServer
    {
        let limits = LimitLog<ServerLimit>(logger: logger, level: { $0 == .idleTimeout ? .debug : .warning })
        let connections = OpenConnections(configuration)
        let shared = HTTPServerHandler.Shared(configuration: configuration, responder: responder, limits: limits, connections: connections)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: Int32(configuration.backlog))
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                let source = channel.remoteAddress?.ipAddress ?? "an unknown address"
                let (number, displaced) = connections.accept(channel, source: source, tls: tls != nil)
                closeDisplaced(displaced, configuration: configuration, limits: limits)
                channel.closeFuture.whenComplete { _ in connections.closed(channel) }
                return channel.eventLoop.makeCompletedFuture {
                    let operations = channel.pipeline.syncOperations
                    try operations.addHandler(OutboundBacklogHandler(bounds: configuration.outbound) { limits.recordOutbound($0, $1) })
                    if let tls {
                        try operations.addHandler(tls.makeServerHandler(
                            expecting: peers, handshakeTimeout: .nanoseconds(Int64(max(0, configuration.handshakeTimeoutSeconds) * 1e9))))
                        try operations.addHandler(HandshakeWatch(connections: connections, limits: limits, configuration: configuration))
                    }
                    let handler = HTTPServerHandler(shared: shared, connection: number)
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

    /// Closes the connections a new one displaced from a budget, each counted and logged.
    static func closeDisplaced(_ displaced: [OpenConnections.Displaced], configuration: Configuration, limits: LimitLog<ServerLimit>) {
        for one in displaced {
            let close = one.close
            if one.inHandshake {
                limits.record(close.reason == .perSource ? .handshakesPerSource : .handshakes,
                              close.detail(handshakesMax: configuration.handshakesMax, handshakesPerSourceMax: configuration.handshakesPerSourceMax))
            } else if close.reason == .perSource {
                limits.record(.awaitingRequestPerSource, "closed the oldest connection from \(close.source) without a request yet: "
                    + "\(configuration.awaitingRequestPerSourceMax) from that address at once (awaitingRequestPerSourceMax)")
            } else {
                limits.record(.awaitingRequest, "closed the oldest connection (from \(close.source)) without a request yet: "
                    + "\(configuration.awaitingRequestMax) at once (awaitingRequestMax)")
            }
            one.channel?.close(promise: nil)
        }
    }

    /// Stops listening and closes every open connection, as a process's are when it ends.
    public func close() async {
        try? await channel.close()
        for connection in connections.all { try? await connection.close() }
    }
}

/// The bounds of `HTTPServer`, as `HTTPServer.limits` counts them.
public enum ServerLimit: String, CaseIterable, Hashable, Sendable {
    /// `connectionsMax` (and, for a reserved path, the reserve): a request answered 503, closed.
    case connections
    /// `awaitingRequestMax`: the oldest connection without a request yet was closed for a new one.
    case awaitingRequest = "awaiting_request"
    /// `awaitingRequestPerSourceMax`: one address's oldest connection without a request yet was closed.
    case awaitingRequestPerSource = "awaiting_request_per_source"
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
    /// `outbound.pendingBytesMax`: more bytes of answers waited for a client that did not read; closed.
    case outboundBytes = "outbound_bytes"
    /// `outbound.drainTimeout`: a client did not read its answers below the low water mark in time; closed.
    case drainTimeout = "drain_timeout"

}

/// Accepted and open connections, shared by the accept path of every event loop. A connection
/// takes a place (`connectionsMax`) only with its first request's head: until then it is in
/// a budget of its own where a new one closes the oldest (with TLS first the handshake budget,
/// then the one for connections awaiting their first request), so silent or trickling peers
/// can never take the places of served ones, nor keep a new client from sending its request.
final class OpenConnections: Sendable {
    /// What a connection's first request head found.
    enum Placement: Equatable, Sendable {
        /// One of the `connectionsMax` places: served, keep-alive allowed.
        case placed
        /// Every place taken; one of the `reservedConnections` for a reserved path: answered, then closed.
        case reserve
        /// Every place (and, for a reserved path, the reserve) taken: answered 503, then closed.
        case full
    }

    /// A connection to close to make room in a budget, and which bound that was.
    struct Displaced {
        let close: HandshakeBudget<ObjectIdentifier>.Close
        let channel: (any Channel)?
        let inHandshake: Bool
    }

    private struct State {
        var accepted = 0
        var open: [ObjectIdentifier: any Channel] = [:]
        var sources: [ObjectIdentifier: String] = [:]
        var handshakes: HandshakeBudget<ObjectIdentifier>
        var awaiting: HandshakeBudget<ObjectIdentifier>
        var placed: Set<ObjectIdentifier> = []
        var reserve: Set<ObjectIdentifier> = []

        mutating func displaced(_ closes: [HandshakeBudget<ObjectIdentifier>.Close], inHandshake: Bool) -> [Displaced] {
            closes.map { Displaced(close: $0, channel: open[$0.key], inHandshake: inHandshake) }
        }
    }

    private let state: NIOLockedValueBox<State>
    private let connectionsMax: Int
    private let reservedConnections: Int

    init(_ configuration: HTTPServer.Configuration) {
        connectionsMax = configuration.connectionsMax
        reservedConnections = configuration.reservedPaths.isEmpty ? 0 : configuration.reservedConnections
        state = NIOLockedValueBox(State(
            handshakes: HandshakeBudget(handshakesMax: configuration.handshakesMax, handshakesPerSourceMax: configuration.handshakesPerSourceMax),
            awaiting: HandshakeBudget(handshakesMax: configuration.awaitingRequestMax,
                                      handshakesPerSourceMax: configuration.awaitingRequestPerSourceMax)))
    }

    /// Counts an accepted connection from `source` and keeps it, in the handshake budget (`tls`)
    /// or the one awaiting a first request: its serial number, and the connections it displaces.
    func accept(_ channel: any Channel, source: String, tls: Bool) -> (number: Int, displaced: [Displaced]) {
        state.withLockedValue { state in
            state.accepted += 1
            let key = ObjectIdentifier(channel)
            state.open[key] = channel
            state.sources[key] = source
            let closes = tls ? state.handshakes.begin(key, source: source) : state.awaiting.begin(key, source: source)
            return (state.accepted, state.displaced(closes, inHandshake: tls))
        }
    }

    /// The connection's TLS handshake completed: it now awaits its first request.
    func handshakeCompleted(_ channel: any Channel) -> [Displaced] {
        state.withLockedValue { state in
            let key = ObjectIdentifier(channel)
            guard state.handshakes.end(key), let source = state.sources[key] else { return [] }
            return state.displaced(state.awaiting.begin(key, source: source), inHandshake: false)
        }
    }

    /// The connection's TLS handshake failed: it is closing.
    func handshakeFailed(_ channel: any Channel) {
        state.withLockedValue { _ = $0.handshakes.end(ObjectIdentifier(channel)) }
    }

    /// The connection's first request head arrived, for `path`: its place, if any is left.
    func place(_ channel: any Channel, reservedPath: Bool) -> Placement {
        state.withLockedValue { state in
            let key = ObjectIdentifier(channel)
            state.handshakes.end(key)
            state.awaiting.end(key)
            if state.placed.count < connectionsMax {
                state.placed.insert(key)
                return .placed
            }
            if reservedPath, state.reserve.count < reservedConnections {
                state.reserve.insert(key)
                return .reserve
            }
            return .full
        }
    }

    func closed(_ channel: any Channel) {
        state.withLockedValue { state in
            let key = ObjectIdentifier(channel)
            state.open[key] = nil
            state.sources[key] = nil
            state.handshakes.end(key)
            state.awaiting.end(key)
            state.placed.remove(key)
            state.reserve.remove(key)
        }
    }

    var accepted: Int { state.withLockedValue { $0.accepted } }
    var openCount: Int { state.withLockedValue { $0.open.count } }
    /// Connections holding one of the `connectionsMax` places.
    var placedCount: Int { state.withLockedValue { $0.placed.count } }
    var all: [any Channel] { state.withLockedValue { Array($0.open.values) } }
}

/// After the TLS handler: moves the connection from the handshake budget to the one awaiting
/// a first request when its handshake completes, and counts and logs (rate-limited, with the
/// peer's address) a handshake that timed out or was refused.
final class HandshakeWatch: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let connections: OpenConnections
    private let limits: LimitLog<ServerLimit>
    private let configuration: HTTPServer.Configuration

    init(connections: OpenConnections, limits: LimitLog<ServerLimit>, configuration: HTTPServer.Configuration) {
        self.connections = connections
        self.limits = limits
        self.configuration = configuration
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is TLSHandshakeCompleted {
            HTTPServer.closeDisplaced(connections.handshakeCompleted(context.channel), configuration: configuration, limits: limits)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? TLSError {
            connections.handshakeFailed(context.channel)
            let from = "from \(context.channel.remoteAddress?.description ?? "an unknown address")"
            switch error {
            case .handshakeTimeout:
                limits.record(.handshakeTimeout, "closed a connection \(from): no TLS handshake within \(configuration.handshakeTimeoutSeconds) s (handshakeTimeoutSeconds)")
            case .closedDuringHandshake, .uncleanShutdown, .closed:
                break
            default:
                limits.record(.tlsRefused, "refused a TLS connection \(from): \(error)")
            }
        }
        context.fireErrorCaught(error)
    }
}
