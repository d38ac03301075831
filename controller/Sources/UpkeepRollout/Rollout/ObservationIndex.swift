import UpkeepCore

/// Where things are in the engine's latest observation, so the checks one event makes cost the
/// nodes and volumes they ask about, not the cluster's size: a node's position by its name, the
/// volumes with a replica on a node, and the volumes that are not healthy. Without it every
/// admission round hashed every replica of every volume, and each node waiting to be Ready
/// searched the node list, so a rollout's work grew with the square of the cluster.
///
/// Derived from the observation and nothing else: never persisted (the engine rebuilds it when
/// it next handles an event) and never compared (two engines that hold the same observation
/// answer the same through it, indexed or not).
struct ObservationIndex: Equatable, Sendable {
    /// Node positions by name. A position is checked against the name before it is used, so an
    /// index of an earlier list can only be slow, never wrong.
    private var nodePositions: [String: Int] = [:]
    private var nodesIndexed = -1
    /// The volume list indexed: held so its storage stays the same while it is compared against.
    private var volumesIndexed: [InventoryVolume]?
    /// Positions of the volumes with a replica on each node, ascending.
    private var volumesOnNode: [String: [Int]] = [:]
    /// Positions of the volumes `GateCheck.longhornProblems` may name (faulted, or attached and
    /// not healthy), ascending.
    private(set) var unsettledVolumes: [Int] = []

    static func == (lhs: Self, rhs: Self) -> Bool { true }

    /// Brings the index up to `observation`: the node names when the list's length changed, the
    /// volumes when the list is not the one indexed (a new observation that kept its volume list
    /// costs nothing here).
    mutating func refresh(_ observation: ClusterObservation) {
        let nodes = observation.inventory.nodes
        if nodes.count != nodesIndexed {
            nodePositions = Dictionary(nodes.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { first, _ in first })
            nodesIndexed = nodes.count
        }
        let volumes = observation.inventory.volumes
        if let indexed = volumesIndexed, Self.sameStorage(indexed, volumes) { return }
        volumesIndexed = volumes
        volumesOnNode = [:]
        unsettledVolumes = []
        for (position, volume) in volumes.enumerated() {
            for (offset, replica) in volume.replicas.enumerated()
            where !volume.replicas[..<offset].contains(where: { $0.node == replica.node }) {
                volumesOnNode[replica.node, default: []].append(position)
            }
            if volume.robustness == .faulted || volume.state == .attached && volume.robustness != .healthy {
                unsettledVolumes.append(position)
            }
        }
    }

    /// The node named `name` in `observation` (the one this index was refreshed with).
    func node(_ name: String, in observation: ClusterObservation) -> InventoryNode? {
        let nodes = observation.inventory.nodes
        if let position = nodePositions[name], position < nodes.count, nodes[position].name == name { return nodes[position] }
        return nodes.first { $0.name == name }
    }

    /// Positions of the volumes with a replica on any of `nodes`, ascending.
    func volumes(on nodes: some Sequence<String>) -> [Int] {
        var positions = Set<Int>()
        for node in nodes { positions.formUnion(volumesOnNode[node] ?? []) }
        return positions.sorted()
    }

    private static func sameStorage(_ one: [InventoryVolume], _ other: [InventoryVolume]) -> Bool {
        one.count == other.count && one.withUnsafeBufferPointer { a in other.withUnsafeBufferPointer { $0.baseAddress == a.baseAddress } }
    }
}
