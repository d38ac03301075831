/// How a connection's TLS handshake at `ProtocolServer` ended, as `ProtocolServer.handshakes`
/// counts them: each connection that began one is counted once, when it leaves the handshake
/// (one still in it is not counted yet). The agent exports the counts in its metrics text file
/// (`upkeep_agent_tls_handshakes_total`, docs/metrics.md).
public enum HandshakeOutcome: String, CaseIterable, Hashable, Sendable {
    /// The peer's certificate was verified: a session (admitted, or answered `busy` after it).
    case completed
    /// Refused (no certificate, an untrusted or wrong one, not TLS at all), timed out, or
    /// closed by the peer before it completed.
    case failed
    /// Closed by the server to make room for a newer connection (the handshake budget:
    /// `handshakesMax`, `handshakesPerSourceMax`; also counted as those bounds).
    case displaced
}
