import Foundation
import UpkeepRollout
import UpkeepCore

/// A deterministic simulation of one rollout: the engine, a simulated cluster of nodes with
/// agents, Longhorn replicas and a network, all on one simulated clock and one seeded random
/// generator. Faults (lost, duplicated and delayed messages; agent and controller crashes;
/// unhealthy k3s; blocked drains; slow rebuilds; nodes going NotReady) happen until the heal
/// time; then everything recovers and the rollout must finish. Invariants are checked after
/// every event. The same seed replays exactly.
public struct Simulation {
    public struct Result: Sendable {
        public var seed: UInt64
        public var outcome: RolloutOutcome?
        public var violations: [String]
        /// The last lines of the trace, for a failure report.
        public var trace: [String]
        public var events: Int
        public var simulatedSeconds: Int64
        public var scenario: String
        /// Datastore restores the world carried out.
        public var restores = 0
        /// The highest hop any node entered (ran its version).
        public var hopsEntered = 0
        /// Nodes started while a node of an earlier wave was still in flight: the schedule
        /// without wave barriers at work.
        public var overlappingStarts = 0

        public var passed: Bool { violations.isEmpty }

        public var report: String {
            var lines = ["seed \(seed) failed (reproduce: scripts/simulate --seed \(seed))", scenario]
            lines += violations.prefix(10).map { "violation: \($0)" }
            lines.append("last \(trace.count) events:")
            lines += trace
            return lines.joined(separator: "\n")
        }
    }

    /// A deliberate defect in the simulated world, so tests can prove the invariants catch
    /// what they claim to catch. Never used by the seeds the suite runs for real.
    public enum Sabotage: Sendable {
        case none
        /// Agents answer `uncordoned(true)` and leave the node cordoned.
        case uncordonIsANoOp
        /// A drain also evicts every other node that holds a replica of the drained node's volumes.
        case drainTakesEveryReplica
        /// An install puts the plan's final target in place, whatever version was asked for.
        case installJumpsToTheTarget
        /// A restarted agent puts the previous binary back under an install whose new binary was
        /// live and answers `installReverted`, as agents did before #15: a verdict without a probe.
        case restartedAgentRevertsInstall
        /// A server's agent puts the old binary back after the new minor was healthy (and wrote
        /// the datastore), and answers as if the new version never came up.
        case agentRevertsAServerAfterItWasHealthy
        /// A server told to rejoin keeps its datastore, so it stays in the old etcd cluster.
        case rejoinKeepsItsOldMembership
        /// Every way back (a revert, a rollback, an install of an older version) puts back the
        /// version the node had before the rollout.
        case goingBackGoesToTheStart
    }

    enum Event {
        case deliver(RolloutEngine.Event, incarnation: Int)
        case reply(operationID: String, AgentReply, incarnation: Int, send: Int)
        case requestTimeout(operationID: String, incarnation: Int, send: Int)
        case arrive(AgentRequest, incarnation: Int, send: Int)
        case operationStep(node: String, operationID: String, step: Int)
        case k3sUp(node: String, generation: Int)
        case agentCrash(node: String)
        case agentRestart(node: String)
        /// The `installKills` fault: the agent is killed if it still runs this install.
        case killDuringInstall(node: String, operationID: String)
        case controllerCrash
        case controllerRestart
        case notReady(node: String)
        /// The `alertEpisodes` fault: a Prometheus alert starts firing.
        case alertFires
        case replicaFailure
        case replicaMove
        case rebuilt(volume: Int, replica: Int, generation: Int)
        case watchdog(node: String, install: String)
        case operatorResume(incarnation: Int)
        /// The simulated operator runs `upkeep rollback --restore`.
        case operatorRestore(incarnation: Int)
        case heal
    }

