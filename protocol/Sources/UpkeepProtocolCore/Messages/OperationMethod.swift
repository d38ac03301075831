// MARK: operation

/// Read-only: what the agent's journal says about one operation id. A client that lost its
/// connection asks it to decide between waiting, taking the recorded outcome, and sending the
/// step again under a new id (PROTOCOL.md section 6.1).
public struct OperationRequest: RequestMessage {
    public typealias Result = OperationResult
    public static let method = Method.operation
    /// The id asked about; this request itself is not recorded.
    public var operationID: OperationID

    public init(operationID: OperationID) { self.operationID = operationID }
    public var payload: RequestPayload { .operation(self) }
}

/// The journal's view of one operation id.
public struct OperationResult: ResultMessage {
    public enum State: String, Codable, Sendable, CaseIterable {
        /// Not in the journal: never received (sending it again runs it), or forgotten.
        case unknown
        case running, succeeded, failed, reverted
    }

    public var state: State
    public var method: Method?
    public var message: String?
    /// With `failed`: the error code a repeat of the id answers (`interrupted`: send the step
    /// again under a new id).
    public var failure: ErrorCode?
    /// For an install that started a watch.
    public var watch: OperationWatch?

    public init(state: State, method: Method? = nil, message: String? = nil, failure: ErrorCode? = nil, watch: OperationWatch? = nil) {
        self.state = state
        self.method = method
        self.message = message
        self.failure = failure
        self.watch = watch
    }
}

/// The watch a healthy install started, and how it ended.
public struct OperationWatch: Codable, Equatable, Sendable {
    public enum State: String, Codable, Sendable, CaseIterable {
        /// Waiting for `commit` until `deadlineUnixMs`.
        case open
        case committed
        /// The deadline passed healthy: the new version stays.
        case keptHealthy
        /// The deadline passed unhealthy on a server that went up a Kubernetes minor: the agent
        /// left the new version (a binary rollback across a minor needs the datastore restored).
        case keptUnhealthy
        /// The deadline passed unhealthy: the previous binary was put back.
        case reverted
        /// A later operation ended it (rollback, stopK3s, restore, rejoin).
        case ended
    }

    public var state: State
    /// While `open`.
    public var deadlineUnixMs: Int64?

    public init(state: State, deadlineUnixMs: Int64? = nil) {
        self.state = state
        self.deadlineUnixMs = deadlineUnixMs
    }
}
