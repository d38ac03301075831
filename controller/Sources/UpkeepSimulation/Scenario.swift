import UpkeepRollout
import UpkeepCore

/// Everything one seed decides: the cluster, the target, the policies and the faults.
/// The same seed always gives the same scenario.
public struct Scenario: Sendable {
    public var seed: UInt64
    public var inventory: ClusterInventory
    public var target: K3sVersion
    public var available: [K3sVersion]
    public var planPolicy: PlanPolicy
    public var rolloutPolicy: RolloutPolicy
    public var faults: Faults
    /// Nodes cordoned by someone else before the rollout (they hold no replicas).
    public var preCordoned: Set<String>

    /// How hostile the world is until `healAt`, after which every fault stops and anything
    /// broken recovers, so the rollout must finish.
    public struct Faults: Sendable, CustomStringConvertible {
        public var requestLoss = 0.0
        public var responseLoss = 0.0
        public var duplicate = 0.0
        /// Largest extra delay of a message, beyond the usual few milliseconds.
        public var delayMaxMs: Int64 = 0
        public var agentCrashes = 0
        public var controllerCrashes = 0
        /// Chance that a k3s restart comes up unhealthy.
        public var healthFailure = 0.0
        /// A node on which the target version never becomes healthy (a bad release for it).
        public var badNode: String?
        public var drainBlock = 0.0
        public var slowRebuild = 0.0
        public var notReadyEpisodes = 0
        /// Longhorn losing a replica (it rebuilds in place) while another copy keeps serving.
        public var replicaFailures = 0
        /// Longhorn re-creating a replica on another node, so waves planned earlier may no
        /// longer be safe.
        public var replicaMoves = 0
        /// Agents killed (SIGKILL) at a random point of an install: before the binary is placed,
        /// while the new k3s starts, while it is probed, while it is reverted.
        public var installKills = 0
        /// Episodes of a Prometheus alert firing (the gates hold forward waves while it does).
        public var alertEpisodes = 0
        public var healAt = Instant(milliseconds: 0)

        public var description: String {
            var parts: [String] = []
            if requestLoss > 0 { parts.append("requestLoss=\(requestLoss)") }
            if responseLoss > 0 { parts.append("responseLoss=\(responseLoss)") }
            if duplicate > 0 { parts.append("duplicate=\(duplicate)") }
            if delayMaxMs > 0 { parts.append("delayMaxMs=\(delayMaxMs)") }
            if agentCrashes > 0 { parts.append("agentCrashes=\(agentCrashes)") }
            if controllerCrashes > 0 { parts.append("controllerCrashes=\(controllerCrashes)") }
            if healthFailure > 0 { parts.append("healthFailure=\(healthFailure)") }
            if let badNode { parts.append("badNode=\(badNode)") }
            if drainBlock > 0 { parts.append("drainBlock=\(drainBlock)") }
            if slowRebuild > 0 { parts.append("slowRebuild=\(slowRebuild)") }
            if notReadyEpisodes > 0 { parts.append("notReadyEpisodes=\(notReadyEpisodes)") }
            if replicaFailures > 0 { parts.append("replicaFailures=\(replicaFailures)") }
            if replicaMoves > 0 { parts.append("replicaMoves=\(replicaMoves)") }
            if installKills > 0 { parts.append("installKills=\(installKills)") }
            if alertEpisodes > 0 { parts.append("alertEpisodes=\(alertEpisodes)") }
            parts.append("healAt=\(healAt.milliseconds / 1000)s")
            return parts.joined(separator: " ")
        }
    }

