import Synchronization
import UpkeepRollout
import UpkeepStore
import UpkeepCore

/// Drives a `RolloutEngine`: feeds it events, persists the engine and the transition in one
/// transaction (under the lease) BEFORE performing the actions it returned, then performs them —
/// requests to agents run concurrently and come back as `.replied` / `.requestFailed`, a look at
/// the cluster comes back as `.observed`, a wake-up as `.tick`. A crash at any moment therefore
/// leaves a state whose requests may or may not have gone out, and `resume` sends those again
/// with the same operation ids.
///
/// It holds the store's lease for the whole run and renews it every third of its TTL; when the
/// lease is lost it stops at once without acting further. Every wait is bounded: requests by
/// their deadline plus a grace, looks at the cluster by `observeTimeoutSeconds`, the event
/// queue by the number of tasks that can feed it. It never decides anything the engine decides.
public actor RolloutRuntime {
    private enum Input: Sendable {
        /// `token` names the task that produced it (nil: the timer or an unsent request).
        case event(RolloutEngine.Event, token: Int?)
        case observeFailed(String, token: Int)
        case leaseLost(StoreError)
        case warning(String)
    }

    private let store: StateStore
    private let transport: any AgentTransport
    private let observer: any ClusterObserver
    private let clock: any RuntimeClock
    private let configuration: RuntimeConfiguration
    private let updates: @Sendable (RuntimeUpdate) -> Void

    private var running = false
    private var continuation: AsyncStream<Input>.Continuation?
    /// Requests in flight, by token: each task is the request's deadline watch (cancelling it
    /// cancels the request).
    private var sends: [Int: Task<Void, Never>] = [:]
    private var observation: (token: Int, task: Task<Void, Never>)?
    private var timer: Task<Void, Never>?
    private var renewal: Task<Void, Never>?
    private var tokens = 0

    /// `updates` receives notices and progress after they are persisted (for the CLI's view).
    public init(store: StateStore, transport: any AgentTransport, observer: any ClusterObserver, clock: any RuntimeClock = WallClock(),
                configuration: RuntimeConfiguration = RuntimeConfiguration(), updates: @escaping @Sendable (RuntimeUpdate) -> Void = { _ in }) {
        self.store = store
        self.transport = transport
        self.observer = observer
        self.clock = clock
        self.configuration = configuration
        self.updates = updates
    }

    /// Records `engine` as a new rollout and carries it out until it finishes or blocks.
    public func start(_ engine: RolloutEngine) async throws(RuntimeError) -> RunResult {
        try await run { (store, holder, now) throws(StoreError) in
            try store.createRollout(engine, holder: holder, now: now)
            return (engine, [.start])
        }
    }

    /// Carries on `rolloutID` (or the newest unfinished rollout) from its persisted state:
    /// every unanswered request is sent again with its operation id, what was blocked is retried.
    /// `windows`, when given, are the maintenance windows it keeps from now on (`.some(nil)`: none).
    public func resume(rolloutID: String? = nil, windows: [MaintenanceWindow]?? = nil) async throws(RuntimeError) -> RunResult {
        try await run { (store, _, _) throws(StoreError) in
            let engine = try store.resumableEngine(rolloutID: rolloutID)
            let adopt: [RolloutEngine.Event] = windows.map { [.setMaintenanceWindows($0)] } ?? []
            // Created but killed before its start was recorded: start it now.
            return (engine, adopt + [engine.status == .notStarted ? .start : .resume])
        }
    }

    /// `upkeep rollback --restore`: undoes the newest hop of `rolloutID` not yet undone by
    /// restoring its snapshot, from a blocked or finished rollout. Refused (`restoreRefused`)
    /// when the engine's `restoreChoice` refuses, and when another rollout was made after it or
    /// has not finished (restoring an older rollout's snapshot would undo that one too).
    public func restore(rolloutID: String) async throws(RuntimeError) -> RunResult {
        try await run { (store, _, _) throws(StoreError) in
            let engine = try store.engine(rolloutID: rolloutID)
            if let newest = try store.history(limit: 1).first, newest.id != rolloutID {
                throw StoreError.restoreRefused("rollout \(newest.id) was made after \(rolloutID); restoring \(rolloutID)'s snapshot would "
                                                + "undo it as well: restore \(newest.id) first")
            }
            if case .refused(let why) = engine.restoreChoice { throw StoreError.restoreRefused(why) }
            return (engine, [.restore])
        }
    }

    /// Gives up `rolloutID` (or the newest unfinished rollout) under the lease, so no
    /// controller can be driving it at the same time: records the engine's `.abandon` transition
    /// and returns the engine as recorded and the notices saying what was left behind. Sends
    /// nothing to any agent and does not look at the cluster.
    public static func abandon(store: StateStore, configuration: RuntimeConfiguration = RuntimeConfiguration(), clock: any RuntimeClock = WallClock(),
                               rolloutID: String? = nil, reason: String) throws(RuntimeError) -> (engine: RolloutEngine, notices: [Notice]) {
        let holder = configuration.holder
        do {
            try store.acquireLease(holder: holder, ttlMilliseconds: configuration.leaseTTLMilliseconds, now: clock.now(),
                                   forceTakeover: configuration.forceTakeover)
            defer { try? store.releaseLease(holder: holder) }
            var engine = try store.resumableEngine(rolloutID: rolloutID)
            let before = engine
            let now = clock.now()
            let event = RolloutEngine.Event.abandon(reason: reason)
            let actions = engine.handle(event, now: now)
            let notices = actions.compactMap { if case .notice(let notice) = $0 { notice } else { nil } }
            try store.record(Transition(engine: engine, before: before, event: Self.describe(event), actions: Self.describe(actions),
                                        notices: notices), holder: holder, now: now)
            return (engine, notices)
        } catch {
            throw RuntimeError.store(error)
        }
    }

    // MARK: - The run

    private func run(_ load: (StateStore, String, Instant) throws(StoreError) -> (RolloutEngine, [RolloutEngine.Event]))
        async throws(RuntimeError) -> RunResult {
        guard !running else { throw RuntimeError.alreadyRunning }
        running = true
        defer { running = false }
        let holder = configuration.holder
        do {
            try store.acquireLease(holder: holder, ttlMilliseconds: configuration.leaseTTLMilliseconds, now: clock.now(),
                                   forceTakeover: configuration.forceTakeover)
        } catch {
            throw RuntimeError.store(error)
        }
        do {
            let (engine, first) = try load(store, holder, clock.now())
            let result = try await drive(engine, first: first)
            try? store.releaseLease(holder: holder)
            return result
        } catch let error as StoreError {
            if case .leaseLost = error {} else { try? store.releaseLease(holder: holder) }
            throw RuntimeError.store(error)
        } catch let error as RuntimeError {
            try? store.releaseLease(holder: holder)
            throw error
        } catch {
            try? store.releaseLease(holder: holder)
            preconditionFailure("unexpected error \(error)")
        }
    }

    /// `first` are handled in order before anything else (each persisted as its own transition).
    private func drive(_ initial: RolloutEngine, first: [RolloutEngine.Event]) async throws -> RunResult {
        // Producers: at most `sendsInFlightMax` requests, one look, one timer, one renewal, and
        // unsent requests (bounded by what one `handle` returns) — so this bound is never reached.
        let (stream, continuation) = AsyncStream.makeStream(of: Input.self,
                                                            bufferingPolicy: .bufferingOldest(configuration.sendsInFlightMax * 4 + 64))
        self.continuation = continuation
        defer { stopTasks() }
        startRenewal()
        var engine = initial
        // Only the last of them decides whether the run is over: a blocked rollout given its
        // windows first is still blocked until its `resume`.
        for (position, event) in first.enumerated() {
            if let result = try step(&engine, event, settles: position == first.count - 1) { return result }
        }
        for await input in stream {
            switch input {
            case .event(let event, let token):
                if let token { settle(token) }
                if let result = try step(&engine, event) { return result }
            case .observeFailed(let message, let token):
                settle(token)
                updates(.warning("could not read the cluster: \(message)"))
                try checkStalled(engine)
            case .leaseLost(let error):
                throw error
            case .warning(let message):
                updates(.warning(message))
            }
        }
        throw RuntimeError.cancelled
    }

    /// Handles one event: persist first, then act. Returns the result when the run is over.
    /// Handles one event and carries out its actions; the run's result when it is over. With
    /// `settles` false (an event that leads another), a block does not end the run.
    private func step(_ engine: inout RolloutEngine, _ event: RolloutEngine.Event, settles: Bool = true) throws -> RunResult? {
        let now = clock.now()
        let before = engine
        let actions = engine.handle(event, now: now)
        let notices = actions.compactMap { if case .notice(let notice) = $0 { notice } else { nil } }
        let transition = Transition(engine: engine, before: before, event: Self.describe(event), actions: Self.describe(actions), notices: notices)
        try store.record(transition, holder: configuration.holder, now: now)

        for notice in notices { updates(.notice(notice, at: now)) }
        if !transition.changedSteps.isEmpty { updates(.moves(engine.progress, at: now)) }
        var wake: Instant?
        for action in actions {
            switch action {
            case .send(let request): send(request)
            case .observeCluster: observe()
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
        if sends.isEmpty && observation == nil && timer == nil { throw RuntimeError.stalled("\(engine.status)") }
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
        let (transport, updates) = (self.transport, self.updates)
        let id = request.operationID
        sends[token] = watch(token, seconds: waitSeconds,
                             timedOut: .event(.requestFailed(operationID: id, message: "no answer within \(waitSeconds) s"), token: token)) {
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

    private func startRenewal() {
        let (store, clock, continuation) = (self.store, self.clock, self.continuation)
        let holder = configuration.holder
        let interval = max(configuration.leaseTTLMilliseconds / 3, 1)
        renewal = Task {
            while !Task.isCancelled {
                do { try await clock.sleep(until: clock.now().adding(milliseconds: interval)) } catch { return }
                do throws(StoreError) {
                    try store.renewLease(holder: holder, now: clock.now())
                } catch {
                    if case .leaseLost = error {
                        Self.deliver(.leaseLost(error), to: continuation)
                        return
                    }
                    Self.deliver(.warning("renewing the lease failed: \(error)"), to: continuation)
                }
            }
        }
    }

    /// The task with `token` has delivered: stop its deadline watch.
    private func settle(_ token: Int) {
        sends.removeValue(forKey: token)?.cancel()
        if let observation, observation.token == token {
            observation.task.cancel()
            self.observation = nil
        }
    }

    private func stopTasks() {
        for task in sends.values { task.cancel() }
        sends = [:]
        observation?.task.cancel()
        observation = nil
        timer?.cancel()
        timer = nil
        renewal?.cancel()
        renewal = nil
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

    // MARK: - Descriptions for the transition log

    static func describe(_ event: RolloutEngine.Event) -> String {
        switch event {
        case .start: return "start"
        case .resume: return "resume"
        case .tick: return "tick"
        case .replied(let id, let reply): return "replied \(id): \(reply)"
        case .requestFailed(let id, let message): return "no answer to \(id): \(message)"
        case .observed(let observation):
            let nodes = observation.inventory.nodes
            let etcd = observation.etcdHealthy.map { $0 ? ", etcd healthy" : ", etcd unhealthy" } ?? ""
            return "observed \(nodes.count) nodes (\(nodes.filter(\.ready).count) Ready, \(nodes.filter(\.cordoned).count) cordoned), "
                + "\(observation.inventory.volumes.count) volumes\(etcd)"
        case .abandon(let reason): return "abandon: \(reason)"
        case .restore: return "restore (the operator's rollback --restore)"
        case .setMaintenanceWindows(let windows): return "maintenance windows: \(windows.map(\.listed) ?? "none")"
        }
    }

    static func describe(_ actions: [RolloutEngine.Action]) -> String {
        var parts: [String] = []
        var notices = 0
        for action in actions {
            switch action {
            case .send(let request): parts.append("send \(request.operationID) to \(request.node)")
            case .observeCluster: parts.append("observe")
            case .wake(let at): parts.append("wake at \(at.milliseconds)")
            case .notice: notices += 1
            case .finished(let outcome): parts.append("finished \(outcome)")
            }
        }
        if notices > 0 { parts.append("\(notices) notice\(notices == 1 ? "" : "s")") }
        return parts.joined(separator: "; ")
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
