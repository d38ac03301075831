/// What can go wrong on the joining node; each description says what to do.
public enum JoinError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformedToken
    case malformedController(String)
    /// The CA the join server presents is not the pinned one: nothing was sent.
    case caMismatch(expected: String, actual: String)
    /// The join server refused (its message says why: token, node name, already enrolled).
    case refused(status: Int, message: String)
    case unreachable(controller: String, reason: String)
    case malformedMessage(String)
    /// The node holds an enrollment already (files listed) and --force was not given.
    case alreadyEnrolled(files: [String])
    /// The node name could not be found or is not a valid name.
    case nodeName(String)
    /// A file could not be written; what was written before was removed again.
    case write(path: String, reason: String)
    /// The agent could not be started.
    case start(String)

    public var description: String {
        switch self {
        case .malformedToken:
            "the token is not <6 characters>.<16 characters> of a-z and 0-9; copy it whole from 'upkeep token create'"
        case let .malformedController(text):
            "--controller \(text): write HOST:PORT of the join server, e.g. 10.0.0.1:9662"
        case let .caMismatch(expected, actual):
            "the join server's CA is \(actual), not \(expected); the token was NOT sent. "
                + "Check --controller and --ca-hash (copy both from 'upkeep token create'); someone may be in between"
        case let .refused(status, message):
            "the join server refused (HTTP \(status)): \(message)"
        case let .unreachable(controller, reason):
            "cannot reach the join server at \(controller): \(reason); is 'upkeep join-server' running there, and is the port open?"
        case let .malformedMessage(reason):
            "\(reason); are --controller and the join server the same Upkeep version?"
        case let .alreadyEnrolled(files):
            "this node is enrolled already (\(files.joined(separator: ", ")) exist); pass --force to enroll it again with a new key"
        case let .nodeName(reason):
            reason
        case let .write(path, reason):
            "cannot write \(path): \(reason); nothing was left half-written, fix it and join again"
        case let .start(reason):
            "the node is enrolled but its agent did not start: \(reason)"
        }
    }
}
