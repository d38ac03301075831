import Logging
import Synchronization
import UpkeepCore
import UpkeepHTTP
import UpkeepKube
import UpkeepRollout

/// The cluster-wide lock as the Kubernetes Lease `kube-system/upkeep` (coordination.k8s.io/v1,
/// https://kubernetes.io/docs/concepts/architecture/leases/): taken, renewed in the background
/// and released as client-go's leader election does
/// (https://pkg.go.dev/k8s.io/client-go/tools/leaderelection), every write conditional on the
/// `resourceVersion` read, so of two controllers writing at once one gets 409 Conflict and
/// loses. `LeaseElection` decides; this class only reads, writes and keeps time.
///
/// The holder counts the lock as held only while it renewed it within `renewDeadlineSeconds`
/// (shorter than the `durationSeconds` others wait before taking it over), measured from the
/// moment the renewing request left: a controller that cannot renew (paused, cut off) stops
/// acting before anyone else may start. Each request is bounded by its client's timeout; a
/// conflict, a failed renewal, a refusal and the loss are each one rate-limited log line and a
/// count (`record`, which the controller keeps in its state database for its metrics).
///
/// It never deletes the Lease, never writes one another holder renewed in time (unless told to
/// take over), and never logs anything but holder names and API errors.
public final class ClusterLease: ClusterLock {
    /// The timing of the Lease: client-go's LeaseDuration, RenewDeadline and RetryPeriod.
    public struct Terms: Equatable, Sendable {
        /// `leaseDurationSeconds`: how long others wait past the last renewal before taking it.
        public var durationSeconds: Int
        /// The holder stops acting when it has not renewed for this long.
        public var renewDeadlineSeconds: Int
        /// How often the holder renews (and retries a failed renewal).
        public var renewIntervalSeconds: Int

        public init(durationSeconds: Int = 60, renewDeadlineSeconds: Int = 40, renewIntervalSeconds: Int = 5) {
            self.durationSeconds = durationSeconds
            self.renewDeadlineSeconds = renewDeadlineSeconds
            self.renewIntervalSeconds = renewIntervalSeconds
        }

        /// What is wrong with these terms, for the configuration's error message; empty when fine.
        public var problems: [String] {
            var problems: [String] = []
            if !(2...3600).contains(durationSeconds) { problems.append("durationSeconds (\(durationSeconds)) must be 2...3600") }
            if renewIntervalSeconds < 1 { problems.append("renewIntervalSeconds (\(renewIntervalSeconds)) must be at least 1") }
            if renewDeadlineSeconds >= durationSeconds {
                problems.append("renewDeadlineSeconds (\(renewDeadlineSeconds)) must be less than durationSeconds (\(durationSeconds)): "
                                + "the holder must stop before anyone may take the Lease over")
            }
            if renewIntervalSeconds >= renewDeadlineSeconds {
                problems.append("renewIntervalSeconds (\(renewIntervalSeconds)) must be less than renewDeadlineSeconds "
                                + "(\(renewDeadlineSeconds)): a renewal must get more than one try")
            }
            return problems
        }
    }

    /// What happened to the Lease that an operator may want to see counted.
    public enum Event: String, CaseIterable, Hashable, Sendable {
        /// Acquiring was refused: another controller holds it.
        case held
        /// A write lost on `resourceVersion` (409): someone else wrote the Lease first.
        case conflict
        /// Taken from a holder that let it lapse (or forced, or this controller's earlier operation).
        case tookOver = "took_over"
        /// One renewal failed (no answer, an error); the holder tries again until its deadline.
        case renewFailed = "renew_failed"
        /// The holder stopped counting on the Lease: taken over, or not renewed within its deadline.
        case lost
    }

    public static let namespace = "kube-system"
    public static let name = "upkeep"
    /// `kube-system/upkeep`.
    public static var lockName: String { "\(namespace)/\(name)" }

    public let terms: Terms
    public let controllerID: String
    private let client: KubeClient
    private let now: @Sendable () -> Instant
    private let record: @Sendable (Event) -> Void
    private let log: LimitLog<Event>
    private let logger: Logger

