import UpkeepKube

/// Why a Longhorn update is refused before anything is committed; each says what to do.
/// Longhorn's upgrade guide (https://longhorn.io/docs/latest/deploy/upgrade/, for 1.12:
/// https://longhorn.io/docs/1.12.2/deploy/upgrade/) allows one minor step at a time (x.y to
/// x.(y+1), patches within a minor freely), supports no downgrade, and asks for no faulted
/// volume before an upgrade. Exit 5 (`RolloutExitCode.refused`); 8 when the cluster could not be read.
enum LonghornRefusal: Error, Equatable, CustomStringConvertible {
    case downgrade(installed: LonghornVersion, target: LonghornVersion)
    case skipsMinor(installed: LonghornVersion, target: LonghornVersion)
    /// Attached volumes that are not `healthy`, and volumes that are `faulted`.
    case unhealthyVolumes([LonghornVolumeHealth])
    /// Snapshots that did not become `readyToUse` within the bound (name → volume, Longhorn's error).
    case snapshotsNotReady([LonghornSnapshotWait], seconds: Int)
    /// Volumes could not be listed, or a snapshot not created.
    case unreadable(String)

    var exitCode: Int32 {
        if case .unreadable = self { return RolloutExitCode.unreachable }
        return RolloutExitCode.refused
    }

    var description: String {
        switch self {
        case .downgrade(let installed, let target):
            "refused: Longhorn cannot be downgraded (\(installed) → \(target)); restore a backup instead; nothing was committed"
        case .skipsMinor(let installed, let target):
            "refused: Longhorn upgrades one minor version at a time (\(installed) → \(target)): go to a "
                + "v\(installed.major).\(installed.minor + 1).x release first; nothing was committed"
        case .unhealthyVolumes(let volumes):
            "refused: Longhorn volumes are not healthy: \(volumes.prefix(10).map(\.description).joined(separator: ", "))"
                + (volumes.count > 10 ? " and \(volumes.count - 10) more" : "")
                + "; let Longhorn rebuild their replicas (or repair the faulted ones) until "
                + "`kubectl -n longhorn-system get volumes.longhorn.io` shows every attached volume healthy, then run the update again; "
                + "nothing was committed"
        case .snapshotsNotReady(let waits, let seconds):
            "refused: Longhorn snapshots not ready within \(seconds) s: "
                + waits.prefix(10).map { "\($0.snapshot) of \($0.volume)" + ($0.error.isEmpty ? "" : " (\($0.error))") }.joined(separator: ", ")
                + "; see `kubectl -n longhorn-system get snapshots.longhorn.io \(waits.first?.snapshot ?? "")` and the volume's engine, "
                + "then run the update again; nothing was committed"
        case .unreadable(let why):
            "cannot prepare the Longhorn update: \(why); nothing was committed"
        }
    }

    static func == (a: LonghornRefusal, b: LonghornRefusal) -> Bool {
        switch (a, b) {
        case (.downgrade(let a1, let a2), .downgrade(let b1, let b2)), (.skipsMinor(let a1, let a2), .skipsMinor(let b1, let b2)):
            a1 == b1 && a2 == b2
        case (.unhealthyVolumes(let a), .unhealthyVolumes(let b)): a == b
        case (.snapshotsNotReady(let a, let s), .snapshotsNotReady(let b, let t)): a == b && s == t
        case (.unreadable, .unreadable): true
        default: false
        }
    }

    /// The refusal as the command's failure (exit code and message).
    var failure: CommandFailure { CommandFailure(code: exitCode, message: description) }
}

/// One volume that keeps a Longhorn update from starting.
struct LonghornVolumeHealth: Equatable, CustomStringConvertible {
    var name: String
    var state: String
    var robustness: String
    var node: String

    var description: String { "\(name) (\(state), \(robustness)\(node.isEmpty ? "" : " on \(node)"))" }

    /// The volumes that refuse an update: attached and not healthy, or faulted whatever their
    /// state. A detached volume reports `unknown` and is judged by its replicas elsewhere.
    static func blocking(_ volumes: [LonghornVolume]) -> [LonghornVolumeHealth] {
        volumes.filter { ($0.state == "attached" && $0.robustness != "healthy") || $0.robustness == "faulted" }
            .map { LonghornVolumeHealth(name: $0.name, state: $0.state, robustness: $0.robustness, node: $0.currentNodeID) }
            .sorted { $0.name < $1.name }
    }

    /// The volumes whose snapshot is taken before an update: every attached one.
    static func attached(_ volumes: [LonghornVolume]) -> [String] {
        volumes.filter { $0.state == "attached" }.map(\.name).sorted()
    }
}

/// A snapshot an update waits for.
struct LonghornSnapshotWait: Equatable {
    var snapshot: String
    var volume: String
    var error: String
}

/// Which upkeep-made snapshots go once an update's are ready: those of every update but the
/// newest `keep` (by their newest snapshot's creation). Pure.
enum SnapshotRetention {
    struct Snapshot: Equatable {
        var name: String
        /// The `upkeep.io/update` label.
        var update: String
        /// `metadata.creationTimestamp` as written (RFC 3339 sorts as text).
        var created: String
    }

    static func doomed(_ snapshots: [Snapshot], keep: Int) -> [String] {
        let newest = Dictionary(grouping: snapshots, by: \.update).mapValues { $0.map(\.created).max() ?? "" }
        let kept = Set(newest.sorted { ($0.value, $0.key) > ($1.value, $1.key) }.prefix(max(keep, 1)).map(\.key))
        return snapshots.filter { !kept.contains($0.update) }.map(\.name).sorted()
    }
}

/// Whether a failed Longhorn update may still be reverted: only while Longhorn's manager has not
/// moved from the version it ran. Once the new manager runs, putting the old chart back is a
/// downgrade, which Longhorn does not support and blocks (https://longhorn.io/docs/1.12.2/deploy/upgrade/).
struct LonghornManagerState: Equatable {
    /// `current-longhorn-version`; nil when it could not be read.
    var reportedVersion: String?
    /// The image tags of the `longhorn-manager` DaemonSet's containers.
    var managerImageTags: [String]

    /// nil: the manager still runs `from`, a revert is safe. Else why not, in words.
    func moved(from: LonghornVersion) -> String? {
        guard let reported = reportedVersion else {
            return "Longhorn's version (setting current-longhorn-version) could not be read, so the manager may have moved"
        }
        if LonghornVersion(reported) != from { return "Longhorn's manager reports \(reported) (current-longhorn-version)" }
        if let tag = managerImageTags.first(where: { LonghornVersion($0) != from }) {
            return "the longhorn-manager DaemonSet runs \(tag)"
        }
        return nil
    }
}