    public static func make(seed: UInt64) -> Scenario {
        var random = SeededGenerator(seed: seed)
        func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &random) < p }

        let baseMinor = Int.random(in: 27...30, using: &random)
        var available: [K3sVersion] = []
        for minor in (baseMinor - 2)...(baseMinor + 3) {
            for patch in 0..<Int.random(in: 1...2, using: &random) {
                available.append(K3sVersion(major: 1, minor: minor, patch: patch * 4 + 2))
            }
        }
        func release(_ minor: Int) -> K3sVersion { available.filter { $0.minor == minor }.randomElement(using: &random)! }

        let serverVersion = release(baseMinor)
        var nodes: [InventoryNode] = []
        for number in 1...Int.random(in: 1...4, using: &random) {
            nodes.append(InventoryNode(name: "server-\(number)", role: .server, etcd: true, arch: .amd64, version: serverVersion))
        }
        var preCordoned = Set<String>()
        for number in 0..<Int.random(in: 0...6, using: &random) {
            let lag = chance(0.3) ? 1 : 0
            let version = lag == 0 ? serverVersion : release(baseMinor - 1)
            let name = "agent-\(number + 1)"
            let cordoned = chance(0.1)
            if cordoned { preCordoned.insert(name) }
            nodes.append(InventoryNode(name: name, role: .agent, arch: chance(0.2) ? .arm64 : .amd64, version: version, cordoned: cordoned))
        }
        let holders = nodes.map(\.name).filter { !preCordoned.contains($0) }
        var volumes: [InventoryVolume] = []
        if holders.count >= 2 {
            for number in 0..<Int.random(in: 0...8, using: &random) {
                let count = min(holders.count, Int.random(in: 2...3, using: &random))
                let replicaNodes = Array(holders.shuffled(using: &random).prefix(count))
                let attached = chance(0.75)
                volumes.append(InventoryVolume(
                    name: "pvc-\(number)", replicasWanted: count, state: attached ? .attached : .detached,
                    robustness: attached ? .healthy : .unknown, attachedNode: attached ? replicaNodes[0] : nil,
                    replicas: replicaNodes.map { InventoryReplica(node: $0, running: attached, healthy: true) }))
            }
        }
        let targetMinor = baseMinor + Int.random(in: 0...2, using: &random)
        let target = available.filter { $0.minor == targetMinor && $0 >= serverVersion }.randomElement(using: &random) ?? serverVersion

        var faults = Faults()
        let calm = chance(0.15)
        if !calm {
            if chance(0.5) { faults.requestLoss = Double.random(in: 0...0.15, using: &random) }
            if chance(0.5) { faults.responseLoss = Double.random(in: 0...0.15, using: &random) }
            if chance(0.4) { faults.duplicate = Double.random(in: 0...0.2, using: &random) }
            if chance(0.4) { faults.delayMaxMs = Int64.random(in: 100...20_000, using: &random) }
            if chance(0.4) { faults.agentCrashes = Int.random(in: 1...4, using: &random) }
            if chance(0.4) { faults.controllerCrashes = Int.random(in: 1...4, using: &random) }
            if chance(0.3) { faults.healthFailure = Double.random(in: 0...0.2, using: &random) }
            if chance(0.15) { faults.badNode = nodes.randomElement(using: &random)?.name }
            if chance(0.3) { faults.drainBlock = Double.random(in: 0...0.3, using: &random) }
            if chance(0.3) { faults.slowRebuild = Double.random(in: 0...0.5, using: &random) }
            if chance(0.3) { faults.notReadyEpisodes = Int.random(in: 1...3, using: &random) }
            if chance(0.3) { faults.replicaFailures = Int.random(in: 1...4, using: &random) }
            if chance(0.3) { faults.replicaMoves = Int.random(in: 1...4, using: &random) }
        }
        faults.healAt = Instant(milliseconds: Int64.random(in: 600...10_800, using: &random) * 1000)

        var planPolicy = PlanPolicy(agentConcurrency: Int.random(in: 1...3, using: &random))
        // Drawn last, so the cluster and faults of a seed are those it had before these existed.
        if !calm && chance(0.4) { faults.installKills = Int.random(in: 1...3, using: &random) }
        let autoRollback: AutoRollback = chance(0.5) ? .restore : .binaries
        let snapshots = !chance(0.1)
        // Without a snapshot a release that never comes up on a server cannot be undone once a
        // peer ran it (only `upkeep recover` with an older backup could, outside the engine).
        if !snapshots { faults.badNode = nil }
        var rolloutPolicy = RolloutPolicy(gateTimeoutSeconds: 600, drainTimeoutSeconds: 300, healthTimeoutSeconds: 60,
                                          verifyTimeoutSeconds: 120, rebuildTimeoutSeconds: 900, watchdogTimeoutSeconds: 1800,
                                          requestTriesMax: 6, retryDelayMilliseconds: 1000, retryDelayMaxMilliseconds: 30_000,
                                          pollIntervalMilliseconds: 5000, autoRollback: autoRollback, prefetchWaves: 1,
                                          takesHopSnapshots: snapshots)
        // Drawn after everything above, so what a seed chose before gates and canaries existed stays.
        if chance(0.5) {
            rolloutPolicy.gates = GatePolicy(kinds: [.prometheus, .etcd], holdTimeoutSeconds: Int.random(in: 300...3600, using: &random))
            if !calm && chance(0.5) { faults.alertEpisodes = Int.random(in: 1...3, using: &random) }
        }
        if chance(0.3) {
            planPolicy = PlanPolicy(agentConcurrency: planPolicy.agentConcurrency, canaryAgents: Int.random(in: 1...2, using: &random),
                                    canarySoakSeconds: Int.random(in: 0...900, using: &random))
        }
        return Scenario(seed: seed, inventory: ClusterInventory(nodes: nodes, volumes: volumes), target: target,
                        available: available, planPolicy: planPolicy, rolloutPolicy: rolloutPolicy, faults: faults,
                        preCordoned: preCordoned)
    }

    /// One line per node and volume, for a failure report.
    public var summary: String {
        let gates = rolloutPolicy.gates.map { "gates \($0.kinds.map(\.rawValue).joined(separator: "+")) hold \($0.holdTimeoutSeconds) s, " } ?? ""
        let canaries = planPolicy.canaries > 0 ? "canaries \(planPolicy.canaries) soak \(planPolicy.canarySoakSeconds) s, " : ""
        var lines = ["seed \(seed): target \(target), concurrency \(planPolicy.agentConcurrency), autoRollback \(rolloutPolicy.autoRollback), "
                     + "hop snapshots \(rolloutPolicy.takesHopSnapshots), \(gates)\(canaries)faults: \(faults)"]
        for node in inventory.nodes {
            lines.append("  \(node.name) \(node.role.rawValue) \(node.arch.rawValue) \(node.version)\(node.cordoned ? " cordoned" : "")")
        }
        for volume in inventory.volumes {
            lines.append("  \(volume.name) \(volume.state.rawValue) on \(volume.replicas.map(\.node).joined(separator: ","))")
        }
        return lines.joined(separator: "\n")
    }
}
