import UpkeepCore

/// What the planner and the rollout engine know about the cluster at one moment: nodes from the
/// Kubernetes API and Longhorn volumes with their replicas. Built by the runtime from the API;
/// built by hand in tests. It carries facts only, never decisions.
public struct ClusterInventory: Codable, Equatable, Sendable {
    public var nodes: [InventoryNode]
    public var volumes: [InventoryVolume]

    public init(nodes: [InventoryNode], volumes: [InventoryVolume] = []) {
        self.nodes = nodes
        self.volumes = volumes
    }
}

/// One Kubernetes node as an upgrade sees it.
public struct InventoryNode: Codable, Equatable, Sendable {
    public var name: String
    public var role: NodeRole
    /// A member of the embedded etcd cluster.
    public var etcd: Bool
    public var arch: Arch
    /// The kubelet version the node reports (`status.nodeInfo.kubeletVersion`), k3s's own version.
    public var version: K3sVersion
    /// The `Ready` condition is `True`.
    public var ready: Bool
    /// `spec.unschedulable`: cordoned, by whoever did it.
    public var cordoned: Bool

    public init(name: String, role: NodeRole, etcd: Bool = false, arch: Arch = .amd64, version: K3sVersion,
                ready: Bool = true, cordoned: Bool = false) {
        self.name = name
        self.role = role
        self.etcd = etcd
        self.arch = arch
        self.version = version
        self.ready = ready
        self.cordoned = cordoned
    }
}

/// A Longhorn volume (`volumes.longhorn.io`) and where its replicas live.
public struct InventoryVolume: Codable, Equatable, Sendable {
    /// `status.state`. Transitional states are kept as they are; the planner treats them
    /// like attached volumes, the conservative reading.
    public enum State: String, Codable, Sendable {
        case creating, attached, detached, attaching, detaching, deleting
    }

    /// `status.robustness`; a detached volume reports `unknown` unless faulted.
    public enum Robustness: String, Codable, Sendable {
        case healthy, degraded, faulted, unknown
    }

    public var name: String
    /// `spec.numberOfReplicas`.
    public var replicasWanted: Int
    public var state: State
    public var robustness: Robustness
    /// `status.currentNodeID` while attached.
    public var attachedNode: String?
    public var replicas: [InventoryReplica]

    public init(name: String, replicasWanted: Int, state: State, robustness: Robustness,
                attachedNode: String? = nil, replicas: [InventoryReplica]) {
        self.name = name
        self.replicasWanted = replicasWanted
        self.state = state
        self.robustness = robustness
        self.attachedNode = attachedNode
        self.replicas = replicas
    }

    /// The nodes whose simultaneous absence would take the volume's data offline: for an
    /// attached volume, the nodes of its running healthy replicas; for a detached one (nothing
    /// runs), the nodes holding a complete copy; in between (attaching, detaching, …) the
    /// running healthy ones if any, else the complete copies. A wave must never hold all of them.
    public var protectedNodes: [String] {
        func nodes(_ include: (InventoryReplica) -> Bool) -> [String] {
            var result: [String] = []
            for replica in replicas where include(replica) && !result.contains(replica.node) {
                result.append(replica.node)
            }
            return result
        }
        let complete = { (replica: InventoryReplica) in replica.healthy }
        let serving = { (replica: InventoryReplica) in replica.healthy && replica.running }
        switch state {
        case .attached: return nodes(serving)
        case .detached: return nodes(complete)
        default:
            let running = nodes(serving)
            return running.isEmpty ? nodes(complete) : running
        }
    }

    /// Longhorn runs the volume: its replicas serve I/O now.
    public var isRunning: Bool { state != .detached }
}

/// One replica of a Longhorn volume (`replicas.longhorn.io`).
public struct InventoryReplica: Codable, Equatable, Sendable {
    /// `spec.nodeID`.
    public var node: String
    /// `status.currentState == running`.
    public var running: Bool
    /// A complete copy: `spec.healthyAt` set and `spec.failedAt` empty.
    public var healthy: Bool

    public init(node: String, running: Bool = true, healthy: Bool = true) {
        self.node = node
        self.running = running
        self.healthy = healthy
    }
}
