import UpkeepCore

/// Limits of a `ProtocolServer` (PROTOCOL.md section 14 lists the defaults).
public struct ServerConfiguration: Equatable, Sendable {
    /// Authenticated connections (TLS handshake done) at most; more are answered `busy` on
    /// request id 0 and closed. Connections still in their handshake do not count here.
    public var connectionsMax = 1024
    /// Connections in their TLS handshake at once; a new one beyond this closes the oldest
    /// (`HandshakeBudget`), so silent connections cannot keep a controller out.
    public var handshakesMax = 64
    /// Connections in their TLS handshake at once from one source address; a new one beyond
    /// this closes that address's oldest.
    public var handshakesPerSourceMax = 8
    /// How long a connection may take to complete its TLS handshake (at most; a shorter timeout
    /// of the connection's security applies as it is).
    public var handshakeTimeout: Duration = .seconds(5)
    /// Requests run at once per connection (announced in HelloReply); more are answered `busy`.
    public var concurrentRequestsPerConnectionMax = 32
    /// How long a new connection may take to send Hello (after TLS).
    public var helloTimeout: Duration = .seconds(10)
    /// A connection with no request open and no frame received for this long is closed.
    public var idleTimeout: Duration = .seconds(120)
    /// How long graceful shutdown lets running requests finish before cancelling them.
    public var shutdownGracePeriod: Duration = .seconds(10)
    /// Receive window per upload stream (announced in HelloReply).
    public var streamWindowBytes = StreamWindow.bytesDefault
    /// Progress frames sent at once per request before the pace below applies (PROTOCOL.md 6.3:
    /// "at most a few per second"); events beyond the pace are dropped.
    public var progressEventsBurst = ProgressBudget.burstDefault
    /// Progress frames per second per request, after the burst.
    public var progressEventsPerSecond = ProgressBudget.perSecondDefault
    /// What a connection may hold for a client that stops reading (write buffer water marks,
    /// the bytes waiting at most, the time to drain them): downloads wait while it is not
    /// writable; past the cap or the drain time the connection is closed (docs/tls.md).
    public var outbound = OutboundBounds()

    public init() {}
}
