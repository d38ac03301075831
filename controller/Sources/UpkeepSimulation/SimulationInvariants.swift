import UpkeepRollout
import UpkeepCore

/// The rules a rollout must never break, checked against the simulated cluster after every
/// event, and the state it must end in.
struct SimulationInvariants {
    let target: K3sVersion
    let initial: [String: K3sVersion]
    let initiallyCordoned: Set<String>
    /// Version changes each node may make: its plan steps, either way (a revert goes back).
    let transitions: [String: Set<String>]
    let skewHeldInitially: Bool
    /// Per hop (index 0 is hop 1): every node's version when the hop begins.
    let hopStart: [[String: K3sVersion]]
    /// The hop of each forward step, by `node:from>to`.
    let forwardHop: [String: Int]
    /// The highest hop any node has entered (run a version it moves to); 0 before any.
    var highestHopEntered = 0

    init(scenario: Scenario, plan: Plan) {
        target = plan.target
        initial = Dictionary(uniqueKeysWithValues: scenario.inventory.nodes.map { ($0.name, $0.version) })
        initiallyCordoned = scenario.preCordoned
        var transitions: [String: Set<String>] = [:]
        var forwardHop: [String: Int] = [:]
        for wave in plan.waves {
            for step in wave.steps {
                transitions[step.node, default: []].insert("\(step.from)>\(step.to)")
                transitions[step.node, default: []].insert("\(step.to)>\(step.from)")
                forwardHop["\(step.node):\(step.from)>\(step.to)"] = wave.hop
            }
        }
        self.transitions = transitions
        self.forwardHop = forwardHop
        var versions = initial
        var hopStart: [[String: K3sVersion]] = []
        for hop in plan.hops {
            hopStart.append(versions)
            for step in hop.waves.flatMap(\.steps) { versions[step.node] = step.to }
        }
        self.hopStart = hopStart
        let servers = scenario.inventory.nodes.filter { $0.role == .server }.map(\.version)
        let agents = scenario.inventory.nodes.filter { $0.role == .agent }.map(\.version)
        skewHeldInitially = Self.skewProblem(servers: servers, agents: agents) == nil
    }

    static func skewProblem(servers: [K3sVersion], agents: [K3sVersion]) -> String? {
        guard let oldest = servers.min(), let newest = servers.max() else { return nil }
        if !SkewPolicy.serversAllowed(oldest.minorLine, newest.minorLine) { return "servers at \(oldest) and \(newest)" }
        for agent in agents {
            if agent > oldest { return "an agent at \(agent) is newer than a server at \(oldest)" }
            if !SkewPolicy.kubeletAllowed(agent.minorLine, server: newest.minorLine) {
                return "an agent at \(agent) lags too far behind a server at \(newest)"
            }
        }
        return nil
    }

    /// Versions change only along plan steps, and a way back never goes past where the hop
    /// last entered found the node: a rollback goes back one hop at most.
    mutating func versionChanged(node: String, from: K3sVersion, to: K3sVersion) -> [String] {
        guard from != to else { return [] }
        if let hop = forwardHop["\(node):\(from)>\(to)"] { highestHopEntered = max(highestHopEntered, hop) }
        if to < from, highestHopEntered >= 1, let floor = hopStart[highestHopEntered - 1][node], to < floor {
            return ["\(node) went back to \(to), past \(floor) where hop \(highestHopEntered) found it: a rollback goes back one hop at most"]
        }
        if transitions[node]?.contains("\(from)>\(to)") == true { return [] }
        return ["\(node) moved \(from) → \(to), which is not a step of the plan"]
    }

    /// After a restore: one etcd cluster of every server, the one the restore made.
    func checkRestoredClusters(nodes: [SimNode], restored: Int?) -> [String] {
        let servers = nodes.filter { $0.role == .server }
        let clusters = Set(servers.map { $0.cluster.map(String.init) ?? "none" })
        guard let restored, clusters == ["\(restored)"] else {
            return ["after a restore the servers are in etcd clusters \(clusters.sorted()), not all in the restored one (\(restored.map(String.init) ?? "none"))"]
        }
        return []
    }