    let scenario: Scenario
    var random: SeededGenerator
    var queue = EventQueue<Event>()
    var now = Instant(milliseconds: 0)
    var engine: RolloutEngine
    var incarnation = 0
    var controllerUp = true
    var nodes: [SimNode]
    var index: [String: Int] = [:]
    var volumes: [SimVolume]
    var healed = false
    var agentCrashesLeft: Int
    var installKillsLeft: Int
    /// Every time a version the rollout brought failed a probe (the agent's, the watchdog's, or
    /// the node not Ready in an observation): what may start a rollback.
    var newVersionFailures: [String] = []
    /// The engine's direction turned back (a rollback began), checked once.
    var rollbackChecked = false
    var controllerCrashesLeft: Int
    var notReadyLeft: Int
    /// A Prometheus alert fires until then (the `alertEpisodes` fault).
    var alertUntil: Instant?
    var resumesLeft = 30
    /// A simulated operator's `resume` is on its way.
    var resumeScheduled = false
    var sends = 0
    var answered = Set<Int>()
    var nextTickAt: Instant?
    var outcome: RolloutOutcome?
    /// The last observation handed to the engine: what its decisions were based on.
    var lastObservation: ClusterObservation?
    var decidedCordons = Set<String>()
    var overlappingStarts = 0
    var invariants: SimulationInvariants
    var violations: [String] = []
    var trace: [String] = []
    var traceMax = 60
    var sabotage = Sabotage.none
    var events = 0
    /// The datastores: etcd cluster id → the Kubernetes minor that last wrote it. Servers name
    /// theirs in `SimNode.cluster`; a restore makes a new one.
    var datastores: [Int: MinorLine] = [:]
    var nextCluster = 1
    /// The cluster the latest restore made, which rejoining servers join.
    var restoredCluster: Int?
    /// Backups taken: id → the minor their datastore was last written at.
    var backupsTaken: [String: MinorLine] = [:]
    var restores = 0
    /// Blocks that asked for a restore decision, answered so far by `resume`.
    var restoreDecisions = 0

    /// Events at most; past that the run counts as not finishing.
    public static let eventsMax = 400_000
    /// Where simulated time ends (14 days in).
    public static let simulatedTimeEnd = Instant(milliseconds: 14 * 24 * 3600 * 1000)

    /// `traceLines`: how many of the last trace lines the result keeps.
    public static func run(seed: UInt64, traceLines: Int = 60, sabotage: Sabotage = .none) -> Result {
        let scenario = Scenario.make(seed: seed)
        let plan: Plan
        do {
            plan = try Planner.plan(inventory: scenario.inventory, target: scenario.target, available: scenario.available,
                                    policy: scenario.planPolicy)
        } catch {
            return Result(seed: seed, outcome: nil, violations: ["planner refused a generated cluster: \(error)"], trace: [],
                          events: 0, simulatedSeconds: 0, scenario: scenario.summary)
        }
        var simulation: Simulation
        do {
            simulation = try Simulation(scenario: scenario, plan: plan)
        } catch {
            return Result(seed: seed, outcome: nil, violations: ["engine refused: \(error)"], trace: [], events: 0,
                          simulatedSeconds: 0, scenario: scenario.summary)
        }
        simulation.traceMax = traceLines
        simulation.sabotage = sabotage
        simulation.runToEnd()
        return Result(seed: seed, outcome: simulation.outcome, violations: simulation.violations, trace: simulation.trace,
                      events: simulation.events, simulatedSeconds: simulation.now.milliseconds / 1000, scenario: scenario.summary,
                      restores: simulation.restores, hopsEntered: simulation.invariants.highestHopEntered,
                      overlappingStarts: simulation.overlappingStarts)
    }

    init(scenario: Scenario, plan: Plan) throws {
        self.scenario = scenario
        random = SeededGenerator(seed: scenario.seed ^ 0x5EED_0F_5EED)
        engine = try RolloutEngine(rolloutID: "sim\(scenario.seed)", plan: plan, policy: scenario.rolloutPolicy)
        nodes = scenario.inventory.nodes.map {
            SimNode(name: $0.name, role: $0.role, etcd: $0.etcd, running: $0.version, binary: $0.version,
                    unschedulable: $0.cordoned, cluster: $0.role == .server ? 0 : nil)
        }
        if let newest = scenario.inventory.nodes.filter({ $0.role == .server }).map(\.version.minorLine).max() { datastores[0] = newest }
        for (position, node) in nodes.enumerated() { index[node.name] = position }
        volumes = scenario.inventory.volumes.map { volume in
            SimVolume(name: volume.name, attached: volume.state == .attached,
                      replicas: volume.replicas.map { SimReplica(node: $0.node, running: $0.running, complete: true) })
        }
        agentCrashesLeft = scenario.faults.agentCrashes
        installKillsLeft = scenario.faults.installKills
        controllerCrashesLeft = scenario.faults.controllerCrashes
        notReadyLeft = scenario.faults.notReadyEpisodes
        invariants = SimulationInvariants(scenario: scenario, plan: plan)
    }

