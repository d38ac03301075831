import UpkeepAgentCore
/// An operation refused or failed for a reason the controller can act on: a code and an
/// operator-facing message that says what to do.
public struct AgentFailure: Error, Equatable, Sendable, CustomStringConvertible {
    public var code: FailureCode
    public var message: String

    public init(_ code: FailureCode, _ message: String) {
        self.code = code
        self.message = message
    }

    public static func io(_ error: FileSystemError) -> AgentFailure { AgentFailure(.io, error.description) }

    public var description: String { "\(code.rawValue): \(message)" }
}

extension Error {
    /// The operator-facing text of an error: an `AgentFailure`'s message, else its description.
    var message: String {
        if let failure = self as? AgentFailure { return failure.message }
        return "\(self)"
    }
}
