import UpkeepCore

/// Settings of a `ProtocolClient` connection.
public struct ClientConfiguration: Equatable, Sendable {
    /// Reported in Hello, for the agent's logs.
    public var software = "upkeep"
    /// Bound on the TCP connect, and again on TLS plus Hello.
    public var connectTimeout: Duration = .seconds(10)
    /// Calls in flight at once on this connection (also capped by the server's limit); more wait
    /// for a slot.
    public var concurrentRequestsMax = 64
    /// Calls waiting for a slot at most; more fail at once (not processed).
    public var queuedCallsMax = 1024
    /// Receive window per download stream (announced in Hello).
    public var streamWindowBytes = StreamWindow.bytesDefault
    /// Progress events kept per call when the consumer falls behind (the newest are kept).
    public var progressEventsBufferMax = 256
    /// What the connection may hold for an agent that stops reading (write buffer water marks,
    /// the bytes waiting at most, the time to drain them): uploads wait while it is not
    /// writable; past the cap or the drain time the connection is closed (docs/tls.md).
    public var outbound = OutboundBounds()

    public init() {}
}