    private struct Holding {
        var candidate: LeaseElection.Candidate
        /// The Lease as last written by this controller; nil while only the local lease fences
        /// (the API could not be reached when acquiring).
        var written: CoordinationLease?
        /// When the request of the last successful write left (or the outage ended).
        var renewedAt: Instant
        var lastFailure: String?
        var lost: @Sendable (String) -> Void
    }

    private enum Phase {
        case idle
        case holding(Holding)
        case lost(String)
    }

    private struct State {
        var phase = Phase.idle
        var outageExpected = false
        var renewal: Task<Void, Never>?
    }

    private let state = Mutex(State())

    /// `client` is used for the Lease alone and bounds each request (give it a timeout well
    /// under `renewDeadlineSeconds`); it is not shut down here. `now` is the wall clock the
    /// Lease's times are written in. `record` counts each `Event` (durably, in the controller).
    public init(client: KubeClient, controllerID: String, terms: Terms = Terms(), now: @escaping @Sendable () -> Instant,
                logger: Logger = Logger(label: "upkeep.lease"), record: @escaping @Sendable (Event) -> Void = { _ in }) {
        precondition(terms.problems.isEmpty, "lease terms: \(terms.problems)")
        self.client = client
        self.controllerID = controllerID
        self.terms = terms
        self.now = now
        self.record = record
        self.logger = logger
        log = LimitLog(logger: logger, intervalSeconds: 30, level: { $0 == .tookOver ? .notice : .warning })
    }

    // MARK: - ClusterLock

    public func acquire(operation: String, takeOver: Bool, outageAllowed: Bool,
                        lost: @escaping @Sendable (String) -> Void) async throws(ClusterLockError) -> ClusterLockGrant {
        let candidate = LeaseElection.Candidate(controllerID: controllerID, operation: operation)
        // Two tries: a write that loses on resourceVersion reads the Lease again once.
        for attempt in 1...2 {
            let started = now()
            do {
                let (written, from) = try await write(candidate, takeOver: takeOver, at: started)
                if let from { count(.tookOver, "took the Lease \(Self.lockName) over from \(from) for \(candidate.holderIdentity)") }
                begin(Holding(candidate: candidate, written: written, renewedAt: started, lost: lost), outageExpected: false)
                return .held(holder: candidate.holderIdentity, tookOverFrom: from)
            } catch {
                switch error {
                case .held(let by, let renewedAt, let expiresAt):
                    count(.held, "the Lease \(Self.lockName) is held by \(by); \(candidate.holderIdentity) does not start")
                    throw .held(lock: Self.lockName, holder: by, renewedAt: renewedAt, expiresAt: expiresAt)
                case .conflict where attempt == 1:
                    count(.conflict, "writing the Lease \(Self.lockName) lost to another writer; reading it again")
                case .conflict:
                    count(.conflict, "writing the Lease \(Self.lockName) lost to another writer twice; \(candidate.holderIdentity) does not start")
                    throw .held(lock: Self.lockName, holder: "another controller writing it at this moment", renewedAt: nil, expiresAt: nil)
                case .unreachable(let reason):
                    guard outageAllowed else { throw .unreachable(lock: Self.lockName, reason: reason) }
                    begin(Holding(candidate: candidate, written: nil, renewedAt: started, lastFailure: reason, lost: lost), outageExpected: true)
                    return .localOnly(reason: reason)
                case .refused(let reason):
                    throw .refused(lock: Self.lockName, reason: reason)
                }
            }
        }
        preconditionFailure("the second attempt either returns or throws")
    }

    public func isHeld(at instant: Instant) -> Bool {
        state.withLock { state in
            guard case .holding(let holding) = state.phase else { return false }
            return state.outageExpected || instant < holding.renewedAt.adding(seconds: terms.renewDeadlineSeconds)
        }
    }

    public func expectOutage(_ expected: Bool, at instant: Instant) {
        state.withLock { state in
            if state.outageExpected && !expected, case .holding(var holding) = state.phase {
                holding.renewedAt = max(holding.renewedAt, instant)
                state.phase = .holding(holding)
            }
            state.outageExpected = expected
        }
    }

