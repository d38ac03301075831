/// Why a call (or a connection) failed, on the client side. Equatable so tests and callers can
/// match exact reasons; each description says what to do.
///
/// `TLSFailure` is the error type of the secure channel below the frames; the session machines
/// never look inside it. `UpkeepProtocol` names the one it uses: `ProtocolError` is
/// `SessionError<TLSError>`.
public enum SessionError<TLSFailure: Error & Equatable & Sendable>: Error, Equatable, Sendable, CustomStringConvertible {
    /// The server answered with an Error frame.
    case remote(ErrorResponse)
    /// The deadline of `operation` (a method, or "ping", "connect") passed; a call was
    /// cancelled. Whether the server acted is unknown.
    case deadlineExceeded(operation: String)
    /// The connection ended before the call finished. Whether the server acted is unknown:
    /// send the request again (same operation id) on a new connection.
    case connectionClosed(String)
    /// The server never processed the request (GoAway, shutdown, queue full); sending it again
    /// is safe.
    case notProcessed(String)
    /// A stream's bytes do not match its ChunkEnd (or were cut short).
    case digestMismatch(String)
    /// The peer broke PROTOCOL.md; the connection is closed.
    case protocolViolation(String)
    /// Could not open the connection or finish Hello.
    case connectFailed(String)
    /// The upload's source failed; the call was cancelled.
    case uploadFailed(String)
    /// The TLS handshake failed or the session broke (wrong certificate, wrong node, timeout…).
    case tls(TLSFailure)

    public var description: String {
        switch self {
        case .remote(let error): "agent answered \(error)"
        case .deadlineExceeded(let operation):
            "\(operation) did not finish before its deadline; it was cancelled (check the agent's log, then retry with the same operation id)"
        case .connectionClosed(let detail):
            "connection closed before the call finished (\(detail)); retry with the same operation id on a new connection"
        case .notProcessed(let detail): "request not processed (\(detail)); it is safe to send again"
        case .digestMismatch(let detail): "stream integrity check failed: \(detail); the data was discarded, transfer it again"
        case .protocolViolation(let detail): "protocol violation: \(detail); the connection was closed (upgrade the older side)"
        case .connectFailed(let detail): "could not connect to the agent: \(detail)"
        case .uploadFailed(let detail): "upload source failed: \(detail); the call was cancelled"
        case .tls(let error): "\(error)"
        }
    }

    /// True when the request certainly had no effect, so any request may be sent again.
    /// Unknown error codes count as `internal` (PROTOCOL.md 9.2): not known to be unprocessed.
    public var requestWasNotProcessed: Bool {
        switch self {
        case .notProcessed, .connectFailed, .tls: true
        case .remote(let error): error.code.requestWasNotProcessed
        case .deadlineExceeded, .connectionClosed, .digestMismatch, .protocolViolation, .uploadFailed: false
        }
    }

    /// How a connection-level reason is reported to a call that was in flight.
    public var asCallFailure: SessionError {
        switch self {
        case .connectionClosed, .notProcessed: self
        default: .connectionClosed("\(self)")
        }
    }

    /// How a reason is reported to `connect` (before HelloReply).
    public var connectFailure: SessionError {
        switch self {
        case .remote, .tls, .connectFailed, .protocolViolation: self
        default: .connectFailed("\(self)")
        }
    }
}