    // MARK: - Driving

    mutating func runToEnd() {
        queue.push(.deliver(.start, incarnation: 0), at: now)
        queue.push(.heal, at: scenario.faults.healAt)
        for _ in 0..<agentCrashesLeft { queue.push(.agentCrash(node: randomNode()), at: randomTimeBeforeHeal()) }
        for _ in 0..<controllerCrashesLeft { queue.push(.controllerCrash, at: randomTimeBeforeHeal()) }
        for _ in 0..<notReadyLeft { queue.push(.notReady(node: randomNode()), at: randomTimeBeforeHeal()) }
        for _ in 0..<scenario.faults.replicaFailures { queue.push(.replicaFailure, at: randomTimeBeforeHeal()) }
        for _ in 0..<scenario.faults.replicaMoves { queue.push(.replicaMove, at: randomTimeBeforeHeal()) }
        for _ in 0..<scenario.faults.alertEpisodes { queue.push(.alertFires, at: randomTimeBeforeHeal()) }

        while outcome == nil, violations.isEmpty, let (time, event) = queue.pop() {
            events += 1
            if events > Self.eventsMax || time > Self.simulatedTimeEnd {
                violations.append("the rollout did not finish within \(Self.eventsMax) events / 14 simulated days (status \(engine.status))")
                break
            }
            now = max(now, time)
            process(event)
            updateLonghorn()
            violations += invariants.check(nodes: nodes, volumes: volumes, index: index, now: now, engine: engine,
                                           concurrency: scenario.planPolicy.agentConcurrency)
        }
        if outcome == nil && violations.isEmpty {
            violations.append("the simulation ran out of events before the rollout finished (status \(engine.status))")
        }
        if let outcome, violations.isEmpty {
            violations += invariants.checkEnd(outcome: outcome, nodes: nodes, engine: engine)
            if restores > 0 { violations += invariants.checkRestoredClusters(nodes: nodes, restored: restoredCluster) }
        }
    }

    mutating func log(_ line: String) {
        trace.append("[\(now.milliseconds / 1000).\(String(format: "%03d", now.milliseconds % 1000))] " + line)
        if trace.count > traceMax { trace.removeFirst(trace.count - traceMax) }
    }

    mutating func chance(_ probability: Double) -> Bool {
        probability > 0 && !healed && Double.random(in: 0..<1, using: &random) < probability
    }

    mutating func between(_ low: Int64, _ high: Int64) -> Int64 { Int64.random(in: low...high, using: &random) }

    private mutating func randomNode() -> String { nodes[Int.random(in: 0..<nodes.count, using: &random)].name }

    private mutating func randomTimeBeforeHeal() -> Instant {
        Instant(milliseconds: between(1, max(2, scenario.faults.healAt.milliseconds - 1)))
    }

    /// The moment `milliseconds` from now.
    func after(_ milliseconds: Int64) -> Instant { now.adding(milliseconds: milliseconds) }

    /// Message latency: a few milliseconds, plus up to `delayMaxMs` while faults are on.
    mutating func latency() -> Int64 {
        let extra = healed || scenario.faults.delayMaxMs == 0 ? 0 : (chance(0.3) ? between(0, scenario.faults.delayMaxMs) : 0)
        return between(2, 40) + extra
    }

    // MARK: - Events