    public func release() async {
        let instant = now()
        let (renewal, holding, lapsed) = state.withLock { state -> (Task<Void, Never>?, Holding?, Bool) in
            defer {
                state.renewal = nil
                state.phase = .idle
            }
            guard case .holding(let holding) = state.phase else { return (state.renewal, nil, false) }
            // Past its deadline unnoticed by the renewal (the holder saw it first, through
            // isHeld, and stopped): lost all the same, and counted once like any loss.
            let lapsed = !state.outageExpected && instant >= holding.renewedAt.adding(seconds: terms.renewDeadlineSeconds)
            return (state.renewal, holding, lapsed)
        }
        if lapsed {
            count(.lost, "lost the Lease \(Self.lockName): not renewed for \(terms.renewDeadlineSeconds) s "
                  + "(the process was paused or starved); stopped without acting further")
        }
        renewal?.cancel()
        await renewal?.value
        guard let holding, holding.written != nil else { return }
        do {
            // Only a Lease still naming this holder is given up; anything else is left alone.
            guard var current = try await read(), current.spec.holderIdentity == holding.candidate.holderIdentity else { return }
            current.spec = LeaseElection.released(current.spec, now: now())
            _ = try await client.replace(CoordinationLease.resource, current.json)
        } catch {
            log.record(.renewFailed, "could not give the Lease \(Self.lockName) back (\(error)); it lapses \(terms.durationSeconds) s after its last renewal")
        }
    }

    /// Gives back a Lease that still names this controller (any of its operations): one left by
    /// an operation that ended without releasing it (killed). Only for a caller holding the state
    /// directory's lease, so that none of this controller's processes runs an operation now.
    /// Returns the holder given back; nil when the Lease names another controller or nobody.
    public func releaseLeftover() async throws(ClusterLockError) -> String? {
        do {
            guard var current = try await read(), let holder = current.spec.holderIdentity,
                  LeaseElection.Candidate.controllerID(of: holder) == controllerID else { return nil }
            current.spec = LeaseElection.released(current.spec, now: now())
            _ = try await call { try await self.client.replace(CoordinationLease.resource, current.json) }
            return holder
        } catch {
            switch error {
            case .conflict: throw .held(lock: Self.lockName, holder: "another controller writing it at this moment", renewedAt: nil, expiresAt: nil)
            case .held(let by, let renewedAt, let expiresAt): throw .held(lock: Self.lockName, holder: by, renewedAt: renewedAt, expiresAt: expiresAt)
            case .unreachable(let reason): throw .unreachable(lock: Self.lockName, reason: reason)
            case .refused(let reason): throw .refused(lock: Self.lockName, reason: reason)
            }
        }
    }

    // MARK: - Reading

    /// The Lease as the cluster holds it now, nil when none exists.
    public func observe() async throws(ClusterLockError) -> CoordinationLease? {
        do {
            return try await read()
        } catch .unreachable(let reason) {
            throw .unreachable(lock: Self.lockName, reason: reason)
        } catch .refused(let reason) {
            throw .refused(lock: Self.lockName, reason: reason)
        } catch {
            throw .unreachable(lock: Self.lockName, reason: "\(error)")
        }
    }

    // MARK: - Writing

    /// Why a read or write did not go through.
    private enum Failure: Error {
        case held(by: String, renewedAt: Instant?, expiresAt: Instant?)
        case conflict
        case unreachable(String)
        case refused(String)
    }

    /// Reads the Lease, decides, writes: the Lease written and whom it was taken from.
    private func write(_ candidate: LeaseElection.Candidate, takeOver: Bool, at instant: Instant) async throws(Failure)
        -> (CoordinationLease, String?) {
        let observed = try await read()
        switch LeaseElection.decide(observed?.spec, candidate: candidate, durationSeconds: terms.durationSeconds, now: instant, takeOver: takeOver) {
        case .held(let by, let renewedAt, let expiresAt):
            throw .held(by: by, renewedAt: renewedAt, expiresAt: expiresAt)
        case .create(let spec):
            let lease = CoordinationLease(namespace: Self.namespace, name: Self.name, spec: spec)
            return (CoordinationLease(json: try await call { try await self.client.create(CoordinationLease.resource, lease.json) }), nil)
        case .update(let spec, let from):
            guard var lease = observed else { preconditionFailure("an update decides on a Lease read") }
            lease.spec = spec
            return (CoordinationLease(json: try await call { try await self.client.replace(CoordinationLease.resource, lease.json) }), from)
        }
    }

