import Synchronization
import UpkeepRollout
import UpkeepStore
import UpkeepCore

/// Drives a `RolloutEngine`: feeds it events, persists the transition (the event, what changed;
/// the store rebuilds the engine from them) in one transaction (under the lease) BEFORE
/// performing the actions it returned, then performs them —
/// requests to agents run concurrently and come back as `.replied` / `.requestFailed`, a look at
/// the cluster comes back as `.observed`, a wake-up as `.tick`. A crash at any moment therefore
/// leaves a state whose requests may or may not have gone out, and `resume` sends those again
/// with the same operation ids.
///
/// It holds an `OperationLock` for the whole run: the store's lease and, when given, the cluster
/// lock (the Kubernetes Lease). Before every action it checks that both are still held; when
/// either is lost it records the rollout blocked (`RolloutEngine.Event.lockLost`) and stops at
/// once without acting further, so no two controllers ever drive nodes at once. Every wait is bounded: requests by
/// their deadline plus a grace, looks at the cluster by `observeTimeoutSeconds`, the event
/// queue by the number of tasks that can feed it. It never decides anything the engine decides.
///
/// What must happen under the same lock before and after the rollout is driven, and is none of
/// the runtime's business (Flux suspended around it), is the `RunBracket` it is given.
public actor RolloutRuntime {
    private enum Input: Sendable {
        /// `token` names the task that produced it (nil: the timer or an unsent request).
        case event(RolloutEngine.Event, token: Int?)
        case observeFailed(String, token: Int)
        /// The operation lock was lost (why): stop without acting further.
        case lockLost(String)
        /// The gates were not read in time: every gate asked for is reported unread.
        case gateReadTimedOut(GateReport, token: Int)
        case warning(String)
        /// The cluster changed (a watch event): look now.
        case clusterChanged
    }

    private let store: StateStore
    private let transport: any AgentTransport
    private let observer: any ClusterObserver
    private let clusterLock: (any ClusterLock)?
    /// A lock the caller holds around this runtime's runs (the stages of `upkeep apply --all`).
    private let heldLock: OperationLock?
    private let gates: (any GateReader)?
    private let bracket: (any RunBracket)?
    private let clock: any RuntimeClock
    private let configuration: RuntimeConfiguration
    private let updates: @Sendable (RuntimeUpdate) -> Void

    private var running = false
    private var continuation: AsyncStream<Input>.Continuation?
    /// Requests in flight, by token: each task is the request's deadline watch (cancelling it
    /// cancels the request).
    private var sends: [Int: Task<Void, Never>] = [:]
    private var observation: (token: Int, task: Task<Void, Never>)?
    /// Follows the cluster's changes (`ClusterChangeFeed`) for the run.
    private var changes: Task<Void, Never>?
    /// A change arrived while a look was under way: look once more after it.
    private var changedDuringLook = false
    private var changeSignal: ChangeSignal?
    private var gateRead: (token: Int, task: Task<Void, Never>)?
    private var timer: Task<Void, Never>?
    /// The lock of the run under way.
    private var lock: OperationLock?
    private var tokens = 0

    /// `updates` receives notices and progress after they are persisted (for the CLI's view).
    /// `lock`: the cluster lock every run takes after the store's lease (nil: the store's alone).
    /// `gates` reads the configured gates when the engine asks (`checkGates`); without one, every
    /// gate asked for is reported unread, and holds. `bracket`: what every run does under its
    /// lock before and after driving (nil: nothing). `heldLock`: a lock the caller took and gives
    /// back itself (a set of operations under one lock): a run neither takes nor releases it, and
    /// stops as on any loss when it is lost.
    public init(store: StateStore, transport: any AgentTransport, observer: any ClusterObserver, lock: (any ClusterLock)? = nil,
                heldLock: OperationLock? = nil, gates: (any GateReader)? = nil, bracket: (any RunBracket)? = nil,
                clock: any RuntimeClock = WallClock(), configuration: RuntimeConfiguration = RuntimeConfiguration(),
                updates: @escaping @Sendable (RuntimeUpdate) -> Void = { _ in }) {
        self.store = store
        self.transport = transport
        self.observer = observer
        self.clusterLock = lock
        self.heldLock = heldLock
        self.gates = gates
        self.bracket = bracket
        self.clock = clock
        self.configuration = configuration
        self.updates = updates
    }

    /// Records `engine` as a new rollout made by `kind` (apply, rollback or recover; who started
    /// it is the configuration's initiator) and carries it out until it finishes or blocks.
    public func start(_ engine: RolloutEngine, as kind: OperationKind = .apply) async throws(RuntimeError) -> RunResult {
        let stamp = OperationStamp(kind, by: configuration.initiator)
        return try await run(operation: "\(kind.rawValue) \(engine.rolloutID)", rolloutID: engine.rolloutID, recorded: engine) { (store, holder, now) throws(StoreError) in
            try store.createRollout(engine, holder: holder, now: now, stamp: stamp)
            return Loaded(engine: engine, first: [.start])
        }
    }

    /// Carries on `rolloutID` (or the newest unfinished rollout) from its persisted state:
    /// every unanswered request is sent again with its operation id, what was blocked is retried.
    /// `windows`, when given, are the maintenance windows it keeps from now on (`.some(nil)`: none).
    public func resume(rolloutID: String? = nil, windows: [MaintenanceWindow]?? = nil) async throws(RuntimeError) -> RunResult {
        let id: String
        do throws(StoreError) {
            if let rolloutID {
                id = rolloutID
            } else {
                guard let unfinished = try store.unfinishedRollout() else { throw StoreError.nothingToResume }
                id = unfinished.id
            }
        } catch {
            throw RuntimeError.store(error)
        }
        let stamp = OperationStamp(.resume, by: configuration.initiator)
        return try await run(operation: "resume \(id)", rolloutID: id, recorded: try? store.engine(rolloutID: id)) { (store, _, _) throws(StoreError) in
            let engine = try store.resumableEngine(rolloutID: id)
            let adopt: [RolloutEngine.Event] = windows.map { [.setMaintenanceWindows($0)] } ?? []
            // Created but killed before its start was recorded: start it now.
            return Loaded(engine: engine, first: adopt + [engine.status == .notStarted ? .start : .resume], stamp: stamp)
        }
    }

    /// `upkeep rollback --restore`: undoes the newest hop of `rolloutID` not yet undone by
    /// restoring its snapshot, from a blocked or finished rollout. Refused (`restoreRefused`)
    /// when the engine's `restoreChoice` refuses, and when another rollout was made after it or
    /// has not finished (restoring an older rollout's snapshot would undo that one too).
    public func restore(rolloutID: String) async throws(RuntimeError) -> RunResult {
        let stamp = OperationStamp(.restore, by: configuration.initiator)
        return try await run(operation: "restore \(rolloutID)", rolloutID: rolloutID, recorded: try? store.engine(rolloutID: rolloutID)) { (store, _, _) throws(StoreError) in
            let engine = try store.engine(rolloutID: rolloutID)
            if let newest = try store.history(limit: 1).first, newest.id != rolloutID {
                throw StoreError.restoreRefused("rollout \(newest.id) was made after \(rolloutID); restoring \(rolloutID)'s snapshot would "
                                                + "undo it as well: restore \(newest.id) first")
            }
            if case .refused(let why) = engine.restoreChoice { throw StoreError.restoreRefused(why) }
            return Loaded(engine: engine, first: [.restore], stamp: stamp)
        }
    }

    /// Gives up `rolloutID` (or the newest unfinished rollout) under the store's lease, so no
    /// process of this controller can be driving it at the same time (the rollout lives in this
    /// state directory alone, so the cluster lock is not needed): records the engine's `.abandon`
    /// transition with who did it, and returns the engine as recorded and the notices saying what
    /// was left behind. Sends nothing to any agent and does not look at the cluster.
    public static func abandon(store: StateStore, configuration: RuntimeConfiguration = RuntimeConfiguration(), clock: any RuntimeClock = WallClock(),
                               rolloutID: String? = nil, reason: String) throws(RuntimeError) -> (engine: RolloutEngine, notices: [Notice]) {
        let holder = configuration.holder
        do {
            try store.acquireLease(holder: holder, ttlMilliseconds: configuration.leaseTTLMilliseconds, now: clock.now(),
                                   forceTakeover: configuration.forceTakeover)
            defer { try? store.releaseLease(holder: holder) }
            var engine: RolloutEngine
            var behind: Notice?
            do {
                engine = try store.resumableEngine(rolloutID: rolloutID)
            } catch .replayDiverged(let id, let sequence, _, _) {
                // This upkeep's engine cannot rebuild the rollout (another version ran it). Giving
                // it up must still be possible: from its last snapshot, saying what that misses.
                let snapshot = try store.snapshotEngine(rolloutID: id)
                engine = snapshot.engine
                behind = Notice(.warning, "this upkeep cannot replay rollout \(id) past transition \(sequence - 1) (another upkeep version decided "
                    + "otherwise there); it is abandoned from its state after transition \(snapshot.sequence) of \(snapshot.transitions), so what "
                    + "it did after that (cordons, started nodes) is not in this state: look at `kubectl get nodes` and "
                    + "`upkeep history \(id)`, and uncordon with `kubectl uncordon NODE` what Upkeep left cordoned once it is healthy")
            }
            let before = engine
            let now = clock.now()
            let event = RolloutEngine.Event.abandon(reason: reason)
            let actions = engine.handle(event, now: now)
            let notices = (behind.map { [$0] } ?? []) + actions.compactMap { if case .notice(let notice) = $0 { notice } else { nil } }
            try store.record(Transition(engine: engine, before: before, event: event, actions: actions,
                                        notices: notices), holder: holder, now: now, stamp: OperationStamp(.abandon, by: configuration.initiator))
            return (engine, notices)
        } catch {
            throw RuntimeError.store(error)
        }
    }

    // MARK: - The run

    /// What a run begins with: the engine, the events handled first (in order, each its own
    /// transition), and the operation recorded with the first of them.
    private struct Loaded {
        var engine: RolloutEngine
        var first: [RolloutEngine.Event]
        var stamp: OperationStamp? = nil
    }

    /// Takes the lock for `operation` (allowing an API outage when the rollout as `recorded` keeps
    /// the API down), opens the bracket, loads under it, drives, closes the bracket, and gives the
    /// lock back.
    private func run(operation: String, rolloutID: String, recorded: RolloutEngine?,
                     _ load: (StateStore, String, Instant) throws(StoreError) -> Loaded)
        async throws(RuntimeError) -> RunResult {
        guard !running else { throw RuntimeError.alreadyRunning }
        running = true
        defer { running = false }
        // Producers: at most `sendsInFlightMax` requests, one look, one timer, one lock loss, one
        // cluster change (`ChangeSignal`), and unsent requests (bounded by what one `handle`
        // returns) — so this bound is never reached.
        let (stream, continuation) = AsyncStream.makeStream(of: Input.self,
                                                            bufferingPolicy: .bufferingOldest(configuration.sendsInFlightMax * 4 + 64))
        self.continuation = continuation
        let lock = heldLock ?? OperationLock(store: store, cluster: clusterLock, configuration: configuration, clock: clock)
        let grant: ClusterLockGrant?
        if heldLock != nil {
            grant = nil
            lock.whenLost { reason in Self.deliver(.lockLost(reason), to: continuation) }
        } else {
            do {
                grant = try await lock.acquire(operation: operation, outageAllowed: recorded?.takesTheAPIDown ?? false) { reason in
                    Self.deliver(.lockLost(reason), to: continuation)
                }
            } catch {
                stopTasks()
                throw error
            }
        }
        self.lock = lock
        followChanges(continuation)
        // Every way out: the tasks first (nothing more is sent), then the lock (the caller's stays held).
        let owned = heldLock == nil
        func end() async {
            stopTasks()
            self.lock = nil
            if owned { await lock.release() }
        }
        switch grant {
        case .localOnly(let reason)?:
            updates(.warning("the Kubernetes API does not answer (\(reason)): the cluster Lease is not taken, and only this state "
                             + "directory's lease fences this \(operation); make sure no other controller works on this cluster "
                             + "(the Lease is taken as soon as the API answers)"))
        case .held(_, let from?)?:
            updates(.warning("took the cluster Lease over from \(from)"))
        case .held(_, nil)?, nil:
            break
        }
        if let bracket {
            do {
                try await bracket.opening(rolloutID: rolloutID, lock: lock)
            } catch {
                await end()
                throw RuntimeError.notOpened(rolloutID: rolloutID, reason: "\(error)")
            }
        }
        let outcome: Result<RunResult, RuntimeError>
        do {
            let loaded = try load(store, configuration.holder, clock.now())
            outcome = .success(try await drive(loaded.engine, first: loaded.first, stamp: loaded.stamp, stream: stream))
        } catch let error as StoreError {
            outcome = .failure(.store(error))
        } catch let error as RuntimeError {
            outcome = .failure(error)
        } catch {
            preconditionFailure("unexpected error \(error)")
        }
        // Nothing more is sent while the bracket closes; the lock is still held.
        stopTasks()
        await bracket?.closing(rolloutID: rolloutID, lock: lock, outcome: outcome)
        await end()
        return try outcome.get()
    }

    /// `first` are handled in order before anything else (each persisted as its own transition;
    /// `stamp` with the first).
    private func drive(_ initial: RolloutEngine, first: [RolloutEngine.Event], stamp: OperationStamp?,
                       stream: AsyncStream<Input>) async throws -> RunResult {
        var engine = initial
        // Only the last of them decides whether the run is over: a blocked rollout given its
        // windows first is still blocked until its `resume`.
        for (position, event) in first.enumerated() {
            if let result = try step(&engine, event, stamp: position == 0 ? stamp : nil, settles: position == first.count - 1) { return result }
        }
        for await input in stream {
            switch input {
            case .event(let event, let token):
                if let token { settle(token) }
                if let result = try step(&engine, event) { return result }
                if case .observed = event, changedDuringLook {
                    changedDuringLook = false
                    observe()
                }
            case .clusterChanged:
                changeSignal?.lower()
                if observation == nil { observe() } else { changedDuringLook = true }
            case .observeFailed(let message, let token):
                settle(token)
                changedDuringLook = false
                updates(.warning("could not read the cluster: \(message)"))
                try checkStalled(engine)
            case .lockLost(let reason):
                try stopForLostLock(&engine, reason)
            case .gateReadTimedOut(let report, let token):
                settle(token)
                updates(.warning("the gates were not read within \(configuration.gateReadTimeoutSeconds) s; each counts as unread"))
                if let result = try step(&engine, .gatesRead(report)) { return result }
            case .warning(let message):
                updates(.warning(message))
            }
        }
        throw RuntimeError.cancelled
    }

    /// The lock is gone: nothing more is sent. The engine blocks (`lockLost`), which is recorded
    /// when this state directory's lease can still be had; then the run ends with `lockLost`.
    private func stopForLostLock(_ engine: inout RolloutEngine, _ reason: String) throws -> Never {
        stopTasks()
        let now = clock.now()
        let before = engine
        let event = RolloutEngine.Event.lockLost(reason: reason)
        let actions = engine.handle(event, now: now)
        let notices = actions.compactMap { if case .notice(let notice) = $0 { notice } else { nil } }
        if lock?.retakeLocalLease() == true {
            let transition = Transition(engine: engine, before: before, event: event, actions: actions, notices: notices)
            if (try? store.record(transition, holder: configuration.holder, now: now)) != nil {
                for notice in notices { updates(.notice(notice, at: now)) }
            }
        }
        throw RuntimeError.lockLost(rolloutID: engine.rolloutID, reason: reason)
    }

    /// Handles one event and carries out its actions (persisted first); the run's result when it
    /// is over. With `settles` false (an event that leads another), a block does not end the run.
    /// Nothing is handled once the lock is no longer held: the run stops instead.
    private func step(_ engine: inout RolloutEngine, _ event: RolloutEngine.Event, stamp: OperationStamp? = nil,
                      settles: Bool = true) throws -> RunResult? {
        let now = clock.now()
        if let lock, !lock.isHeld(at: now) {
            try stopForLostLock(&engine, lock.lostReason ?? "its Lease was not renewed in time (this process was paused or cut off)")
        }
        let before = engine
        let actions = engine.handle(event, now: now)
        let notices = actions.compactMap { if case .notice(let notice) = $0 { notice } else { nil } }
        let transition = Transition(engine: engine, before: before, event: event, actions: actions, notices: notices)
        do {
            try store.record(transition, holder: configuration.holder, now: now, stamp: stamp)
        } catch {
            guard case .leaseLost = error else { throw error }
            engine = before
            try stopForLostLock(&engine, error.description)
        }
        lock?.expectOutage(engine.takesTheAPIDown, at: now)

        for notice in notices { updates(.notice(notice, at: now)) }
        if !transition.changedSteps.isEmpty { updates(.moves(engine.progress, at: now)) }
        var wake: Instant?
        for action in actions {
            switch action {
            case .send(let request): send(request)
            case .observeCluster: observe()
            case .checkGates(let question): readGates(question)
            case .wake(let at): wake = at
            case .notice: break
            case .finished(.rolledBack(let cause)) where engine.restoreWasRequested: return .restored(cause: cause)
            case .finished(let outcome): return .finished(outcome)
            }
        }
        schedule(wake)
        guard settles else { return nil }
        if case .blocked(let reason) = engine.status, engine.liveRequestCount == 0, sends.isEmpty { return .blocked(reason: reason) }
        try checkStalled(engine)
        return nil
    }

    private func checkStalled(_ engine: RolloutEngine) throws {
        if sends.isEmpty && observation == nil && gateRead == nil && timer == nil { throw RuntimeError.stalled("\(engine.status)") }
    }

    // MARK: - Actions

    private func send(_ request: AgentRequest) {
        guard sends.count < configuration.sendsInFlightMax else {
            let message = "not sent: \(configuration.sendsInFlightMax) requests already in flight"
            yield(.event(.requestFailed(operationID: request.operationID, message: message), token: nil))
            return
        }
        let token = nextToken()
        let deadline = configuration.deadlineSeconds(for: request.command)
        let waitSeconds = deadline + configuration.answerGraceSeconds
        let (transport, updates, lock, clock) = (self.transport, self.updates, self.lock, self.clock)
        let id = request.operationID
        sends[token] = watch(token, seconds: waitSeconds,
                             timedOut: .event(.requestFailed(operationID: id, message: "no answer within \(waitSeconds) s"), token: token)) {
            // Checked again as it leaves: a process paused between deciding and sending must not send.
            if let lock, !lock.isHeld(at: clock.now()) {
                return .lockLost(lock.lostReason ?? "its Lease was not renewed in time (this process was paused or cut off)")
            }
            do {
                let reply = try await transport.send(request, deadlineSeconds: deadline) { line in
                    updates(.agentProgress(node: request.node, operationID: id, line: line))
                }
                return .event(.replied(operationID: id, reply), token: token)
            } catch {
                return .event(.requestFailed(operationID: id, message: "\(error)"), token: token)
            }
        }
    }

    /// With an observer that says when the cluster changes, each change (at most one waiting in
    /// the queue, however many arrive meanwhile) makes the runtime look at once; the engine's
    /// poll stays as the fallback for the time the feed cannot follow the cluster.
    private func followChanges(_ continuation: AsyncStream<Input>.Continuation) {
        guard let feed = observer as? any ClusterChangeFeed else { return }
        let signal = ChangeSignal()
        changeSignal = signal
        changes = Task {
            await feed.followChanges {
                if signal.raise() { Self.deliver(.clusterChanged, to: continuation) }
            }
        }
    }

    /// One look at a time: the engine asks again after its poll interval if this one fails.
    private func observe() {
        guard observation == nil else { return }
        let token = nextToken()
        let observer = self.observer
        let seconds = configuration.observeTimeoutSeconds
        observation = (token, watch(token, seconds: seconds, timedOut: .observeFailed("no answer within \(seconds) s", token: token)) {
            do {
                return .event(.observed(try await observer.observe()), token: token)
            } catch {
                return .observeFailed("\(error)", token: token)
            }
        })
    }

    /// One read of the gates at a time, bounded by `gateReadTimeoutSeconds`: past it every gate
    /// asked for is reported unread (and holds), and the engine asks again after its poll interval.
    private func readGates(_ question: GateQuestion) {
        guard gateRead == nil else { return }
        let token = nextToken()
        let seconds = configuration.gateReadTimeoutSeconds
        let timedOut = GateReport.unread(question, reason: "the gates were not read within \(seconds) s")
        guard let gates else {
            yield(.event(.gatesRead(GateReport.unread(question, reason: "this controller reads no gates")), token: nil))
            return
        }
        gateRead = (token, watch(token, seconds: seconds, timedOut: .gateReadTimedOut(timedOut, token: token)) {
            .event(.gatesRead(await gates.read(question)), token: token)
        })
    }

    /// Runs `work` and delivers its input, or `timedOut` after `seconds` (cancelling the work),
    /// whichever comes first. Cancelling the returned task cancels both.
    private func watch(_ token: Int, seconds: Int, timedOut: Input, _ work: @escaping @Sendable () async -> Input) -> Task<Void, Never> {
        let once = Once()
        let continuation = self.continuation
        let worker = Task {
            let input = await work()
            if once.claim() { Self.deliver(input, to: continuation) }
        }
        let limit = clock.now().adding(seconds: seconds)
        let clock = self.clock
        return Task {
            do {
                try await clock.sleep(until: limit)
            } catch {
                worker.cancel()
                return
            }
            if once.claim() {
                worker.cancel()
                Self.deliver(timedOut, to: continuation)
            }
        }
    }

    /// The engine's next wake-up replaces the previous one (it is computed from its whole state).
    private func schedule(_ wake: Instant?) {
        timer?.cancel()
        timer = nil
        guard let wake else { return }
        let (clock, continuation) = (self.clock, self.continuation)
        timer = Task {
            do { try await clock.sleep(until: wake) } catch { return }
            Self.deliver(.event(.tick, token: nil), to: continuation)
        }
    }

    /// The task with `token` has delivered: stop its deadline watch.
    private func settle(_ token: Int) {
        sends.removeValue(forKey: token)?.cancel()
        if let observation, observation.token == token {
            observation.task.cancel()
            self.observation = nil
        }
        if let gateRead, gateRead.token == token {
            gateRead.task.cancel()
            self.gateRead = nil
        }
    }

    private func stopTasks() {
        for task in sends.values { task.cancel() }
        sends = [:]
        observation?.task.cancel()
        observation = nil
        gateRead?.task.cancel()
        gateRead = nil
        timer?.cancel()
        timer = nil
        changes?.cancel()
        changes = nil
        changeSignal = nil
        changedDuringLook = false
        continuation?.finish()
        continuation = nil
    }

    private func nextToken() -> Int {
        tokens += 1
        return tokens
    }

    private func yield(_ input: Input) { Self.deliver(input, to: continuation) }

    private static func deliver(_ input: Input, to continuation: AsyncStream<Input>.Continuation?) {
        guard let continuation else { return }
        if case .dropped = continuation.yield(input) {
            preconditionFailure("the runtime's event queue overflowed: more producers than its bound allows")
        }
    }
}

/// Lets exactly one of two racing tasks deliver.
private final class Once: Sendable {
    private let claimed = Mutex(false)

    func claim() -> Bool {
        claimed.withLock { claimed in
            defer { claimed = true }
            return !claimed
        }
    }
}

/// At most one `.clusterChanged` waits in the runtime's queue: raised by the feed, lowered when
/// the runtime takes it.
private final class ChangeSignal: Sendable {
    private let raised = Mutex(false)

    /// True when it was down: the caller delivers one input.
    func raise() -> Bool {
        raised.withLock { raised in
            defer { raised = true }
            return !raised
        }
    }

    func lower() { raised.withLock { $0 = false } }
}
