import UpkeepRollout
import UpkeepCore

/// A version literal in tests; a malformed one is a bug in the test.
func v(_ text: String) -> K3sVersion {
    do { return try K3sVersion(text) } catch { preconditionFailure("bad version literal \(text): \(error)") }
}

func server(_ name: String, _ version: String, etcd: Bool = true, ready: Bool = true, cordoned: Bool = false) -> InventoryNode {
    InventoryNode(name: name, role: .server, etcd: etcd, arch: .amd64, version: v(version), ready: ready, cordoned: cordoned)
}

func agent(_ name: String, _ version: String, arch: Arch = .amd64, ready: Bool = true, cordoned: Bool = false) -> InventoryNode {
    InventoryNode(name: name, role: .agent, etcd: false, arch: arch, version: v(version), ready: ready, cordoned: cordoned)
}

/// An attached, healthy volume with one running healthy replica on each node given.
func volume(_ name: String, on nodes: [String], state: InventoryVolume.State = .attached,
            robustness: InventoryVolume.Robustness = .healthy) -> InventoryVolume {
    InventoryVolume(name: name, replicasWanted: nodes.count, state: state, robustness: robustness,
                    attachedNode: state == .attached ? nodes.first : nil,
                    replicas: nodes.map { InventoryReplica(node: $0, running: state != .detached, healthy: true) })
}

/// Release lists as GitHub would offer them: several patches per minor, pre-releases mixed in.
let offered: [K3sVersion] = [
    "v1.23.17+k3s1", "v1.24.17+k3s1", "v1.25.16+k3s4", "v1.26.15+k3s1",
    "v1.27.16+k3s1", "v1.28.15+k3s1",
    "v1.29.0+k3s1", "v1.29.9+k3s1", "v1.29.10+k3s1", "v1.29.11-rc1+k3s1",
    "v1.30.5+k3s1", "v1.30.6+k3s1", "v1.30.7+k3s-0a1b2c3d", "v1.30.8-rc1+k3s1",
    "v1.31.0-rc1+k3s1", "v1.31.0+k3s1", "v1.31.2+k3s1", "v1.31.4+k3s1",
    "v1.32.1+k3s1",
].map { v($0) }

/// 3 etcd servers and 3 agents on one version.
func smallCluster(_ version: String, volumes: [InventoryVolume] = []) -> ClusterInventory {
    ClusterInventory(nodes: [server("server-1", version), server("server-2", version), server("server-3", version),
                             agent("agent-1", version), agent("agent-2", version), agent("agent-3", version)],
                     volumes: volumes)
}

extension Plan {
    /// (hop number, wave label, node, from, to) in execution order: what the tests compare.
    var script: [String] {
        waves.flatMap { wave in wave.steps.map { "\(wave.hop) \(wave.label) \($0.node) \($0.from) → \($0.to)" } }
    }
}
