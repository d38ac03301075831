import UpkeepCore

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

/// Says when what a `ClusterObserver` reads has changed (Kubernetes watches), so the runtime
/// looks at once rather than at the engine's next poll. An observer without it is polled.
public protocol ClusterChangeFeed: Sendable {
    /// Calls `changed` after each change that can alter an observation, until the calling task
    /// is cancelled (then it returns). It never throws: it retries on its own, bounded, and the
    /// engine's poll covers the time it cannot follow the cluster.
    func followChanges(_ changed: @escaping @Sendable () -> Void) async
}

/// The cluster-wide lock every operation that drives nodes holds beside its state directory's
/// own lease, so two controllers with two state directories never drive one cluster at once
/// (the Kubernetes Lease `kube-system/upkeep`, docs/controller.md, "The lock").
///
/// Once acquired it renews itself in the background until `release`. It never waits for a
/// holder to go: a lock held by another is refused at once, and the caller says who holds it.
public protocol ClusterLock: Sendable {
    /// Takes the lock for `operation` (words naming what holds it, e.g. `apply r20261207-101500`)
    /// and keeps it renewed until `release`. `takeOver`: even from a holder whose lock has not
    /// lapsed (the operator knows it is gone). `outageAllowed`: when the API cannot be reached,
    /// go on fenced by the state directory's lease alone (a recovery, whose API is down) and take
    /// the lock as soon as the API answers. `lost` is called at most once, from any task, when
    /// the lock can no longer be counted on; the caller must then act no further.
    func acquire(operation: String, takeOver: Bool, outageAllowed: Bool,
                 lost: @escaping @Sendable (String) -> Void) async throws(ClusterLockError) -> ClusterLockGrant
    /// Whether the lock counts as held at `now`: renewed within its deadline, or not reachable
    /// while the operation itself keeps the API down. Checked before every action.
    func isHeld(at now: Instant) -> Bool
    /// Whether the operation itself keeps the API down from now (a restore has stopped every
    /// server, the only server restarts): nobody can take the lock then, so failing to reach
    /// the API is not losing it. When the outage ends the renewal has a full deadline again.
    func expectOutage(_ expected: Bool, at now: Instant)
    /// Gives the lock up if this controller still holds it, and stops renewing.
    func release() async
}

/// What `ClusterLock.acquire` got.
public enum ClusterLockGrant: Equatable, Sendable {
    /// The lock, named `holder`; taken from `from` when another held it (lapsed, or forced).
    case held(holder: String, tookOverFrom: String?)
    /// The API could not be reached (`reason`) and the operation may go on without the lock:
    /// only the state directory's lease fences it until the lock is taken.
    case localOnly(reason: String)
}

/// Why the cluster lock was not acquired, in words that say what to do.
public enum ClusterLockError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Another controller holds `lock` and has renewed it within its duration.
    case held(lock: String, holder: String, renewedAt: Instant?, expiresAt: Instant?)
    /// The API did not answer (or answered 5xx): nobody can say who holds the lock.
    case unreachable(lock: String, reason: String)
    /// The API refused to let this controller read or write the lock (RBAC), or something else.
    case refused(lock: String, reason: String)

    public var description: String {
        switch self {
        case .held(let lock, let holder, let renewedAt, let expiresAt):
            "the Lease \(lock) is held by \(holder)"
                + (renewedAt.map { ", renewed \(Self.clock($0))" } ?? "")
                + (expiresAt.map { ", until \(Self.clock($0)) unless renewed" } ?? "")
                + "; another controller is working on this cluster: wait for it to finish (`upkeep status` shows the holder), "
                + "or use --force-takeover if that controller is gone"
        case .unreachable(let lock, let reason):
            "cannot read the Lease \(lock): \(reason); the cluster lock cannot be taken while the Kubernetes API does not answer"
        case .refused(let lock, let reason):
            "the Kubernetes API refused the Lease \(lock): \(reason); give the controller's identity get, create and update "
                + "on leases in kube-system (deploy/rbac-controller.yaml)"
        }
    }

    /// `2026-12-07T10:15:03Z`, as Kubernetes writes times.
    static func clock(_ instant: Instant) -> String {
        let day = CivilDate.floorDivide(instant.milliseconds, 86_400_000)
        let second = (instant.milliseconds - day * 86_400_000) / 1000
        let (year, month, dayOfMonth) = CivilDate.date(days: day)
        func two(_ value: Int64) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(year)-\(two(month))-\(two(dayOfMonth))T\(two(second / 3600)):\(two(second / 60 % 60)):\(two(second % 60))Z"
    }
}

/// Reads the gates the operator configured (docs/planning.md, "Gates"): Prometheus alerts,
/// blocking pods, etcd health through the server agents. It never throws: a gate it cannot read
/// is reported as unread in the report, and the engine holds on it (fail closed).
public protocol GateReader: Sendable {
    func read(_ question: GateQuestion) async -> GateReport
}
