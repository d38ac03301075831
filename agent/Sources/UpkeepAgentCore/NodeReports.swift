/// What the node operations the shell performs report back; the machine records them as outcomes.

public struct CordonReport: Codable, Equatable, Sendable {
    /// The node was already unschedulable before this cordon; `uncordon` will leave it so.
    public var wasUnschedulable: Bool

    public init(wasUnschedulable: Bool) { self.wasUnschedulable = wasUnschedulable }
}

public struct UncordonReport: Codable, Equatable, Sendable {
    /// False when the node stays unschedulable (cordoned before Upkeep, or not by this agent).
    public var uncordoned: Bool

    public init(uncordoned: Bool) { self.uncordoned = uncordoned }
}

public struct DrainReport: Codable, Equatable, Sendable {
    public var evictedPods: Int
    public var skippedPods: Int

    public init(evictedPods: Int, skippedPods: Int) {
        self.evictedPods = evictedPods
        self.skippedPods = skippedPods
    }
}

/// What a backup produced: a file in `<dataDir>/backups` that the protocol streams back.
public struct BackupReport: Codable, Equatable, Sendable {
    public enum Format: String, Codable, Sendable {
        /// The file `k3s etcd-snapshot save` wrote (embedded etcd).
        case etcdSnapshot
        /// A POSIX tar of an online copy of `server/db/state.db` and the `server/token` file.
        case sqliteTar
    }

    public var format: Format
    public var fileName: String
    public var bytes: Int64
    public var sha256: String

    public init(format: Format, fileName: String, bytes: Int64, sha256: String) {
        self.format = format
        self.fileName = fileName
        self.bytes = bytes
        self.sha256 = sha256
    }
}
