import UpkeepRollout
import UpkeepCore

/// Large, realistic-shaped inventories from a seed, for benchmarks and simulations: a few etcd
/// servers, many agents of mixed architectures, Longhorn volumes with 2 or 3 replicas spread over
/// distinct nodes (most attached), everyone on one version. The same seed gives the same cluster.
public enum SyntheticCluster {
    public static func make(servers: Int, agents: Int, volumes: Int, version: K3sVersion, seed: UInt64) -> ClusterInventory {
        precondition(servers >= 1 && agents >= 0 && servers + agents >= 3, "a synthetic cluster needs 3 nodes for 3 replicas")
        var random = SeededGenerator(seed: seed)
        var nodes: [InventoryNode] = []
        nodes.reserveCapacity(servers + agents)
        for number in 1...servers {
            nodes.append(InventoryNode(name: "server-\(number)", role: .server, etcd: true, arch: .amd64, version: version))
        }
        for number in 0..<agents {
            let arch: Arch = number % 10 == 9 ? .arm64 : .amd64
            nodes.append(InventoryNode(name: "agent-\(number + 1)", role: .agent, arch: arch, version: version))
        }
        var list: [InventoryVolume] = []
        list.reserveCapacity(volumes)
        for number in 0..<volumes {
            let count = Int.random(in: 0..<4, using: &random) == 0 ? 2 : 3
            var holders: [Int] = []
            while holders.count < count {
                let candidate = Int.random(in: 0..<nodes.count, using: &random)
                if !holders.contains(candidate) { holders.append(candidate) }
            }
            let attached = Int.random(in: 0..<10, using: &random) < 7
            list.append(InventoryVolume(name: "pvc-\(number)", replicasWanted: count, state: attached ? .attached : .detached,
                                        robustness: attached ? .healthy : .unknown, attachedNode: attached ? nodes[holders[0]].name : nil,
                                        replicas: holders.map { InventoryReplica(node: nodes[$0].name, running: attached, healthy: true) }))
        }
        return ClusterInventory(nodes: nodes, volumes: list)
    }
}
