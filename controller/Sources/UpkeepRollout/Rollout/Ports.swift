/// The edges the rollout runtime drives the engine through. The runtime owns ordering,
/// persistence and timing; these do the I/O and nothing else.

/// Carries one `AgentRequest` to its node's agent and returns the decoded answer.
///
/// Throwing means no answer arrived (refused connection, lost connection, deadline): the request
/// may or may not have run, and the runtime hands the engine `.requestFailed` so it resends the
/// same operation id. An answer that says "no" is not a throw: it is `AgentReply.refused`.
public protocol AgentTransport: Sendable {
    /// `progress` receives human-readable lines (per evicted pod, staged bytes) as they arrive.
    func send(_ request: AgentRequest, deadlineSeconds: Int,
              progress: @escaping @Sendable (String) -> Void) async throws -> AgentReply
}

/// Looks at the cluster: nodes and Longhorn volumes through the Kubernetes API, and etcd health
/// where it can tell. Throwing means the API could not be read this time.
public protocol ClusterObserver: Sendable {
    func observe() async throws -> ClusterObservation
}
