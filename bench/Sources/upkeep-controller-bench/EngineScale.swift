import Foundation
import UpkeepRollout
import UpkeepCore
import UpkeepSimulation
import UpkeepStore

/// A synthetic cluster whose agents answer at once: what `engine-scale` drives the real engine
/// and the real store against. Nodes are found by name in a dictionary and the observation is
/// kept up to date in place, so the world itself costs the same per event at any size.
struct InstantWorld {
    var observation: ClusterObservation
    var index: [String: Int] = [:]

    init(_ inventory: ClusterInventory) {
        observation = ClusterObservation(inventory: inventory, etcdHealthy: true)
        for (position, node) in inventory.nodes.enumerated() { index[node.name] = position }
    }

    mutating func execute(_ request: AgentRequest) -> AgentReply {
        guard let position = index[request.node] else { return .refused(code: "wrong-node", message: "no node \(request.node)") }
        switch request.command {
        case .cordon:
            defer { observation.inventory.nodes[position].cordoned = true }
            return .cordoned(wasUnschedulable: observation.inventory.nodes[position].cordoned)
        case .drain: return .drained
        case .stage: return .staged
        case .install(let version, _, _):
            observation.inventory.nodes[position].version = version
            return .installed(version: version)
        case .uncordon:
            observation.inventory.nodes[position].cordoned = false
            return .uncordoned(true)
        case .commit: return .committed(version: observation.inventory.nodes[position].version)
        default: return .refused(code: "unsupported", message: "engine-scale's world does not \(request.command.name)")
        }
    }
}

/// Plans a patch update of a synthetic cluster (`nodes` nodes, `volumes` volumes) and drives
/// it to its end through the real engine and the real store in `stateDirectory`, as the runtime
/// does: handle, record, then act (answers and looks at the cluster come back at once; a wake-up
/// moves the simulated clock). Prints what it wrote and how long it took.
func engineScale(nodes: Int, volumes: Int, concurrency: Int, stateDirectory: String) throws {
    let inventory = SyntheticCluster.make(servers: 5, agents: nodes - 5, volumes: volumes, version: version("v1.30.5+k3s1"), seed: 42)
    let plan = try Planner.plan(inventory: inventory, target: version("v1.30.6+k3s1"),
                                available: ["v1.30.5+k3s1", "v1.30.6+k3s1"].map(version), policy: PlanPolicy(agentConcurrency: concurrency))
    let policy = RolloutPolicy(gateTimeoutSeconds: 600, drainTimeoutSeconds: 60, healthTimeoutSeconds: 60, verifyTimeoutSeconds: 120,
                               rebuildTimeoutSeconds: 600, watchdogTimeoutSeconds: 1800, requestTriesMax: 3, retryDelayMilliseconds: 100,
                               retryDelayMaxMilliseconds: 1000, pollIntervalMilliseconds: 500, autoRollback: .binaries, prefetchWaves: 1,
                               takesHopSnapshots: false)
    var engine = try RolloutEngine(rolloutID: "scale", plan: plan, policy: policy)
    var world = InstantWorld(inventory)
    let store = try StateStore(stateDirectory: stateDirectory)
    let holder = "engine-scale"
    var now = Instant(milliseconds: 1_790_000_000_000)
    let writtenBefore = bytesWritten()
    var usageBefore = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usageBefore)
    let cpuBefore = Double(usageBefore.ru_utime.tv_sec + usageBefore.ru_stime.tv_sec)
        + Double(usageBefore.ru_utime.tv_usec + usageBefore.ru_stime.tv_usec) / 1e6
    let clock = ContinuousClock()
    let start = clock.now
    try store.acquireLease(holder: holder, ttlMilliseconds: 3_600_000, now: now)
    try store.createRollout(engine, holder: holder, now: now)
    var queue: [RolloutEngine.Event] = [.start]
    var head = 0
    var wake: Instant?
    var transitions = 0
    var outcome: RolloutOutcome?
    // CPU time in handle and in working out what changed (the rest is the store's and the world's).
    var engineCPU = 0.0
    while outcome == nil {
        let event: RolloutEngine.Event
        if head < queue.count {
            event = queue[head]
            // Handled events are let go at once, as the runtime does: a look at the cluster held
            // here would keep its own copy of the node list alive (the world changes it after).
            queue[head] = .tick
            head += 1
            if head > 4096 { queue.removeFirst(head); head = 0 }
        } else if let at = wake {
            now = max(now, at)
            wake = nil
            event = .tick
        } else {
            throw BenchError("the rollout stalled (\(engine.status)) after \(transitions) transitions")
        }
        let engineStart = threadCPUSeconds()
        let before = engine
        let actions = engine.handle(event, now: now)
        let notices = actions.compactMap { if case .notice(let notice) = $0 { notice } else { nil } }
        let transition = Transition(engine: engine, before: before, event: event, actions: actions, notices: notices)
        engineCPU += threadCPUSeconds() - engineStart
        if transitions % 1000 == 0 { try store.renewLease(holder: holder, now: now) }
        try store.record(transition, holder: holder, now: now)
        transitions += 1
        for action in actions {
            switch action {
            case .send(let request): queue.append(.replied(operationID: request.operationID, world.execute(request)))
            case .observeCluster: queue.append(.observed(world.observation))
            case .checkGates(let question): queue.append(.gatesRead(GateReport.unread(question, reason: "engine-scale reads no gates")))
            case .wake(let at): wake = at
            case .notice: break
            case .finished(let result): outcome = result
            }
        }
    }
    let elapsed = start.duration(to: clock.now)
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    let written = bytesWritten() - writtenBefore
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    let cpu = Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6 - cpuBefore
    let rolloutPeak = usage.ru_maxrss
    // Resume's cost: the engine rebuilt from its last snapshot and the events after it.
    let rebuildStart = clock.now
    let rebuilt = try store.engine(rolloutID: "scale")
    let rebuild = rebuildStart.duration(to: clock.now)
    guard rebuilt == engine else { throw BenchError("the engine rebuilt from the store is not the one driven") }
    getrusage(RUSAGE_SELF.rawValue, &usage)
    let outcomeText = if case .completed = outcome { "completed" } else { "\(outcome.map { "\($0)" } ?? "none")" }
    print("nodes=\(nodes) volumes=\(volumes) transitions=\(transitions) bytes=\(written) seconds=\(String(format: "%.2f", seconds)) "
          + "cpu_seconds=\(String(format: "%.2f", cpu)) engine_cpu_seconds=\(String(format: "%.2f", engineCPU)) "
          + "rebuild_seconds=\(String(format: "%.3f", Double(rebuild.components.seconds) + Double(rebuild.components.attoseconds) / 1e18)) "
          + "rollout_peak_rss_kib=\(rolloutPeak) peak_rss_kib=\(usage.ru_maxrss) outcome=\(outcomeText)")
}

/// CPU time of the calling thread so far.
func threadCPUSeconds() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

/// Bytes this process has passed to write(2) and pwrite(2) so far (`wchar` of /proc/self/io).
func bytesWritten() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/io", encoding: .utf8) else { return 0 }
    for line in text.split(separator: "\n") where line.hasPrefix("wchar:") {
        return Int(line.dropFirst(6).trimmingCharacters(in: .whitespaces)) ?? 0
    }
    return 0
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
