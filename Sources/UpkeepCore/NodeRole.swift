/// The k3s role of a node: a server runs the control plane (and, with embedded etcd, a member
/// of the datastore); an agent runs only workloads. Encoded as `"server"` / `"agent"`, the same
/// words the wire protocol uses.
public enum NodeRole: String, Codable, Sendable, CaseIterable, Comparable {
    case server
    case agent

    /// The systemd unit k3s installs for this role.
    public var unitName: String {
        switch self {
        case .server: "k3s"
        case .agent: "k3s-agent"
        }
    }

    /// Servers sort before agents: the order an upgrade takes them in.
    public static func < (lhs: NodeRole, rhs: NodeRole) -> Bool {
        lhs == .server && rhs == .agent
    }
}

/// A node's role as its Kubernetes labels describe it. k3s labels servers
/// `node-role.kubernetes.io/control-plane=true` (and `master=true` on older versions) and, with
/// embedded etcd, `node-role.kubernetes.io/etcd=true`.
public struct NodeRoleLabels: Equatable, Sendable, Codable {
    public let role: NodeRole
    /// A member of the embedded etcd cluster: its restart costs one etcd vote.
    public let etcd: Bool

    public static let controlPlaneLabel = "node-role.kubernetes.io/control-plane"
    public static let masterLabel = "node-role.kubernetes.io/master"
    public static let etcdLabel = "node-role.kubernetes.io/etcd"

    public init(role: NodeRole, etcd: Bool) {
        self.role = role
        self.etcd = etcd
    }

    /// Reads the role labels; a label counts when present with any value but `"false"`.
    public init(labels: [String: String]) {
        func set(_ key: String) -> Bool { labels[key].map { $0 != "false" } ?? false }
        let etcd = set(Self.etcdLabel)
        let server = set(Self.controlPlaneLabel) || set(Self.masterLabel) || etcd
        self.init(role: server ? .server : .agent, etcd: etcd)
    }
}
