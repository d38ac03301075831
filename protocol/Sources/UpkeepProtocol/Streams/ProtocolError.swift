import UpkeepTLS

/// Why a call (or a connection) failed, on the client side (see `SessionError`); the TLS
/// failures are UpkeepTLS's.
public typealias ProtocolError = SessionError<TLSError>

extension SessionError where TLSFailure == TLSError {
    /// The Error frame a server sends for `error` thrown by a handler.
    static func errorResponse(for error: any Error) -> ErrorResponse {
        switch error {
        case let response as ErrorResponse: response
        case is CancellationError: ErrorResponse(.cancelled, "the request was cancelled")
        case ProtocolError.digestMismatch(let detail): ErrorResponse(.digestMismatch, detail)
        case let error as ProtocolError: ErrorResponse(.internal, "\(error)")
        case let error as MessageError: ErrorResponse(.badRequest, "\(error)")
        default: ErrorResponse(.internal, "handler failed: \(error)")
        }
    }
}
