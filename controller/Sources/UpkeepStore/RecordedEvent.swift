import UpkeepRollout

/// An engine event as the `transitions` table keeps it (`event_json`), so resume can replay it.
/// A look at the cluster is kept as its change from the one the engine held before (the
/// unchanged nodes and volumes are not written again): otherwise every observation of a
/// 5,000-node cluster would write the whole cluster, and a rollout's bytes would grow with the
/// square of its size. Every other event is kept as it was handled.
enum RecordedEvent: Codable, Equatable, Sendable {
    case event(RolloutEngine.Event)
    case observedChange(ObservationChange)

    /// `before`: the observation the engine held when it handled `event`.
    init(_ event: RolloutEngine.Event, before: ClusterObservation?) {
        if case .observed(let observation) = event, let before {
            self = .observedChange(ObservationChange(from: before, to: observation))
        } else {
            self = .event(event)
        }
    }

    /// The event handled, given the observation the engine holds before it. Nil when a change
    /// has no observation to apply to, or does not fit it (a database edited by hand).
    func event(before: ClusterObservation?) -> RolloutEngine.Event? {
        switch self {
        case .event(let event): event
        case .observedChange(let change): before.flatMap(change.applied).map(RolloutEngine.Event.observed)
        }
    }
}

/// A `ClusterObservation` as its change from an earlier one: the new lengths of the node and
/// volume lists and the entries that differ at their position (an entry added or removed in the
/// middle shifts the rest, which are then all written: correct, only bigger).
struct ObservationChange: Codable, Equatable, Sendable {
    struct Entry<Value: Codable & Equatable & Sendable>: Codable, Equatable, Sendable {
        var at: Int
        var value: Value
    }

    var nodeCount: Int
    var nodes: [Entry<InventoryNode>]
    var volumeCount: Int
    var volumes: [Entry<InventoryVolume>]
    var etcdHealthy: Bool?

    init(from before: ClusterObservation, to after: ClusterObservation) {
        nodeCount = after.inventory.nodes.count
        nodes = Self.differences(before.inventory.nodes, after.inventory.nodes)
        volumeCount = after.inventory.volumes.count
        volumes = Self.differences(before.inventory.volumes, after.inventory.volumes)
        etcdHealthy = after.etcdHealthy
    }

    func applied(to before: ClusterObservation) -> ClusterObservation? {
        guard let nodes = Self.applied(nodes, count: nodeCount, to: before.inventory.nodes),
              let volumes = Self.applied(volumes, count: volumeCount, to: before.inventory.volumes) else { return nil }
        return ClusterObservation(inventory: ClusterInventory(nodes: nodes, volumes: volumes), etcdHealthy: etcdHealthy)
    }

    private static func differences<Value>(_ before: [Value], _ after: [Value]) -> [Entry<Value>] {
        // A list the new observation kept as it was (the same storage) has no differences to look for.
        let same = before.count == after.count
            && before.withUnsafeBufferPointer { then in after.withUnsafeBufferPointer { $0.baseAddress == then.baseAddress } }
        if same { return [] }
        return after.indices.compactMap { index in index < before.count && before[index] == after[index] ? nil : Entry(at: index, value: after[index]) }
    }

    private static func applied<Value>(_ entries: [Entry<Value>], count: Int, to before: [Value]) -> [Value]? {
        var result = Array(before.prefix(count))
        for entry in entries {
            if entry.at < result.count {
                result[entry.at] = entry.value
            } else if entry.at == result.count, entry.at < count {
                result.append(entry.value)
            } else {
                return nil
            }
        }
        return result.count == count ? result : nil
    }
}