    private mutating func process(_ event: Event) {
        switch event {
        case .deliver(let engineEvent, let target):
            guard controllerUp, target == incarnation else { return }
            if case .tick = engineEvent { if nextTickAt == now { nextTickAt = nil } }
            if case .observed(let seen) = engineEvent { lastObservation = seen }
            deliver(engineEvent)
        case .reply(let id, let reply, let target, let send):
            guard controllerUp, target == incarnation else { return }
            answered.insert(send)
            log("controller ← \(id): \(reply)")
            deliver(.replied(operationID: id, reply))
        case .requestTimeout(let id, let target, let send):
            guard controllerUp, target == incarnation, !answered.contains(send) else { return }
            answered.insert(send)
            log("controller: \(id) timed out")
            deliver(.requestFailed(operationID: id, message: "no answer within the request timeout"))
        case .arrive(let request, let from, let send):
            arrive(request, from: from, send: send)
        case .operationStep(let node, let id, let step):
            operationStep(node: node, id: id, step: step)
        case .k3sUp(let name, let generation):
            guard let position = index[name], nodes[position].restartGeneration == generation else { return }
            k3sUp(position)
        case .agentCrash(let name):
            crashAgent(name)
        case .agentRestart(let name):
            restartAgent(name)
        case .killDuringInstall(let name, let id):
            killDuringInstall(name, id)
        case .controllerCrash:
            crashController()
        case .controllerRestart:
            guard !controllerUp else { return }
            controllerUp = true
            log("controller restarts and resumes from its persisted state")
            deliver(.resume)
        case .notReady(let name):
            guard !healed, let position = index[name] else { return }
            nodes[position].notReadyUntil = after(between(10_000, 1_800_000))
            log("fault: \(name) NotReady until \(nodes[position].notReadyUntil!.milliseconds / 1000)s")
        case .alertFires:
            guard !healed else { return }
            alertUntil = after(between(60_000, 2_400_000))
            log("fault: alert SimulatedAlert fires until \(alertUntil!.milliseconds / 1000)s")
        case .replicaFailure:
            replicaFailure()
        case .replicaMove:
            replicaMove()
        case .rebuilt(let volume, let replica, let generation):
            guard volumes[volume].replicas[replica].generation == generation, volumes[volume].replicas[replica].running else { return }
            volumes[volume].replicas[replica].complete = true
            volumes[volume].replicas[replica].rebuildUntil = nil
        case .watchdog(let name, let install):
            watchdog(name, install)
        case .operatorResume(let target), .operatorRestore(let target):
            resumeScheduled = false
            guard controllerUp, target == incarnation, case .blocked = engine.status else { return }
            resumesLeft -= 1
            let restoring = if case .operatorRestore = event { true } else { false }
            log("operator runs `upkeep \(restoring ? "rollback --restore" : "resume")`")
            deliver(restoring ? .restore : .resume)
        case .heal:
            heal()
        }
    }

    /// Hands an event to the engine, "persists" it, then performs its actions; a controller
    /// crash may strike between persisting and performing.
    mutating func deliver(_ event: RolloutEngine.Event) {
        let actions = engine.handle(event, now: now)
        if !rollbackChecked, engine.direction != .forward {
            rollbackChecked = true
            violations += invariants.checkRollbackStart(direction: engine.direction, newVersionFailures: newVersionFailures)
        }
        if controllerCrashesLeft > 0, !actions.isEmpty, chance(0.02) {
            log("controller crashes after persisting, before acting")
            crashController()
            return
        }
        // Only a cordon's first send is a decision; later sends of the same id are retries.
        let starting = actions.compactMap { action -> String? in
            guard case .send(let request) = action, request.command == .cordon,
                  decidedCordons.insert(request.operationID).inserted else { return nil }
            return request.node
        }
        let restoring = if case .restoring = engine.direction { true } else { false }
        if !starting.isEmpty, !restoring, let seen = lastObservation {
            // Down as the world has it, and busy as the engine knows it: its own moves in flight,
            // a node back and uncordoned but rebuilding its replicas among them.
            let progress = engine.progress
            let busy = progress.filter { ($0.stage == .working || $0.stage == .unhealthy) && !starting.contains($0.node) }
            let down = Set(nodes.filter { $0.restarting || ($0.drained && $0.cordonedByAgent) }.map(\.name)).union(busy.map(\.node))
            violations += invariants.checkWaveStart(starting: starting, down: down, observation: seen)
            let waves = Set(progress.filter { starting.contains($0.node) && $0.stage == .working }.map(\.wave))
            if busy.contains(where: { !waves.contains($0.wave) && !$0.isRollback }) { overlappingStarts += 1 }
        }
        for action in actions { perform(action) }
        if case .blocked(let reason) = engine.status, !resumeScheduled, resumesLeft > 0 {
            resumeScheduled = true
            queue.push(operatorChoice(reason), at: after(between(60_000, 1_800_000)))
        }
    }