    private func read() async throws(Failure) -> CoordinationLease? {
        do {
            return try await call { CoordinationLease(json: try await self.client.get(CoordinationLease.resource, Self.name, namespace: Self.namespace)) }
        } catch .refused(let reason) where reason.hasPrefix("NotFound:") {
            return nil
        }
    }

    /// Runs one API call, sorting its failure: 409 (Conflict or AlreadyExists) is a lost race,
    /// no answer or a 5xx/429 is an API that cannot be reached, anything else a refusal
    /// (`NotFound: …` for a 404, so reading tells an absent Lease apart).
    private func call<T>(_ body: () async throws -> T) async throws(Failure) -> T {
        do {
            return try await body()
        } catch let error as KubeAPIError {
            if error.code == 409 { throw .conflict }
            if error.code >= 500 || error.code == 429 { throw .unreachable(error.description) }
            if error.isNotFound { throw .refused("NotFound: \(error.description)") }
            throw .refused(error.description)
        } catch {
            throw .unreachable("\(error)")
        }
    }

    // MARK: - Renewing

    private func begin(_ holding: Holding, outageExpected: Bool) {
        state.withLock { state in
            state.phase = .holding(holding)
            state.outageExpected = outageExpected
            state.renewal?.cancel()
            state.renewal = Task { [self] in await renewLoop() }
        }
    }

    /// Every `renewIntervalSeconds` until released or lost: first the deadline (a process that
    /// was paused past it is lost whatever the Lease says now), then one renewal.
    private func renewLoop() async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: .seconds(terms.renewIntervalSeconds)) } catch { return }
            let started = now()
            let checked = state.withLock { state -> Holding? in
                guard case .holding(let holding) = state.phase else { return nil }
                if !state.outageExpected, started >= holding.renewedAt.adding(seconds: terms.renewDeadlineSeconds) { return nil }
                return holding
            }
            guard let holding = checked else {
                declareLost { holding in
                    "not renewed for \(self.terms.renewDeadlineSeconds) s (last failure: \(holding.lastFailure ?? "none; the process was paused or starved"))"
                }
                return
            }
            do {
                let (written, from) = try await write(holding.candidate, takeOver: false, at: started)
                if let from {
                    // Lapsed, or this controller's earlier operation (a datastore restore brings an older Lease back).
                    count(.tookOver, "took the Lease \(Self.lockName) over from \(from) for \(holding.candidate.holderIdentity)")
                } else if holding.written == nil {
                    logger.notice("the API answers again: took the Lease \(Self.lockName) for \(holding.candidate.holderIdentity)")
                }
                guard !Task.isCancelled else { return }
                state.withLock { state in
                    guard case .holding(var current) = state.phase else { return }
                    current.written = written
                    current.renewedAt = max(current.renewedAt, started)
                    current.lastFailure = nil
                    state.phase = .holding(current)
                }
            } catch .held(let by, _, _) {
                declareLost { _ in "\(by) holds it now" }
                return
            } catch {
                let reason: String
                switch error {
                case .conflict:
                    reason = "another writer changed the Lease first (409 Conflict)"
                    count(.conflict, "renewing the Lease \(Self.lockName): \(reason); trying again in \(terms.renewIntervalSeconds) s")
                case .unreachable(let why), .refused(let why):
                    reason = why
                    count(.renewFailed, "renewing the Lease \(Self.lockName) failed: \(why); trying again in \(terms.renewIntervalSeconds) s")
                case .held: preconditionFailure("caught above")
                }
                state.withLock { state in
                    guard case .holding(var current) = state.phase else { return }
                    current.lastFailure = reason
                    state.phase = .holding(current)
                }
            }
        }
    }

    /// Marks the Lease lost (once) and tells the holder why.
    private func declareLost(_ why: (Holding) -> String) {
        let told: (@Sendable (String) -> Void, String)? = state.withLock { state in
            guard case .holding(let holding) = state.phase else { return nil }
            let reason = why(holding)
            state.phase = .lost(reason)
            return (holding.lost, reason)
        }
        guard let (tell, reason) = told else { return }
        count(.lost, "lost the Lease \(Self.lockName): \(reason); stopping without acting further")
        tell(reason)
    }

    private func count(_ event: Event, _ line: @autoclosure () -> String) {
        record(event)
        log.record(event, line())
    }
}
