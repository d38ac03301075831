/// The bounds of `ProtocolServer` and the refusals it makes, as `ProtocolServer.limits` counts
/// them: each reached is counted and logged, at most one line per kind a minute (`LimitLog`).
/// The agent exports the counts in its metrics text file (docs/metrics.md).
public enum ProtocolServerLimit: String, CaseIterable, Hashable, Sendable {
    /// `handshakesMax`: the oldest connection still in its TLS handshake was closed for a new one.
    case handshakes
    /// `handshakesPerSourceMax`: one address's oldest connection in its handshake was closed.
    case handshakesPerSource = "handshakes_per_source"
    /// `handshakeTimeout`: a connection did not complete its TLS handshake in time.
    case handshakeTimeout = "handshake_timeout"
    /// `connectionsMax`: an authenticated connection was answered `busy` and closed.
    case connections
    /// More refusals at once than `ConnectionRegistry.refusalsMax`: closed without an answer.
    case refusals = "refusals_in_progress"
    /// `concurrentRequestsPerConnectionMax`: a request was answered `busy`.
    case requestsPerConnection = "requests_per_connection"
    /// `progressEventsBurst` and `progressEventsPerSecond`: progress events not sent (counted per event).
    case progressEvents = "progress_events"
    /// A frame whose declared length is beyond its type's bound (PROTOCOL.md 4): the connection
    /// was closed (also a `protocol_violation`).
    case frameBytes = "frame_bytes"
    /// `ServerConfiguration.outbound.pendingBytesMax`: more bytes waited for a client that did
    /// not read; the connection was closed.
    case outboundBytes = "outbound_bytes"
    /// `ServerConfiguration.outbound.drainTimeout`: a client did not read what waited for it
    /// below the low water mark in time; the connection was closed.
    case drainTimeout = "drain_timeout"
    /// A TLS handshake refused: the peer's certificate, or not TLS at all (not a bound).
    case tlsRefused = "tls_refused"
    /// A peer broke the protocol and its connection was closed (not a bound).
    case protocolViolation = "protocol_violation"


    /// A refusal of a peer rather than a bound of the server's.
    public var isRefusal: Bool { self == .tlsRefused || self == .protocolViolation }
}
