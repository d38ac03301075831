import UpkeepCore

/// The conditions the engine waits for, read from one observation of the cluster.
enum GateCheck {
    struct Verdict {
        /// The pending moves that may start now.
        var start: [Int] = []
        /// Why the gate does not pass; empty when `start` may go.
        var problems: [String] = []
        /// Why some pending moves wait for a later round of the same wave.
        var held: String?
    }

    /// Whether the wave's pending moves may start: every node Ready (but a node taken up again
    /// after `resume` may be down itself, and what only it degrades is not held against it); every attached volume
    /// healthy and none faulted; etcd healthy before a server goes down; every pending node at the
    /// version its move starts from (versions only move along the plan). Then the planner's
    /// Longhorn rule against the replicas as they are now: the pending moves are taken in order,
    /// each only if no volume would have every protected replica down together with the wave's
    /// unfinished moves; the rest wait for the next round of the same wave (replicas may have
    /// moved since planning). Nothing may start is a problem too.
    static func evaluate(wave: WaveRun, moves: [Move], pending: [Int], observation: ClusterObservation) -> Verdict {
        var verdict = Verdict()
        let inventory = observation.inventory
        // A node the wave takes up again after `resume` may be the one not Ready: its own step is the fix.
        let retried = Set(pending.filter { moves[$0].attempt > 1 }.map { moves[$0].node })
        let notReady = inventory.nodes.filter { !$0.ready && !retried.contains($0.name) }.map(\.name)
        if !notReady.isEmpty { verdict.problems.append("not Ready: \(listed(notReady))") }
        verdict.problems += longhornProblems(observation, sparing: retried)
        // A server taken up again may be the member etcd misses.
        let retriedServer = inventory.nodes.contains { retried.contains($0.name) && $0.role == .server }
        if wave.role == .server && observation.etcdHealthy == false && !retriedServer { verdict.problems.append("etcd is not healthy") }

        var versions: [String: K3sVersion] = [:]
        for node in inventory.nodes { versions[node.name] = node.version }
        for index in pending {
            let move = moves[index]
            guard let version = versions[move.node] else {
                verdict.problems.append("\(move.node) is not in the cluster")
                continue
            }
            if version != move.from { verdict.problems.append("\(move.node) runs \(version), not \(move.from) as planned") }
        }
        guard verdict.problems.isEmpty else { return verdict }

        var down = Set(wave.moves.filter { !moves[$0].phase.isFinal }.map { moves[$0].node })
        let protected = inventory.volumes.map { ($0.name, Set($0.protectedNodes)) }.filter { !$0.1.isEmpty }
        var heldBy: [String] = []
        for index in pending {
            let node = moves[index].node
            let trial = down.union([node])
            if let volume = protected.first(where: { $0.1.contains(node) && $0.1.isSubset(of: trial) }) {
                heldBy.append("\(node) (\(volume.0))")
                continue
            }
            down = trial
            verdict.start.append(index)
        }
        if verdict.start.isEmpty {
            verdict.problems.append("taking down \(listed(heldBy)) would take every healthy replica of the volume named offline")
        } else if !heldBy.isEmpty {
            verdict.held = "waiting for a later round so a healthy replica stays up: \(listed(heldBy))"
        }
        return verdict
    }

    /// Attached volumes not healthy, and faulted volumes. A volume degraded only by replicas on
    /// `sparing` (nodes down already, taken up again) is not counted.
    static func longhornProblems(_ observation: ClusterObservation, sparing: Set<String> = []) -> [String] {
        var degraded: [String] = []
        var faulted: [String] = []
        for volume in observation.inventory.volumes {
            let spared = !sparing.isEmpty && volume.replicas.allSatisfy { ($0.running && $0.healthy) || sparing.contains($0.node) }
            if volume.robustness == .faulted {
                faulted.append(volume.name)
            } else if volume.state == .attached && volume.robustness != .healthy && !spared {
                degraded.append(volume.name)
            }
        }
        var problems: [String] = []
        if !faulted.isEmpty { problems.append("Longhorn volumes faulted: \(listed(faulted))") }
        if !degraded.isEmpty { problems.append("Longhorn volumes not healthy: \(listed(degraded))") }
        return problems
    }

    static func nodeReady(_ name: String, at version: K3sVersion, in observation: ClusterObservation) -> Bool {
        observation.inventory.nodes.contains { $0.name == name && $0.ready && $0.version == version }
    }

    static func listed(_ names: [String]) -> String {
        names.prefix(5).joined(separator: ", ") + (names.count > 5 ? " and \(names.count - 5) more" : "")
    }
}
