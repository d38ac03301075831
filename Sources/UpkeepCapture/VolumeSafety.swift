/// A Longhorn volume whose replicas shape a rollout: its healthy replicas sit on several nodes
/// the rollout takes down, which therefore go in different waves, or only one healthy replica is
/// left, whose node's drain Longhorn's `node-drain-policy` holds
/// (https://longhorn.io/docs/1.7.2/maintenance/maintenance/#node-drain-policy-recommendations). Pure.
public struct VolumeSafety: Sendable, Codable, Equatable {
    public var volume: String
    /// Nodes with a healthy replica, sorted.
    public var replicaNodes: [String]
    /// The wave label (`s1`, `w2`, …) each of those nodes goes in, in the same order; "" for a node the rollout leaves alone.
    public var waves: [String]
    public var note: String

    public init(volume: String, replicaNodes: [String], waves: [String], note: String) {
        self.volume = volume
        self.replicaNodes = replicaNodes
        self.waves = waves
        self.note = note
    }

    /// The volumes that shape a rollout whose waves are `waves` (label and nodes, in order).
    public static func find(in capture: ClusterCapture, waves: [(label: String, nodes: [String])]) -> [VolumeSafety] {
        guard let longhorn = capture.longhorn else { return [] }
        let policy = longhorn.settings["node-drain-policy"] ?? "block-if-contains-last-replica"
        var waveOf: [String: String] = [:]
        for wave in waves { for node in wave.nodes where waveOf[node] == nil { waveOf[node] = wave.label } }
        var found: [VolumeSafety] = []
        for volume in longhorn.volumes {
            let nodes = Set(longhorn.replicas.filter { $0.volume == volume.name && $0.healthy }.map(\.node)).sorted()
            let touched = nodes.filter { waveOf[$0] != nil }
            let labels = nodes.map { waveOf[$0] ?? "" }
            if nodes.count == 1, let node = touched.first {
                found.append(VolumeSafety(volume: volume.name, replicaNodes: nodes, waves: labels,
                                          note: "its only healthy replica is on \(node): with node-drain-policy \(policy) Longhorn holds that drain "
                                              + "until another replica is healthy (raise numberOfReplicas to 2 or more before the window)"))
            } else if touched.count >= 2 {
                found.append(VolumeSafety(volume: volume.name, replicaNodes: nodes, waves: labels,
                                          note: "healthy replicas on \(touched.joined(separator: ", ")): never all down or rebuilding at once, "
                                              + "so these nodes go in different waves"))
            }
        }
        return found
    }
}
