import UpkeepPKI

/// Why this side refused the certificate its peer presented.
///
/// Each case names something an operator can fix: reissue, fix the clock, use the right CA,
/// or dial the right node.
public enum CertificateRefusal: Error, Equatable, Sendable, CustomStringConvertible {
    /// The peer sent no certificate although one is required.
    case missing
    /// The certificate's notAfter is in the past.
    case expired
    /// The certificate's notBefore is in the future.
    case notYetValid
    /// The chain does not lead to a trusted CA (the cluster CA in internal mode).
    case unknownCA
    /// The certificate carries an Upkeep identity (`actual`) of a role this side does not accept.
    case wrongRole(expected: [PeerRole], actual: PeerIdentity)
    /// The certificate names another node (or controller) than the one dialled.
    case wrongIdentity(expected: PeerIdentity, actual: PeerIdentity)
    /// The certificate carries no usable Upkeep identity URI.
    case noIdentity(String)
    /// Public mode: the certificate is not valid for the host name or IP address dialled.
    case hostnameMismatch(String)
    /// The certificate is on the deny list (`upkeep pki revoke`).
    case revoked(identity: String, fingerprint: String)
    /// Any other verification failure, with OpenSSL's verify code and text.
    case other(code: Int, message: String)

    public var description: String {
        switch self {
        case .missing:
            return "the peer presented no certificate; configure its certificate and key"
        case .expired:
            return "the peer's certificate has expired; reissue it (upkeep pki issue …)"
        case .notYetValid:
            return "the peer's certificate is not yet valid; check both clocks or reissue it"
        case .unknownCA:
            return "the peer's certificate is not signed by a trusted CA; issue it from this cluster's CA"
        case let .wrongRole(expected, actual):
            let roles = expected.map(\.rawValue).sorted().joined(separator: " or ")
            return "the peer's certificate is for role \(actual.role.rawValue) (\(actual.uri)), but only \(roles) is accepted here"
        case let .wrongIdentity(expected, actual):
            return "the peer's certificate names \(actual.uri), but \(expected.uri) was dialled; check the node's address"
        case let .noIdentity(detail):
            return "the peer's certificate carries no Upkeep identity (\(detail)); issue it with upkeep pki"
        case let .hostnameMismatch(host):
            return "the peer's certificate is not valid for \(host)"
        case let .revoked(identity, fingerprint):
            return "the peer's certificate for \(identity) was revoked (SHA-256 \(fingerprint)); "
                + "issue the node a new one with `upkeep pki issue agent NODE --force`"
        case let .other(code, message):
            return "certificate verification failed: \(message) (X509 error \(code))"
        }
    }
}

/// Errors raised by `TLSHandler` through `errorCaught`, and by `TLSContext` construction.
public enum TLSError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The handshake did not complete within the configured time; the connection was closed.
    case handshakeTimeout
    /// This side refused the peer's certificate; an alert was sent and the connection closed.
    case certificateRefused(CertificateRefusal)
    /// The peer sent a fatal alert (for example, it refused our certificate).
    case alertReceived(code: Int, description: String)
    /// The bytes received are not a TLS handshake (garbage, plain HTTP, …).
    case notTLS(String)
    /// The peer closed the TCP connection without sending close_notify: data may be truncated.
    case uncleanShutdown
    /// The peer closed the TCP connection before the handshake completed.
    case closedDuringHandshake
    /// Application data written before the handshake exceeded the bound.
    case writeQueueFull(bytesMax: Int)
    /// A write or read was attempted after the TLS session was closed.
    case closed
    /// Any other OpenSSL failure.
    case openSSL(OpenSSLError)
    /// The context could not be built from the given material.
    case invalidConfiguration(String)

    public var description: String {
        switch self {
        case .handshakeTimeout: return "TLS handshake timed out"
        case let .certificateRefused(refusal): return "refused the peer's TLS certificate: \(refusal)"
        case let .alertReceived(code, text): return "the peer ended the TLS session with alert \(code) (\(text))"
        case let .notTLS(detail): return "the peer does not speak TLS (\(detail))"
        case .uncleanShutdown: return "the peer closed the connection without TLS close_notify"
        case .closedDuringHandshake: return "the peer closed the connection during the TLS handshake"
        case let .writeQueueFull(bytesMax): return "more than \(bytesMax) bytes written before the TLS handshake completed"
        case .closed: return "the TLS session is closed"
        case let .openSSL(error): return "TLS failure: \(error)"
        case let .invalidConfiguration(detail): return "invalid TLS configuration: \(detail)"
        }
    }
}
