import Synchronization
import UpkeepRollout
import UpkeepStore
import UpkeepCore

/// What an operation that drives nodes holds while it runs: its state directory's lease, so no
/// second process of this controller acts on the database, and the cluster lock (`ClusterLock`:
/// the Kubernetes Lease), so no second controller acts on the cluster. Taken in that order,
/// renewed in the background, given back in the other order.
///
/// `RolloutRuntime` holds one for every run; `upkeep update` holds one around its push and
/// wait, and `upkeep serve` will around each operation it starts. It never waits for another
/// holder: held is refused at once. Once lost it stays lost: the holder must act no further.
public final class OperationLock: Sendable {
    private let store: StateStore
    private let cluster: (any ClusterLock)?
    private let configuration: RuntimeConfiguration
    private let clock: any RuntimeClock

    private struct State {
        var lost: String?
        var tell: (@Sendable (String) -> Void)?
        var renewal: Task<Void, Never>?
        var acquired = false
    }

    private let state = Mutex(State())

    /// `cluster` nil: the state directory's lease alone (tests, a controller without an API).
    public init(store: StateStore, cluster: (any ClusterLock)?, configuration: RuntimeConfiguration, clock: any RuntimeClock = WallClock()) {
        self.store = store
        self.cluster = cluster
        self.configuration = configuration
        self.clock = clock
    }

    /// Takes the state directory's lease, then the cluster lock for `operation` (both taken over
    /// with `configuration.forceTakeover`). `outageAllowed`: go on with the local lease alone when
    /// the API does not answer (a recovery). `lost` is called at most once, from any task, when
    /// either can no longer be counted on. Returns what the cluster lock granted (nil without one).
    /// Throws `.store(.leaseHeld)` or `.lock(…)`, having given back what it took.
    @discardableResult
    public func acquire(operation: String, outageAllowed: Bool = false,
                        lost: @escaping @Sendable (String) -> Void) async throws(RuntimeError) -> ClusterLockGrant? {
        let holder = configuration.holder
        do {
            try store.acquireLease(holder: holder, ttlMilliseconds: configuration.leaseTTLMilliseconds, now: clock.now(),
                                   forceTakeover: configuration.forceTakeover)
        } catch {
            throw RuntimeError.store(error)
        }
        state.withLock { state in
            state.tell = lost
            state.acquired = true
        }
        var grant: ClusterLockGrant?
        if let cluster {
            do {
                grant = try await cluster.acquire(operation: operation, takeOver: configuration.forceTakeover, outageAllowed: outageAllowed) {
                    [weak self] reason in self?.lose(reason)
                }
            } catch {
                state.withLock { $0.acquired = false }
                try? store.releaseLease(holder: holder)
                throw RuntimeError.lock(error)
            }
        }
        startRenewal()
        return grant
    }

    /// Who is told of a loss from now on, instead of whom `acquire` named: an operation run under
    /// a lock its caller holds (a stage of `upkeep apply --all`). Told at once when it is lost already.
    public func whenLost(_ tell: @escaping @Sendable (String) -> Void) {
        let lost = state.withLock { state -> String? in
            state.tell = tell
            return state.lost
        }
        if let lost { tell(lost) }
    }

    /// Whether everything is still held at `now`: nothing was lost and the cluster lock was
    /// renewed within its deadline. Check it before every action.
    public func isHeld(at now: Instant) -> Bool {
        guard state.withLock({ $0.acquired && $0.lost == nil }) else { return false }
        return cluster?.isHeld(at: now) ?? true
    }

    /// Why it was lost, once it was.
    public var lostReason: String? { state.withLock { $0.lost } }

    /// The operation itself keeps the API down from now (`RolloutEngine.takesTheAPIDown`).
    public func expectOutage(_ expected: Bool, at now: Instant) {
        cluster?.expectOutage(expected, at: now)
    }

    /// After the cluster lock was lost: takes this state directory's lease again if it lapsed
    /// meanwhile and nobody else took it, so the stop can still be recorded. False when another
    /// process of this controller holds it (then nothing may be written).
    public func retakeLocalLease() -> Bool {
        do {
            try store.acquireLease(holder: configuration.holder, ttlMilliseconds: configuration.leaseTTLMilliseconds, now: clock.now())
            return true
        } catch {
            return false
        }
    }

    /// Stops renewing and gives back the cluster lock (only if it still names this controller)
    /// and the state directory's lease (only if still this holder's).
    public func release() async {
        let renewal = state.withLock { state -> Task<Void, Never>? in
            defer {
                state.renewal = nil
                state.acquired = false
            }
            return state.renewal
        }
        renewal?.cancel()
        await renewal?.value
        await cluster?.release()
        try? store.releaseLease(holder: configuration.holder)
    }

    // MARK: - Renewing the local lease

    private func startRenewal() {
        let (store, clock, holder) = (self.store, self.clock, configuration.holder)
        let interval = max(configuration.leaseTTLMilliseconds / 3, 1)
        let task = Task { [weak self] in
            while !Task.isCancelled {
                do { try await clock.sleep(until: clock.now().adding(milliseconds: interval)) } catch { return }
                do throws(StoreError) {
                    try store.renewLease(holder: holder, now: clock.now())
                } catch {
                    // A busy database is retried at the next interval; a lapsed or taken lease is lost.
                    if case .leaseLost = error {
                        self?.lose(error.description)
                        return
                    }
                }
            }
        }
        state.withLock { $0.renewal = task }
    }

    private func lose(_ reason: String) {
        let tell = state.withLock { state -> (@Sendable (String) -> Void)? in
            guard state.lost == nil else { return nil }
            state.lost = reason
            return state.tell
        }
        tell?(reason)
    }
}
