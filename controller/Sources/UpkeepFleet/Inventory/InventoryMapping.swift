import UpkeepRollout
import UpkeepCore
import UpkeepKube

/// A node the rollout cannot reason about: its kubelet version is not a k3s version, or its
/// architecture is one k3s does not publish. Never dropped silently: a plan that left it out
/// would be wrong about the cluster.
public struct InventoryError: Error, Equatable, Sendable, CustomStringConvertible {
    public var node: String
    public var problem: String

    public init(node: String, problem: String) {
        self.node = node
        self.problem = problem
    }

    public var description: String { "node \(node): \(problem)" }
}

/// One node as the fleet sees it: the facts the planner needs, and where its agent listens.
public struct FleetNode: Equatable, Sendable {
    public var node: InventoryNode
    /// Nil when the node has neither an InternalIP nor a usable annotation.
    public var agent: AgentEndpoint?
    /// Why `agent` is nil, or what was wrong with the annotation that was ignored.
    public var agentProblem: String?
    /// The Node's labels, for `--selector` (empty where the API was not read).
    public var labels: [String: String]

    public init(node: InventoryNode, agent: AgentEndpoint?, agentProblem: String? = nil, labels: [String: String] = [:]) {
        self.node = node
        self.agent = agent
        self.agentProblem = agentProblem
        self.labels = labels
    }
}

/// Turns Kubernetes objects into inventory facts. Pure: the objects come from the API reader.
public enum InventoryMapping {
    /// The annotation that names a node's agent address, `host:port`.
    public static let agentAddressAnnotation = "upkeep.io/agent-address"
    public static let archLabel = "kubernetes.io/arch"
    public static let longhornNamespace = "longhorn-system"

    public static func node(_ node: Node, agentPort: Int) throws(InventoryError) -> FleetNode {
        let roles = NodeRoleLabels(labels: node.labels)
        let archName = node.labels[archLabel] ?? node.architecture
        let arch: Arch
        do { arch = try Arch(archName) } catch {
            throw InventoryError(node: node.name, problem: "\(error) (label \(archLabel))")
        }
        let version: K3sVersion
        do { version = try K3sVersion(node.kubeletVersion) } catch {
            throw InventoryError(node: node.name,
                                 problem: "kubeletVersion \"\(node.kubeletVersion.prefix(80))\" is not a k3s version: \(error); is this node running k3s?")
        }
        let inventory = InventoryNode(name: node.name, role: roles.role, etcd: roles.etcd, arch: arch, version: version,
                                      ready: node.isReady, cordoned: node.unschedulable)
        var problem: String?
        if let annotation = node.annotations[agentAddressAnnotation] {
            if let endpoint = AgentEndpoint(annotation) { return FleetNode(node: inventory, agent: endpoint, labels: node.labels) }
            problem = "annotation \(agentAddressAnnotation) \"\(annotation.prefix(80))\" is not host:port; using the InternalIP"
        }
        guard let address = node.internalIP, !address.isEmpty else {
            return FleetNode(node: inventory, agent: nil, agentProblem: (problem.map { $0 + "; " } ?? "")
                                + "the node reports no InternalIP; set annotation \(agentAddressAnnotation): \"host:port\"", labels: node.labels)
        }
        return FleetNode(node: inventory, agent: AgentEndpoint(host: address, port: agentPort), agentProblem: problem, labels: node.labels)
    }

    /// Volumes with their replicas, sorted by name. Replicas not yet placed on a node hold no
    /// data anywhere and are left out.
    public static func volumes(_ volumes: [LonghornVolume], replicas: [LonghornReplica]) -> [InventoryVolume] {
        var byVolume: [String: [InventoryReplica]] = [:]
        for replica in replicas.sorted(by: { $0.name < $1.name }) where !replica.nodeID.isEmpty && replica.deletionTimestamp == nil {
            byVolume[replica.volumeName, default: []].append(
                InventoryReplica(node: replica.nodeID, running: replica.currentState == "running", healthy: replica.isHealthy))
        }
        return volumes.sorted { $0.name < $1.name }.map { volume in
            // A state Longhorn has not reported yet reads as `creating`: transitional, which the
            // planner treats as conservatively as attached.
            InventoryVolume(name: volume.name, replicasWanted: Int(volume.numberOfReplicas),
                            state: InventoryVolume.State(rawValue: volume.state) ?? .creating,
                            robustness: InventoryVolume.Robustness(rawValue: volume.robustness) ?? .unknown,
                            attachedNode: volume.currentNodeID.isEmpty ? nil : volume.currentNodeID,
                            replicas: byVolume[volume.name] ?? [])
        }
    }
}
