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

    /// Which pending moves (in plan order) may start now (docs/planning.md, "Scheduling").
    /// First the cluster: every node Ready and every attached volume healthy, none faulted,
    /// except what the rollout's own moves in flight degrade (they are down or rebuilding by
    /// design) and what only a node taken up again after `resume` degrades (its own step is the
    /// fix); etcd healthy before a server goes down; every pending node at the version its move
    /// starts from (versions only move along the plan). Then `Admission` per node: a free slot,
    /// and no volume left with every protected replica (as observed now) on a busy node. A node
    /// held by Longhorn is passed over for the next; the rest wait for a later round. Nothing
    /// may start is a problem too, which the caller counts against the gate's bound only while
    /// nothing of the rollout is in flight.
    /// `index` is refreshed with `observation`.
    static func evaluate(role: NodeRole, moves: ChunkedArray<Move>, pending: [Int], inFlight: [Int], slots: Int,
                         observation: ClusterObservation, index: ObservationIndex) -> Verdict {
        var verdict = Verdict()
        let inventory = observation.inventory
        let retried = Set(pending.filter { moves[$0].attempt > 1 }.map { moves[$0].node })
        let busy = Set(inFlight.map { moves[$0].node })
        let spared = retried.union(busy)
        let notReady = inventory.nodes.filter { !$0.ready && !spared.contains($0.name) }.map(\.name)
        if !notReady.isEmpty { verdict.problems.append("not Ready: \(listed(notReady))") }
        verdict.problems += longhornProblems(observation, index: index, sparing: spared)
        // A server taken up again may be the member etcd misses.
        let retriedServer = inventory.nodes.contains { $0.role == .server && retried.contains($0.name) }
        if role == .server && observation.etcdHealthy == false && !retriedServer { verdict.problems.append("etcd is not healthy") }

        for position in pending {
            let move = moves[position]
            guard let version = index.node(move.node, in: observation)?.version else {
                verdict.problems.append("\(move.node) is not in the cluster")
                continue
            }
            if version != move.from { verdict.problems.append("\(move.node) runs \(version), not \(move.from) as planned") }
        }
        guard verdict.problems.isEmpty else { return verdict }

        var down = busy
        var taken = inFlight.filter { moves[$0].phase.takesASlot }.count
        // Only the volumes of the pending nodes can hold one of them.
        let candidates = Set(pending.map { moves[$0].node })
        let protected = index.volumes(on: candidates).compactMap { position -> (name: String, nodes: Set<String>)? in
            let volume = inventory.volumes[position]
            let nodes = Set(volume.protectedNodes)
            return nodes.isEmpty ? nil : (volume.name, nodes)
        }
        var heldBy: [String] = []
        for position in pending where taken < slots {
            let node = moves[position].node
            if let volume = Admission.longhornHold(node, busy: down, protected: protected) {
                heldBy.append("\(node) (\(volume))")
                continue
            }
            down.insert(node)
            taken += 1
            verdict.start.append(position)
        }
        if verdict.start.isEmpty {
            verdict.problems.append(heldBy.isEmpty
                ? "every slot is taken (\(taken) of \(slots) nodes cordoned or down)"
                : "taking down \(listed(heldBy)) would take every healthy replica of the volume named offline")
        } else if !heldBy.isEmpty {
            verdict.held = "waiting for a later round so a healthy replica stays up: \(listed(heldBy))"
        }
        return verdict
    }

    /// Attached volumes not healthy, and faulted volumes. A volume degraded only by replicas on
    /// `sparing` (nodes down already, taken up again) is not counted. Only the volumes `index`
    /// (refreshed with `observation`) lists as unsettled can be named.
    static func longhornProblems(_ observation: ClusterObservation, index: ObservationIndex, sparing: Set<String> = []) -> [String] {
        var degraded: [String] = []
        var faulted: [String] = []
        for position in index.unsettledVolumes {
            let volume = observation.inventory.volumes[position]
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

    static func nodeReady(_ name: String, at version: K3sVersion, in observation: ClusterObservation, index: ObservationIndex) -> Bool {
        index.node(name, in: observation).map { $0.ready && $0.version == version } ?? false
    }

    static func listed(_ names: [String]) -> String {
        names.prefix(5).joined(separator: ", ") + (names.count > 5 ? " and \(names.count - 5) more" : "")
    }
}
