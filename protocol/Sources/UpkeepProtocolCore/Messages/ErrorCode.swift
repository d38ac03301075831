/// The code in an Error frame. A struct rather than an enum so that codes added by a newer peer
/// still decode (and print) instead of failing the frame.
public struct ErrorCode: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(from decoder: any Decoder) throws {
        rawValue = try decoder.singleValueContainer().decode(String.self)
    }
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
    public var description: String { rawValue }

    /// The request is malformed or breaks a rule of its method. Fix the caller; do not retry.
    public static let badRequest = ErrorCode(rawValue: "badRequest")
    /// The peer's certificate does not allow this request.
    public static let unauthorized = ErrorCode(rawValue: "unauthorized")
    /// What the request names (an artifact, an operation) does not exist.
    public static let notFound = ErrorCode(rawValue: "notFound")
    /// The request contradicts the node's state (for example another operation id is running).
    public static let conflict = ErrorCode(rawValue: "conflict")
    /// Too many requests or connections at once; retry later with backoff. Never processed.
    public static let busy = ErrorCode(rawValue: "busy")
    /// The request's deadline (`timeoutMs`) passed before it finished.
    public static let timeout = ErrorCode(rawValue: "timeout")
    /// A chunk stream's bytes do not match its ChunkEnd digest or length, or the expected digest.
    public static let digestMismatch = ErrorCode(rawValue: "digestMismatch")
    /// Not enough free disk space for what the request would write; nothing was written.
    public static let insufficientSpace = ErrorCode(rawValue: "insufficientSpace")
    /// The handler failed unexpectedly; the message says how.
    public static let `internal` = ErrorCode(rawValue: "internal")
    /// No protocol version in common (Hello), on request id 0; the connection closes.
    public static let unsupportedVersion = ErrorCode(rawValue: "unsupportedVersion")
    /// The method is unknown to this agent.
    public static let notImplemented = ErrorCode(rawValue: "notImplemented")
    /// The client sent Cancel; the handler was stopped.
    public static let cancelled = ErrorCode(rawValue: "cancelled")
    /// The server is shutting down (after GoAway); the request was not processed.
    public static let shuttingDown = ErrorCode(rawValue: "shuttingDown")
    /// The agent restarted while this operation id ran and resolved it as not done; a repeat of
    /// the id answers the same. Send the step again under a new operation id: it says nothing
    /// about the k3s version.
    public static let interrupted = ErrorCode(rawValue: "interrupted")
    /// The peer broke the protocol (frame rules, flow control, ordering); on request id 0 the
    /// connection closes.
    public static let protocolViolation = ErrorCode(rawValue: "protocolViolation")

    /// Codes that guarantee the request was not processed, so sending it again is safe.
    public var requestWasNotProcessed: Bool {
        self == .busy || self == .shuttingDown || self == .unsupportedVersion
    }
}

/// The payload of an Error frame, and the error a `RequestHandler` throws to answer with one.
public struct ErrorResponse: Error, Codable, Equatable, Sendable, CustomStringConvertible {
    public var code: ErrorCode
    /// What went wrong and what to do about it, for an operator.
    public var message: String

    public init(_ code: ErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}
