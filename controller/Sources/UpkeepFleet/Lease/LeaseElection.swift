import UpkeepCore
import UpkeepKube

/// Who may hold the cluster Lease, decided the way client-go's leader election decides it
/// (`tryAcquireOrRenew`: read the Lease, keep it when it is ours, take it when its holder let it
/// lapse, else leave it; https://pkg.go.dev/k8s.io/client-go/tools/leaderelection and
/// https://kubernetes.io/docs/concepts/architecture/leases/). Pure: the Lease as read and the
/// moment in, what to write out; `ClusterLease` does the reading and writing, and a write that
/// loses on `resourceVersion` changes nothing.
///
/// Unlike client-go, a Lease is stale when its `renewTime` plus its `leaseDurationSeconds` has
/// passed by this controller's clock, not when it has not changed for a duration this process
/// watched: a one-shot command has watched nothing, and must not wait a whole duration each time
/// it finds a Lease left by a controller that crashed long ago (docs/decisions, "cluster lease").
public enum LeaseElection {
    /// This controller as a Lease names it: a stable id kept in its state directory, and the
    /// operation it runs (`apply r20261207-101500`).
    public struct Candidate: Equatable, Sendable {
        public var controllerID: String
        public var operation: String

        public init(controllerID: String, operation: String) {
            self.controllerID = controllerID
            self.operation = operation
        }

        /// `build1-3fa2b9c1 (apply r20261207-101500)`.
        public var holderIdentity: String { "\(controllerID) (\(operation))" }

        /// The controller id a holder identity starts with (all of it when it has no space).
        public static func controllerID(of holderIdentity: String) -> String {
            String(holderIdentity.prefix { $0 != " " })
        }
    }

    public enum Decision: Equatable, Sendable {
        /// No Lease exists: create it.
        case create(CoordinationLease.Spec)
        /// Write this spec over the Lease as read (at its `resourceVersion`): a renewal of ours, or
        /// taking it from `takingOverFrom` (a holder that let it lapse, this controller's own earlier
        /// operation, or any holder when forced); nil when it was ours or nobody's.
        case update(CoordinationLease.Spec, takingOverFrom: String?)
        /// Another holder's Lease that has not expired.
        case held(by: String, renewedAt: Instant?, expiresAt: Instant?)
    }

    /// What `candidate` does about the Lease `observed` (nil: none exists) at `now`, writing
    /// `durationSeconds` when it holds it. `takeOver`: the operator knows the holder is gone.
    ///
    /// A holder with this controller's id is this controller: the state directory's lease, taken
    /// first, already keeps a second process of it out, so its earlier operation's Lease is taken
    /// at once (after a crash, or a datastore restore that brought an older Lease back).
    public static func decide(_ observed: CoordinationLease.Spec?, candidate: Candidate, durationSeconds: Int, now: Instant,
                              takeOver: Bool) -> Decision {
        let seconds = Double(now.milliseconds) / 1000
        guard let observed else {
            return .create(CoordinationLease.Spec(holderIdentity: candidate.holderIdentity, leaseDurationSeconds: durationSeconds,
                                                  acquireTime: seconds, renewTime: seconds, leaseTransitions: 0))
        }
        let mine = candidate.holderIdentity
        if observed.holderIdentity == mine {
            var renewed = observed
            renewed.leaseDurationSeconds = durationSeconds
            renewed.renewTime = seconds
            if renewed.acquireTime == nil { renewed.acquireTime = seconds }
            return .update(renewed, takingOverFrom: nil)
        }
        let taken = CoordinationLease.Spec(holderIdentity: mine, leaseDurationSeconds: durationSeconds, acquireTime: seconds,
                                           renewTime: seconds, leaseTransitions: observed.leaseTransitions + 1)
        guard let holder = observed.holderIdentity else { return .update(taken, takingOverFrom: nil) }
        let expires = expiry(of: observed)
        let lapsed = expires.map { $0 <= now } ?? true
        if lapsed || takeOver || Candidate.controllerID(of: holder) == candidate.controllerID {
            return .update(taken, takingOverFrom: holder)
        }
        return .held(by: holder, renewedAt: observed.renewTime.map(instant), expiresAt: expires)
    }

    /// When a Lease as read lapses: its `renewTime` (its `acquireTime` if never renewed) plus its
    /// `leaseDurationSeconds`; nil when it says neither time or no duration (it never binds).
    public static func expiry(of spec: CoordinationLease.Spec) -> Instant? {
        guard let last = spec.renewTime ?? spec.acquireTime, let duration = spec.leaseDurationSeconds else { return nil }
        return instant(last).adding(seconds: duration)
    }

    /// Whether the Lease binds anyone at `now`: it names a holder and has not lapsed.
    public static func isLive(_ spec: CoordinationLease.Spec, at now: Instant) -> Bool {
        guard spec.holderIdentity != nil, let expires = expiry(of: spec) else { return false }
        return expires > now
    }

    /// The Lease given up, as client-go releases one: no holder, a duration of one second, renewed
    /// now; the transitions count stays, so the next holder's take counts as one.
    public static func released(_ spec: CoordinationLease.Spec, now: Instant) -> CoordinationLease.Spec {
        let seconds = Double(now.milliseconds) / 1000
        return CoordinationLease.Spec(holderIdentity: nil, leaseDurationSeconds: 1, acquireTime: seconds, renewTime: seconds,
                                      leaseTransitions: spec.leaseTransitions)
    }

    static func instant(_ seconds: Double) -> Instant { Instant(milliseconds: Int64((seconds * 1000).rounded())) }
}
