import UpkeepRollout
import UpkeepCore
import UpkeepStore

/// Plans and policies for the store's and runtime's tests.
public enum RolloutFixtures {
    // A patch hop: its way back is a binary swap (a hop across a minor needs a restore).
    public static let from = version("v1.31.2+k3s1")
    public static let target = version("v1.31.4+k3s1")
    public static let offered = ["v1.31.2+k3s1", "v1.31.4+k3s1"].map(version)

    /// A version literal; a malformed one is a bug in the test.
    public static func version(_ text: String) -> K3sVersion {
        do { return try K3sVersion(text) } catch { preconditionFailure("bad version literal \(text): \(error)") }
    }

    /// One server and two agents at `from`.
    public static func world() -> WorldModel {
        WorldModel(servers: ["server-1"], agents: ["agent-1", "agent-2"], version: from)
    }

    public static func plan(_ world: WorldModel) throws -> Plan {
        try Planner.plan(inventory: world.inventory, target: target, available: offered, policy: PlanPolicy(agentConcurrency: 1))
    }

    /// Real time, short enough that waits are brief, long enough that nothing times out on a busy machine.
    public static func policy(autoRollback: AutoRollback = .binaries, snapshots: Bool = false) -> RolloutPolicy {
        RolloutPolicy(gateTimeoutSeconds: 120, drainTimeoutSeconds: 60, healthTimeoutSeconds: 60, verifyTimeoutSeconds: 120,
                      rebuildTimeoutSeconds: 120, watchdogTimeoutSeconds: 600, requestTriesMax: 8, retryDelayMilliseconds: 20,
                      retryDelayMaxMilliseconds: 200, pollIntervalMilliseconds: 20, autoRollback: autoRollback, prefetchWaves: 1,
                      takesHopSnapshots: snapshots)
    }

    public static func engine(_ id: String, world: WorldModel = world(), autoRollback: AutoRollback = .binaries,
                              snapshots: Bool = false) throws -> RolloutEngine {
        try RolloutEngine(rolloutID: id, plan: plan(world), policy: policy(autoRollback: autoRollback, snapshots: snapshots))
    }

    /// Runs `engine` to its end against `world` synchronously (answers at once, no clock), for
    /// tests that need a finished engine without the runtime. Returns every transition as
    /// (event, engine after it), at most `stepsMax` of them.
    /// `first`: the event that sets it going (`.restore` undoes a finished rollout's hop).
    public static func drive(_ engine: RolloutEngine, world: inout WorldModel, startAt: Instant = Instant(milliseconds: 0),
                             first: RolloutEngine.Event = .start,
                             stepsMax: Int = 2000) -> [(RolloutEngine.Event, RolloutEngine, [RolloutEngine.Action])] {
        timedDrive(engine, world: &world, startAt: startAt, first: first, stepsMax: stepsMax).map { ($0.event, $0.engine, $0.actions) }
    }

    /// `drive`, with the moment each event was handled at (what a replay hands `handle` again).
    public static func timedDrive(_ engine: RolloutEngine, world: inout WorldModel, startAt: Instant = Instant(milliseconds: 0),
                                  first: RolloutEngine.Event = .start, stepsMax: Int = 2000)
        -> [(event: RolloutEngine.Event, engine: RolloutEngine, actions: [RolloutEngine.Action], at: Instant)] {
        var engine = engine
        var now = startAt
        var queue: [RolloutEngine.Event] = [first]
        var transitions: [(event: RolloutEngine.Event, engine: RolloutEngine, actions: [RolloutEngine.Action], at: Instant)] = []
        while transitions.count < stepsMax {
            let event: RolloutEngine.Event
            if queue.isEmpty {
                now = now.adding(milliseconds: 50)
                event = .tick
            } else {
                event = queue.removeFirst()
            }
            let actions = engine.handle(event, now: now)
            transitions.append((event, engine, actions, now))
            for action in actions {
                switch action {
                case .send(let request): queue.append(.replied(operationID: request.operationID, world.execute(request)))
                case .observeCluster: queue.append(.observed(world.observation))
                case .checkGates: queue.append(.gatesRead(world.gates ?? GateReport(prometheus: .firing([]), blockingPods: .pods([]), etcd: .noEmbeddedEtcd)))
                case .finished: return transitions
                case .wake, .notice: break
                }
            }
        }
        return transitions
    }

    /// Records `engine` in `store` as a controller holding `holder`'s lease would: created at
    /// `start`, then each transition of `drive` `stepMilliseconds` apart (100 ms: a rollout of a few
    /// seconds), until the engine after a transition satisfies `stop` (or it finishes). Returns the
    /// engine as last recorded. Takes the lease and gives it back.
    @discardableResult
    public static func record(_ engine: RolloutEngine, world: WorldModel, in store: StateStore, holder: String = "test", start: Instant,
                              stepMilliseconds: Int64 = 100, stamp: OperationStamp? = nil,
                              until stop: (RolloutEngine) -> Bool = { _ in false }) throws -> RolloutEngine {
        try store.acquireLease(holder: holder, ttlMilliseconds: 60_000, now: start)
        try store.createRollout(engine, holder: holder, now: start, stamp: stamp)
        var world = world
        var before = engine
        var now = start
        for (event, after, actions) in drive(engine, world: &world, startAt: start) {
            now = now.adding(milliseconds: stepMilliseconds)
            let notices = actions.compactMap { if case .notice(let notice) = $0 { notice } else { nil } }
            try store.record(Transition(engine: after, before: before, event: "\(event)", actions: "\(actions.count)", notices: notices),
                             holder: holder, now: now)
            before = after
            if stop(after) { break }
        }
        try store.releaseLease(holder: holder)
        return before
    }
}
