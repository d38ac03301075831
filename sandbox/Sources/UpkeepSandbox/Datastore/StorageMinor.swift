import UpkeepKube

/// The Kubernetes minor that last wrote a sandbox datastore, and the refusal of an older
/// apiserver to start on it.
///
/// A real apiserver stores objects in the newest storage version it knows; an apiserver one
/// minor older cannot read what it does not know, which is why k3s can go back a minor only
/// together with a datastore snapshot taken on that minor
/// (https://docs.k3s.io/upgrades/roll-back). The sandbox keeps no storage versions per object,
/// so it records the minor itself: every fake k3s server that becomes healthy writes the larger
/// of the recorded minor and its own under `key`, and one of an older minor refuses to start.
public enum StorageMinor {
    public static let key = RegistryKeys.sandboxPrefix + "storage-minor"

    /// What a server of `version` finds in a datastore that recorded `recorded`.
    public enum Verdict: Sendable, Equatable {
        /// Start, and write `record` (nil: the datastore already says as much).
        case start(record: JSON?)
        /// Refuse to start; the message says why and what to do.
        case refuse(String)
    }

    /// The minor of a k3s version (`v1.31.4+k3s1` → 31).
    public static func minor(of version: String) -> Int? {
        let core = version.hasPrefix("v") ? version.dropFirst() : Substring(version)
        let parts = core.split(separator: ".", maxSplits: 2)
        guard parts.count >= 2, parts[0] == "1" else { return nil }
        return Int(parts[1].prefix { $0.isNumber })
    }

    /// The value recorded by a server of `version`.
    public static func record(version: String, node: String) -> JSON? {
        guard let minor = minor(of: version) else { return nil }
        return ["minor": .int(Int64(minor)), "kubernetes": .string("v1.\(minor)"), "writtenBy": .string(version), "node": .string(node)]
    }

    public static func verdict(recorded: JSON?, version: String, node: String) -> Verdict {
        guard let own = minor(of: version) else { return .start(record: nil) }
        guard let recordedMinor = recorded?["minor"]?.int.map(Int.init) else { return .start(record: record(version: version, node: node)) }
        if recordedMinor > own {
            let writer = recorded?["writtenBy"]?.string ?? "v1.\(recordedMinor)"
            return .refuse("""
                apiserver exited: unable to start with the datastore: it was last written by Kubernetes v1.\(recordedMinor) \
                (\(writer)) and this is \(version): objects stored at a newer storage version cannot be decoded by \
                v1.\(own) (storage version v1.\(recordedMinor) > v1.\(own)). To go back a minor, restore a datastore \
                snapshot taken on v1.\(own) with this binary: https://docs.k3s.io/upgrades/roll-back
                """)
        }
        return recordedMinor == own ? .start(record: nil) : .start(record: record(version: version, node: node))
    }
}
