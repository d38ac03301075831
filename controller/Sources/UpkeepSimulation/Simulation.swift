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
        case controllerCrash
        case controllerRestart
        case notReady(node: String)
        case replicaFailure
        case replicaMove
        case rebuilt(volume: Int, replica: Int, generation: Int)
        case watchdog(node: String, install: String)
        case operatorResume(incarnation: Int)
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
    var controllerCrashesLeft: Int
    var notReadyLeft: Int
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
    var invariants: SimulationInvariants
    var violations: [String] = []
    var trace: [String] = []
    var traceMax = 60
    var sabotage = Sabotage.none
    var events = 0

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
                      events: simulation.events, simulatedSeconds: simulation.now.milliseconds / 1000, scenario: scenario.summary)
    }

    init(scenario: Scenario, plan: Plan) throws {
        self.scenario = scenario
        random = SeededGenerator(seed: scenario.seed ^ 0x5EED_0F_5EED)
        engine = try RolloutEngine(rolloutID: "sim\(scenario.seed)", plan: plan, policy: scenario.rolloutPolicy)
        nodes = scenario.inventory.nodes.map {
            SimNode(name: $0.name, role: $0.role, etcd: $0.etcd, running: $0.version, binary: $0.version,
                    unschedulable: $0.cordoned)
        }
        for (position, node) in nodes.enumerated() { index[node.name] = position }
        volumes = scenario.inventory.volumes.map { volume in
            SimVolume(name: volume.name, attached: volume.state == .attached,
                      replicas: volume.replicas.map { SimReplica(node: $0.node, running: $0.running, complete: true) })
        }
        agentCrashesLeft = scenario.faults.agentCrashes
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
        }
    }

    mutating func log(_ line: String) {
        trace.append("[\(now.milliseconds / 1000).\(String(format: "%03d", now.milliseconds % 1000))] " + line)
        if trace.count > traceMax { trace.removeFirst(trace.count - traceMax) }
    }

    private mutating func chance(_ probability: Double) -> Bool {
        probability > 0 && !healed && Double.random(in: 0..<1, using: &random) < probability
    }

    private mutating func between(_ low: Int64, _ high: Int64) -> Int64 { Int64.random(in: low...high, using: &random) }

    private mutating func randomNode() -> String { nodes[Int.random(in: 0..<nodes.count, using: &random)].name }

    private mutating func randomTimeBeforeHeal() -> Instant {
        Instant(milliseconds: between(1, max(2, scenario.faults.healAt.milliseconds - 1)))
    }

    /// The moment `milliseconds` from now.
    func after(_ milliseconds: Int64) -> Instant { now.adding(milliseconds: milliseconds) }

    /// Message latency: a few milliseconds, plus up to `delayMaxMs` while faults are on.
    private mutating func latency() -> Int64 {
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
        case .operatorResume(let target):
            resumeScheduled = false
            guard controllerUp, target == incarnation, case .blocked = engine.status else { return }
            resumesLeft -= 1
            log("operator runs `upkeep resume`")
            deliver(.resume)
        case .heal:
            heal()
        }
    }

    /// Hands an event to the engine, "persists" it, then performs its actions; a controller
    /// crash may strike between persisting and performing.
    private mutating func deliver(_ event: RolloutEngine.Event) {
        let actions = engine.handle(event, now: now)
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
        if !starting.isEmpty, let seen = lastObservation {
            let down = Set(nodes.filter { $0.restarting || ($0.drained && $0.cordonedByAgent) }.map(\.name))
            violations += invariants.checkWaveStart(starting: starting, down: down, observation: seen)
        }
        for action in actions { perform(action) }
        if case .blocked = engine.status, !resumeScheduled, resumesLeft > 0 {
            resumeScheduled = true
            queue.push(.operatorResume(incarnation: incarnation), at: after(between(60_000, 1_800_000)))
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
            queue.push(.deliver(.observed(observation()), incarnation: incarnation), at: after(between(20, 400)))
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
        case .drain(let seconds): return Int64(seconds + 30) * 1000
        case .stage: return 120_000
        case .install, .rollback: return Int64(policy.healthTimeoutSeconds * 2 + 90) * 1000
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
        if case .blocked = engine.status, controllerUp {
            resumeScheduled = true
            queue.push(.operatorResume(incarnation: incarnation), at: after(60_000))
        }
    }

    // MARK: - The cluster as the API shows it

    private func observation() -> ClusterObservation {
        let inventoryNodes = scenario.inventory.nodes.map { original -> InventoryNode in
            let node = nodes[index[original.name]!]
            return InventoryNode(name: node.name, role: node.role, etcd: node.etcd, arch: original.arch, version: node.running,
                                 ready: node.ready(at: now), cordoned: node.unschedulable)
        }
        let inventoryVolumes = volumes.map { volume in
            InventoryVolume(name: volume.name, replicasWanted: volume.replicas.count, state: volume.attached ? .attached : .detached,
                            robustness: volume.robustness, attachedNode: volume.attached ? volume.replicas.first?.node : nil,
                            replicas: volume.replicas.map { InventoryReplica(node: $0.node, running: $0.running, healthy: $0.complete) })
        }
        let members = nodes.filter(\.etcd)
        let up = members.filter { $0.ready(at: now) }.count
        return ClusterObservation(inventory: ClusterInventory(nodes: inventoryNodes, volumes: inventoryVolumes),
                                  etcdHealthy: members.isEmpty ? nil : up * 2 > members.count)
    }

    /// Attached volumes that keep a running healthy replica if `replica` stops serving.
    private func spareable(_ volume: Int, _ replica: Int) -> Bool {
        volumes[volume].attached && volumes[volume].replicas.indices.contains {
            $0 != replica && volumes[volume].replicas[$0].running && volumes[volume].replicas[$0].complete
        }
    }

    private mutating func replicaFailure() {
        guard !healed else { return }
        let candidates = volumes.indices.flatMap { volume in
            volumes[volume].replicas.indices.filter { volumes[volume].replicas[$0].running && volumes[volume].replicas[$0].complete
                && spareable(volume, $0) }.map { (volume, $0) }
        }
        guard let (volume, replica) = candidates.randomElement(using: &random) else { return }
        var copy = volumes[volume].replicas[replica]
        copy.complete = false
        copy.generation += 1
        let duration = between(10_000, 600_000)
        copy.rebuildUntil = after(duration)
        volumes[volume].replicas[replica] = copy
        queue.push(.rebuilt(volume: volume, replica: replica, generation: copy.generation), at: after(duration))
        log("fault: replica of \(volumes[volume].name) on \(copy.node) failed; rebuilding for \(duration / 1000) s")
    }

    private mutating func replicaMove() {
        guard !healed else { return }
        let holders = Set(nodes.map(\.name)).subtracting(scenario.preCordoned)
        let candidates = volumes.indices.flatMap { volume in
            volumes[volume].replicas.indices.filter { spareable(volume, $0) }.map { (volume, $0) }
        }
        guard let (volume, replica) = candidates.randomElement(using: &random) else { return }
        // Longhorn does not schedule replicas on cordoned nodes (disable-scheduling-on-cordoned-node).
        let used = Set(volumes[volume].replicas.map(\.node))
        guard let target = holders.subtracting(used).sorted().randomElement(using: &random),
              let position = index[target], !nodes[position].unschedulable else { return }
        let old = volumes[volume].replicas[replica].node
        volumes[volume].replicas[replica] = SimReplica(node: target, running: false, complete: false)
        log("fault: Longhorn moved a replica of \(volumes[volume].name) from \(old) to \(target)")
    }

    /// Replicas stop on drained nodes (Longhorn's instance manager is evicted) and, for attached
    /// volumes, must rebuild when they come back.
    private mutating func updateLonghorn() {
        for volume in volumes.indices {
            for replica in volumes[volume].replicas.indices {
                guard let position = index[volumes[volume].replicas[replica].node] else { continue }
                let serving = !nodes[position].drained
                var copy = volumes[volume].replicas[replica]
                if !serving && copy.running {
                    copy.running = false
                    copy.generation += 1
                    copy.rebuildUntil = nil
                    if volumes[volume].attached { copy.complete = false }
                } else if serving && !copy.running && volumes[volume].attached {
                    copy.running = true
                    if !copy.complete {
                        copy.generation += 1
                        let slow = chance(scenario.faults.slowRebuild)
                        let duration = slow ? between(300_000, 2_400_000) : between(5_000, 90_000)
                        copy.rebuildUntil = after(duration)
                        queue.push(.rebuilt(volume: volume, replica: replica, generation: copy.generation), at: after(duration))
                    }
                }
                volumes[volume].replicas[replica] = copy
            }
        }
    }

    // MARK: - Agents

    private func isHealthy(_ node: SimNode, version: K3sVersion) -> Bool {
        if node.name == scenario.faults.badNode && version == scenario.target { return false }
        return true
    }

    private mutating func arrive(_ request: AgentRequest, from: Int, send: Int) {
        guard let position = index[request.node] else { return }
        guard nodes[position].agentUp else {
            log("\(request.node): agent down, \(request.operationID) refused at connect")
            queue.push(.requestTimeout(operationID: request.operationID, incarnation: from, send: send), at: after(between(5, 3000)))
            return
        }
        if request.command == .uncordon && scenario.preCordoned.contains(request.node) {
            violations.append("uncordon sent to \(request.node), which was cordoned before the rollout")
        }
        let fingerprint = "\(request.command)"
        if let recorded = nodes[position].journal[request.operationID] {
            let reply = recorded.fingerprint == fingerprint ? recorded.reply
                : .refused(code: "conflict", message: "operation id reused for another request")
            if recorded.fingerprint != fingerprint { violations.append("operation id \(request.operationID) reused for a different request") }
            respond(request.operationID, reply, to: [(from, send)])
            return
        }
        if case .stage = request.command {
            if var running = nodes[position].stageOperation, running.request.operationID == request.operationID {
                running.waiters.append((from, send))
                nodes[position].stageOperation = running
            } else if nodes[position].stageOperation != nil {
                respond(request.operationID, .refused(code: "busy", message: "another stage is running"), to: [(from, send)], record: false)
            } else {
                nodes[position].stageOperation = SimOperation(request: request, waiters: [(from, send)], startedAt: now)
                queue.push(.operationStep(node: request.node, operationID: request.operationID, step: 1), at: after(between(1000, 8000)))
            }
            return
        }
        if var running = nodes[position].operation {
            if running.request.operationID == request.operationID {
                running.waiters.append((from, send))
                nodes[position].operation = running
            } else {
                respond(request.operationID, .refused(code: "conflict", message: "\(running.request.operationID) is running"),
                        to: [(from, send)], record: false)
                violations.append("\(request.node) got \(request.operationID) while \(running.request.operationID) was running")
            }
            return
        }
        nodes[position].operation = SimOperation(request: request, waiters: [(from, send)], startedAt: now)
        begin(position)
    }

    /// Sends an answer to everyone waiting (subject to loss, duplication and delay) and records it.
    private mutating func respond(_ id: String, _ reply: AgentReply, to waiters: [(incarnation: Int, send: Int)], record: Bool = false) {
        for waiter in waiters {
            if chance(scenario.faults.responseLoss) {
                log("fault: answer to \(id) lost")
                continue
            }
            queue.push(.reply(operationID: id, reply, incarnation: waiter.incarnation, send: waiter.send), at: after(latency()))
            if chance(scenario.faults.duplicate) {
                queue.push(.reply(operationID: id, reply, incarnation: waiter.incarnation, send: waiter.send), at: after(latency() + 500))
            }
        }
    }

    private mutating func finishOperation(_ position: Int, _ reply: AgentReply, stage: Bool = false) {
        guard let operation = stage ? nodes[position].stageOperation : nodes[position].operation else { return }
        nodes[position].journal[operation.request.operationID] = ("\(operation.request.command)", reply)
        if stage { nodes[position].stageOperation = nil } else { nodes[position].operation = nil }
        respond(operation.request.operationID, reply, to: operation.waiters)
    }

    private mutating func begin(_ position: Int) {
        guard let operation = nodes[position].operation else { return }
        let id = operation.request.operationID
        let name = nodes[position].name
        switch operation.request.command {
        case .cordon:
            let was = nodes[position].unschedulable && !nodes[position].cordonedByAgent
            nodes[position].unschedulable = true
            if !was { nodes[position].cordonedByAgent = true }
            queue.push(.operationStep(node: name, operationID: id, step: was ? 2 : 1), at: after(between(20, 200)))
        case .uncordon:
            queue.push(.operationStep(node: name, operationID: id, step: 1), at: after(between(20, 200)))
        case .drain(let seconds):
            let blocked = chance(scenario.faults.drainBlock)
            let duration = between(1000, 20_000)
            if blocked {
                log("fault: drain of \(name) blocked by a PodDisruptionBudget")
                queue.push(.operationStep(node: name, operationID: id, step: 2), at: after(Int64(seconds) * 1000))
            } else {
                queue.push(.operationStep(node: name, operationID: id, step: 1), at: after(duration))
            }
        case .install(let asked, _, _):
            let version = sabotage == .installJumpsToTheTarget ? scenario.target : asked
            guard nodes[position].staged.contains(asked) else {
                finishOperation(position, .refused(code: "notFound", message: "\(version) is not staged"))
                return
            }
            nodes[position].previous = nodes[position].binary
            nodes[position].binary = version
            nodes[position].operation?.swapped = true
            restartK3s(position)
        case .rollback:
            guard let previous = nodes[position].previous else {
                finishOperation(position, .refused(code: "notFound", message: "no previous binary kept"))
                return
            }
            nodes[position].watch = nil
            nodes[position].binary = previous
            nodes[position].previous = nil
            nodes[position].operation?.swapped = true
            restartK3s(position)
        case .commit(let install):
            if nodes[position].watch?.install == install { nodes[position].watch = nil }
            queue.push(.operationStep(node: name, operationID: id, step: 1), at: after(between(5, 50)))
        case .stage:
            break
        }
    }

    private mutating func operationStep(node name: String, id: String, step: Int) {
        guard let position = index[name], nodes[position].agentUp else { return }
        if let stage = nodes[position].stageOperation, stage.request.operationID == id,
           case .stage(let version, _) = stage.request.command {
            if !nodes[position].staged.contains(version) { nodes[position].staged.append(version) }
            if nodes[position].staged.count > 4 { nodes[position].staged.removeFirst() }
            finishOperation(position, .staged, stage: true)
            return
        }
        guard let operation = nodes[position].operation, operation.request.operationID == id else { return }
        switch operation.request.command {
        case .cordon:
            finishOperation(position, .cordoned(wasUnschedulable: step == 2))
        case .uncordon:
            if sabotage == .uncordonIsANoOp {
                finishOperation(position, .uncordoned(true))
            } else if nodes[position].cordonedByAgent {
                nodes[position].unschedulable = false
                nodes[position].cordonedByAgent = false
                nodes[position].drained = false
                finishOperation(position, .uncordoned(true))
            } else {
                finishOperation(position, .uncordoned(false))
            }
        case .drain:
            if step == 2 {
                finishOperation(position, .refused(code: "timeout", message: "PodDisruptionBudget kept blocking the eviction"))
            } else if longhornBlocksDrain(of: name) {
                finishOperation(position, .refused(code: "timeout", message: "Longhorn blocks: last healthy replica"))
            } else {
                nodes[position].drained = true
                if sabotage == .drainTakesEveryReplica {
                    for volume in volumes where volume.replicas.contains(where: { $0.node == name }) {
                        for replica in volume.replicas {
                            guard let other = index[replica.node] else { continue }
                            nodes[other].drained = true
                            nodes[other].cordonedByAgent = true
                            nodes[other].unschedulable = true
                        }
                    }
                }
                finishOperation(position, .drained)
            }
        case .commit:
            finishOperation(position, .committed(version: nodes[position].running))
        case .install, .rollback:
            // Step 1: the health deadline passed after an unhealthy restart.
            guard step == 1, nodes[position].operation?.reverting == false else { return }
            revertInstall(position)
        case .stage:
            break
        }
    }

    private func longhornBlocksDrain(of name: String) -> Bool {
        volumes.contains { volume in
            volume.attached && volume.replicas.contains { $0.node == name && $0.running && $0.complete }
                && volume.replicas.filter { $0.running && $0.complete }.count == 1
        }
    }

    private mutating func restartK3s(_ position: Int) {
        nodes[position].restartGeneration += 1
        let until = after(between(3000, 15_000))
        nodes[position].restartingUntil = until
        queue.push(.k3sUp(node: nodes[position].name, generation: nodes[position].restartGeneration), at: until)
    }

    private mutating func k3sUp(_ position: Int) {
        let old = nodes[position].running
        nodes[position].restartingUntil = nil
        nodes[position].running = nodes[position].binary
        let healthy = isHealthy(nodes[position], version: nodes[position].binary) && !chance(scenario.faults.healthFailure)
        nodes[position].k3sHealthy = healthy
        log("\(nodes[position].name): k3s \(old) → \(nodes[position].running) \(healthy ? "healthy" : "UNHEALTHY")")
        violations += invariants.versionChanged(node: nodes[position].name, from: old, to: nodes[position].running)
        guard nodes[position].agentUp, let operation = nodes[position].operation else { return }
        let id = operation.request.operationID
        switch operation.request.command {
        case .install(_, let healthSeconds, let watchdogSeconds):
            if operation.reverting {
                finishOperation(position, .installReverted(version: nodes[position].running, healthy: healthy,
                                                           message: "probes failed on the new version"))
            } else if healthy {
                let deadline = after(Int64(watchdogSeconds) * 1000)
                nodes[position].watch = (id, deadline)
                queue.push(.watchdog(node: nodes[position].name, install: id), at: deadline)
                finishOperation(position, .installed(version: nodes[position].running))
            } else {
                queue.push(.operationStep(node: nodes[position].name, operationID: id, step: 1), at: operation.startedAt.adding(milliseconds: Int64(healthSeconds) * 1000 + 15_000))
            }
        case .rollback:
            finishOperation(position, .rolledBack(version: nodes[position].running, healthy: healthy, message: healthy ? "" : "probes failed"))
        default:
            break
        }
    }

    /// A restarted agent finishing an interrupted swap restarts k3s before it answers anyone.
    private mutating func restartDuringStart(_ position: Int) {
        nodes[position].restartGeneration += 1
        nodes[position].restartingUntil = nil
        let old = nodes[position].running
        nodes[position].running = nodes[position].binary
        nodes[position].k3sHealthy = isHealthy(nodes[position], version: nodes[position].binary)
        if old != nodes[position].running {
            log("\(nodes[position].name): k3s \(old) → \(nodes[position].running) (agent recovery)")
            violations += invariants.versionChanged(node: nodes[position].name, from: old, to: nodes[position].running)
        }
    }

    private mutating func revertInstall(_ position: Int) {
        guard let previous = nodes[position].previous else { return }
        nodes[position].operation?.reverting = true
        nodes[position].binary = previous
        restartK3s(position)
    }

    private mutating func watchdog(_ name: String, _ install: String) {
        guard let position = index[name], let watch = nodes[position].watch, watch.install == install, nodes[position].agentUp else { return }
        nodes[position].watch = nil
        if nodes[position].ready(at: now) {
            log("\(name): watchdog deadline, healthy: keeps \(nodes[position].running)")
        } else if let previous = nodes[position].previous {
            log("\(name): watchdog deadline, unhealthy: reverts to \(previous)")
            nodes[position].binary = previous
            restartK3s(position)
        }
    }

    private mutating func crashAgent(_ name: String) {
        guard !healed, agentCrashesLeft > 0, let position = index[name], nodes[position].agentUp else { return }
        agentCrashesLeft -= 1
        nodes[position].agentUp = false
        log("fault: agent on \(name) crashes\(nodes[position].operation.map { " during \($0.request.operationID)" } ?? "")")
        queue.push(.agentRestart(node: name), at: after(between(2000, 90_000)))
    }

    /// The journal resolves what was interrupted (docs/agent.md, "Crash safety").
    private mutating func restartAgent(_ name: String) {
        guard let position = index[name], !nodes[position].agentUp else { return }
        nodes[position].agentUp = true
        if let stage = nodes[position].stageOperation {
            nodes[position].journal[stage.request.operationID] = ("\(stage.request.command)", .refused(code: "interrupted", message: "agent restarted"))
            nodes[position].stageOperation = nil
        }
        if let operation = nodes[position].operation {
            let id = operation.request.operationID
            var reply = AgentReply.refused(code: "interrupted", message: "the agent restarted during this operation")
            switch operation.request.command {
            case .install where operation.swapped:
                if let previous = nodes[position].previous { nodes[position].binary = previous }
                nodes[position].watch = nil
                restartDuringStart(position)
                reply = .installReverted(version: nodes[position].running, healthy: nodes[position].k3sHealthy,
                                         message: "interrupted; previous binary restored")
            case .rollback where operation.swapped:
                restartDuringStart(position)
                reply = .rolledBack(version: nodes[position].running, healthy: nodes[position].k3sHealthy, message: "finished after a restart")
            case .drain:
                // A drain that evicted pods leaves them evicted.
                break
            default:
                break
            }
            nodes[position].journal[id] = ("\(operation.request.command)", reply)
            nodes[position].operation = nil
        }
        log("agent on \(name) restarts")
        if let watch = nodes[position].watch, watch.deadline <= now { watchdog(name, watch.install) }
    }
}