    func check(nodes: [SimNode], volumes: [SimVolume], index: [String: Int], now: Instant, engine: RolloutEngine,
               concurrency: Int) -> [String] {
        var problems: [String] = []
        // A restore takes the cluster down as k3s documents it (every node drained, every
        // server stopped); the availability rules below hold outside a restore.
        if case .restoring = engine.direction { return problems }
        // Never more nodes down than allowed: one server, or up to `concurrency` agents, never both.
        let down = nodes.filter { $0.restarting || ($0.drained && $0.cordonedByAgent) }
        let serversDown = down.filter { $0.role == .server }.map(\.name)
        let agentsDown = down.filter { $0.role == .agent }.map(\.name)
        if serversDown.count > 1 { problems.append("servers down at once: \(serversDown)") }
        if agentsDown.count > concurrency { problems.append("more than \(concurrency) agents down: \(agentsDown)") }
        if !serversDown.isEmpty && !agentsDown.isEmpty { problems.append("servers \(serversDown) and agents \(agentsDown) down together") }

        // Never every running replica of a volume down; never every copy of a detached one drained.
        for volume in volumes {
            if volume.attached {
                if !volume.replicas.contains(where: { $0.running && $0.complete }) {
                    problems.append("volume \(volume.name) has no running healthy replica")
                }
            } else {
                let copies = volume.replicas.filter(\.complete)
                if !copies.isEmpty && copies.allSatisfy({ index[$0.node].map { nodes[$0].drained } ?? false }) {
                    problems.append("every copy of detached volume \(volume.name) is on a drained node")
                }
            }
        }

        // Skew: servers within one minor; no kubelet newer than a server or too far behind.
        if skewHeldInitially {
            let servers = nodes.filter { $0.role == .server }.map(\.running)
            let agents = nodes.filter { $0.role == .agent }.map(\.running)
            if let problem = Self.skewProblem(servers: servers, agents: agents) { problems.append("skew broken: \(problem)") }
        }

        // A node cordoned by someone else is never uncordoned.
        for node in nodes where initiallyCordoned.contains(node.name) && !node.unschedulable {
            problems.append("\(node.name) was cordoned before the rollout and got uncordoned")
        }
        return problems
    }

    /// "No rollback without a probe failure of the new version" (#15, item 6): an agent killed
    /// during an install, a lost connection or an interrupted step says nothing about a version.
    func checkRollbackStart(direction: RolloutEngine.Direction, newVersionFailures: [String]) -> [String] {
        guard newVersionFailures.isEmpty else { return [] }
        return ["a rollback began (\(direction)) although no version the rollout brought had failed a probe: "
                + "no rollback without a probe failure of the new version"]
    }

    /// The engine's own decision, judged on what it knew: starting `starting` (with `down`
    /// already down) must leave every volume a protected replica in the last observation it saw.
    /// Longhorn's drain blocking would catch a mistake later; this catches it at the decision.
    func checkWaveStart(starting: [String], down: Set<String>, observation: ClusterObservation) -> [String] {
        let after = down.union(starting)
        return observation.inventory.volumes.compactMap { volume in
            let protected = volume.protectedNodes
            guard !protected.isEmpty, protected.allSatisfy(after.contains) else { return nil }
            return "started \(starting) although every healthy replica of \(volume.name) (\(protected)) would be down"
        }
    }

    func checkEnd(outcome: RolloutOutcome, nodes: [SimNode], engine: RolloutEngine) -> [String] {
        var problems: [String] = []
        switch outcome {
        case .completed:
            for node in nodes where node.running != target || node.binary != target {
                problems.append("completed, but \(node.name) runs \(node.running) (binary \(node.binary)), not \(target)")
            }
        case .rolledBack:
            // Back where the last hop entered found every node (one hop at most).
            let expected = highestHopEntered >= 1 ? hopStart[highestHopEntered - 1] : initial
            for node in nodes where node.running != expected[node.name] || node.binary != expected[node.name] {
                problems.append("rolled back, but \(node.name) runs \(node.running), not \(expected[node.name]!) where hop \(highestHopEntered) found it")
            }
        case .failed(let cause):
            problems.append("failed without rolling back although auto-rollback is on: \(cause)")
        case .abandoned(let reason):
            problems.append("abandoned, although nobody abandons a simulated rollout: \(reason)")
        }
        for node in nodes {
            if node.cordonedByAgent || node.unschedulable != initiallyCordoned.contains(node.name) {
                problems.append("\(node.name) left \(node.unschedulable ? "cordoned" : "uncordoned") at the end")
            }
            if let watch = node.watch { problems.append("\(node.name) still watches \(watch.install): never committed") }
            if node.restarting || !node.k3sHealthy { problems.append("\(node.name) is not running healthy at the end") }
        }
        if !engine.cordonedByUpkeep.isEmpty { problems.append("engine still holds cordons on \(engine.cordonedByUpkeep)") }
        if !engine.openWatches.isEmpty { problems.append("engine left watches open: \(engine.openWatches)") }
        return problems
    }
}
