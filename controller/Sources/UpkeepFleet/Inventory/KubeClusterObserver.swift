import UpkeepRollout
import UpkeepHTTP
import UpkeepKube

/// What one reading of the cluster found: the inventory the planner and engine use, and where
/// each node's agent listens.
public struct FleetReading: Equatable, Sendable {
    public var nodes: [FleetNode]
    public var volumes: [InventoryVolume]

    public init(nodes: [FleetNode], volumes: [InventoryVolume]) {
        self.nodes = nodes
        self.volumes = volumes
    }

    public var inventory: ClusterInventory { ClusterInventory(nodes: nodes.map(\.node), volumes: volumes) }

    /// Agent addresses by node name (nodes without one are absent).
    public var agentEndpoints: [String: AgentEndpoint] {
        Dictionary(nodes.compactMap { node in node.agent.map { (node.node.name, $0) } }, uniquingKeysWith: { first, _ in first })
    }
}

/// Why the cluster could not be read this time (the API answered an error or not at all).
public struct ClusterObservationError: Error, Equatable, Sendable, CustomStringConvertible {
    public var problem: String
    public init(problem: String) { self.problem = problem }
    public var description: String { "cannot read the cluster through the Kubernetes API: \(problem)" }
}

/// Reads nodes and Longhorn volumes through the Kubernetes API: the runtime's `ClusterObserver`
/// and the inventory the CLI plans with. It only reads; it never changes the cluster.
///
/// etcd health is left nil here: the API shows no honest per-member etcd health (an apiserver's
/// `readyz` etcd check says only that its own datastore answers, and with SQLite k3s reports
/// the same check). The etcd gate reads it through the server agents instead
/// (`ClusterGateReader`, docs/planning.md, "Gates").
public struct KubeClusterObserver: ClusterObserver {
    public let client: KubeClient
    public let agentPort: Int
    /// When set, every observation also refreshes this fleet's agent addresses, so a changed
    /// annotation or InternalIP is followed during a rollout.
    public let fleet: AgentFleet?

    public init(client: KubeClient, agentPort: Int, fleet: AgentFleet? = nil) {
        self.client = client
        self.agentPort = agentPort
        self.fleet = fleet
    }

    public func observe() async throws -> ClusterObservation {
        let reading = try await read()
        await fleet?.setEndpoints(reading.agentEndpoints)
        return ClusterObservation(inventory: reading.inventory, etcdHealthy: nil)
    }

    /// Nodes (servers first, then by name) and Longhorn volumes. A cluster without Longhorn
    /// (its CRDs absent) has no volumes. Throws `InventoryError` for a node that cannot be
    /// understood, `ClusterObservationError` when the API cannot be read.
    public func read() async throws -> FleetReading {
        let nodes: [Node]
        let volumes: [LonghornVolume]
        let replicas: [LonghornReplica]
        do {
            nodes = try await client.list(Node.self)
            volumes = try await Self.absentAsEmpty { try await client.list(LonghornVolume.self, namespace: InventoryMapping.longhornNamespace) }
            replicas = try await Self.absentAsEmpty { try await client.list(LonghornReplica.self, namespace: InventoryMapping.longhornNamespace) }
        } catch let error as KubeAPIError {
            throw ClusterObservationError(problem: error.description)
        } catch let error as HTTPClientError {
            throw ClusterObservationError(problem: error.description)
        }
        var fleet: [FleetNode] = []
        for node in nodes { fleet.append(try InventoryMapping.node(node, agentPort: agentPort)) }
        fleet.sort { ($0.node.role, $0.node.name) < ($1.node.role, $1.node.name) }
        return FleetReading(nodes: fleet, volumes: InventoryMapping.volumes(volumes, replicas: replicas))
    }

    /// A 404 means the resource (its CRD) does not exist: Longhorn is not installed.
    private static func absentAsEmpty<T>(_ body: () async throws -> [T]) async throws -> [T] {
        do { return try await body() } catch let error as KubeAPIError where error.code == 404 { return [] }
    }
}