    private mutating func perform(_ action: RolloutEngine.Action) {
        switch action {
        case .send(let request):
            sends += 1
            let send = sends
            log("controller → \(request.node): \(request.operationID) \(request.command)")
            queue.push(.requestTimeout(operationID: request.operationID, incarnation: incarnation, send: send),
                       at: after(requestTimeoutMs(request.command)))
            if chance(scenario.faults.requestLoss) {
                log("fault: request \(request.operationID) lost")
                return
            }
            queue.push(.arrive(request, incarnation: incarnation, send: send), at: after(latency()))
        case .observeCluster:
            noteUnreadyNewVersions()
            queue.push(.deliver(.observed(observation()), incarnation: incarnation), at: after(between(20, 400)))
        case .checkGates(let question):
            queue.push(.deliver(.gatesRead(gateReport(question)), incarnation: incarnation), at: after(between(20, 2000)))
        case .wake(let at):
            if nextTickAt.map({ at < $0 }) ?? true {
                nextTickAt = at
                queue.push(.deliver(.tick, incarnation: incarnation), at: max(now, at))
            }
        case .notice(let notice):
            log("notice[\(notice.level.rawValue)] \(notice.node.map { "\($0): " } ?? "")\(notice.message)")
        case .finished(let result):
            log("finished: \(result)")
            outcome = result
        }
    }

    private func requestTimeoutMs(_ command: AgentCommand) -> Int64 {
        let policy = scenario.rolloutPolicy
        switch command {
        case .cordon, .uncordon, .commit: return 15_000
        case .drain(let seconds, _): return Int64(seconds + 30) * 1000
        case .stage: return 120_000
        case .install, .rollback: return Int64(policy.healthTimeoutSeconds * 2 + 90) * 1000
        case .backup, .restoreBackup: return 120_000
        case .stopK3s: return 60_000
        case .restore, .rejoin: return Int64(policy.healthTimeoutSeconds * 2 + 180) * 1000
        }
    }

    private mutating func crashController() {
        guard controllerUp, controllerCrashesLeft > 0 else { return }
        controllerCrashesLeft -= 1
        controllerUp = false
        incarnation += 1
        nextTickAt = nil
        resumeScheduled = false
        // The persisted state is all that survives: encode and decode it, as SQLite would.
        do {
            let data = try JSONEncoder().encode(engine)
            engine = try JSONDecoder().decode(RolloutEngine.self, from: data)
        } catch {
            violations.append("the engine state did not survive encoding: \(error)")
        }
        log("fault: controller crashes")
        queue.push(.controllerRestart, at: after(between(1000, 120_000)))
    }

    private mutating func heal() {
        healed = true
        log("faults healed")
        for position in nodes.indices {
            nodes[position].notReadyUntil = nil
            if !nodes[position].k3sHealthy && !nodes[position].restarting {
                nodes[position].k3sHealthy = isHealthy(nodes[position], version: nodes[position].running)
            }
            if !nodes[position].agentUp { queue.push(.agentRestart(node: nodes[position].name), at: after(1000)) }
        }
        if !controllerUp { queue.push(.controllerRestart, at: after(1000)) }
        for volume in volumes.indices {
            for replica in volumes[volume].replicas.indices where volumes[volume].replicas[replica].rebuildUntil.map({ $0 > after(60_000) }) ?? false {
                volumes[volume].replicas[replica].generation += 1
                volumes[volume].replicas[replica].rebuildUntil = after(60_000)
                queue.push(.rebuilt(volume: volume, replica: replica, generation: volumes[volume].replicas[replica].generation), at: after(60_000))
            }
        }
        if case .blocked(let reason) = engine.status, controllerUp {
            resumeScheduled = true
            queue.push(operatorChoice(reason), at: after(60_000))
        }
    }
}
