import UpkeepCore

/// What an install, rollback, restore or rejoin will do, recorded when it starts so that a
/// restarted agent can finish or undo it.
public struct SwapPlan: Codable, Equatable, Sendable {
    /// The binary the operation makes live.
    public var target: BinaryRef
    /// What was live when the operation started.
    public var replaced: LiveBinary?
    /// Install only: the kept copy of `replaced` that a revert puts back.
    public var restore: BinaryRef?
    public var healthTimeoutMs: Int64
    /// Install only: how long a healthy install waits for `commit`.
    public var watchdogTimeoutMs: Int64?
    /// Restore and rejoin: what happens to the datastore while k3s is stopped.
    public var datastore: DatastoreChange?
    /// On an air-gapped node (install, restore, rejoin): the images tarball placed with `target`.
    public var images: ImagesRef?

    public init(target: BinaryRef, replaced: LiveBinary?, restore: BinaryRef?, healthTimeoutMs: Int64,
                watchdogTimeoutMs: Int64?, datastore: DatastoreChange? = nil, images: ImagesRef? = nil) {
        self.target = target
        self.replaced = replaced
        self.restore = restore
        self.healthTimeoutMs = healthTimeoutMs
        self.watchdogTimeoutMs = watchdogTimeoutMs
        self.datastore = datastore
        self.images = images
    }
}

/// How `restore` and `rejoin` change a stopped server's datastore, as k3s documents it
/// (https://docs.k3s.io/datastore/backup-restore).
public enum DatastoreChange: Codable, Equatable, Sendable {
    /// Restore the received backup with this digest: etcd by `k3s server --cluster-reset
    /// --cluster-reset-restore-path`, SQLite by putting `state.db` and the token back.
    case restore(sha256: String, format: BackupReport.Format)
    /// Delete `server/db`, so the server joins the restored cluster.
    case clear
}

/// Progress of an install or rollback that matters to recovery.
public enum SwapStep: Codable, Equatable, Sendable {
    /// The live binary is copied into `previous/`.
    case previousKept
    /// This binary was renamed over the live path.
    case placed(sha256: String)
    /// `systemctl restart` is about to run: from here the running k3s may be the placed binary.
    case restarting
    /// The install failed its probes; the previous binary goes back.
    case reverting
    /// Recorded before `reverting`: the probe of the new binary that failed, so a revert finished
    /// after an agent restart still reports the real verdict.
    case probeFailed(ProbeReport)
    /// Restore and rejoin: the datastore change is done (a restarted agent does not do it again).
    case datastoreChanged
    /// Install on an air-gapped node: the images directory's tarballs are kept aside with the
    /// previous binary; from here on a revert puts them back.
    case imagesKept
}

/// One operation in the journal: running, or finished with its recorded outcome.
public struct OperationEntry: Codable, Equatable, Sendable {
    public var id: String
    public var kind: OperationKind
    /// The request's parameters in short; a reused id with another fingerprint is refused.
    public var fingerprint: String
    public var startedAt: Instant
    /// Install and rollback only.
    public var plan: SwapPlan?
    /// The binary most recently placed by this operation, and whether any restart was issued by it
    /// (from then on the running k3s may be another binary than the live file).
    public var placedSHA256: String?
    public var restartIssued: Bool
    public var reverting: Bool
    /// Install only: the failed probe of the new binary that started the revert.
    public var failedProbe: ProbeReport?
    /// Restore and rejoin: the datastore change is done.
    public var datastoreChanged: Bool
    /// Install: the images directory's tarballs were kept aside (the new one may be placed).
    public var imagesKept: Bool
    public var outcome: OperationOutcome?
    public var finishedAt: Instant?
    /// Install only: how the watch that followed it ended.
    public var watchEnd: WatchEnd?

    /// The journal's names since its first version, when times were Int64 fields named `…UnixMs`.
    enum CodingKeys: String, CodingKey {
        case id, kind, fingerprint, plan, placedSHA256, restartIssued, reverting, failedProbe, datastoreChanged, imagesKept, outcome, watchEnd
        case startedAt = "startedAtUnixMs"
        case finishedAt = "finishedAtUnixMs"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(String.self, forKey: .id)
        kind = try container.decode(OperationKind.self, forKey: .kind)
        fingerprint = try container.decode(String.self, forKey: .fingerprint)
        startedAt = try container.decode(Instant.self, forKey: .startedAt)
        plan = try container.decodeIfPresent(SwapPlan.self, forKey: .plan)
        placedSHA256 = try container.decodeIfPresent(String.self, forKey: .placedSHA256)
        restartIssued = try container.decode(Bool.self, forKey: .restartIssued)
        reverting = try container.decode(Bool.self, forKey: .reverting)
        failedProbe = try container.decodeIfPresent(ProbeReport.self, forKey: .failedProbe)
        // Absent from journals written before restores existed.
        datastoreChanged = try container.decodeIfPresent(Bool.self, forKey: .datastoreChanged) ?? false
        // Absent from journals written before air-gapped installs.
        imagesKept = try container.decodeIfPresent(Bool.self, forKey: .imagesKept) ?? false
        outcome = try container.decodeIfPresent(OperationOutcome.self, forKey: .outcome)
        finishedAt = try container.decodeIfPresent(Instant.self, forKey: .finishedAt)
        watchEnd = try container.decodeIfPresent(WatchEnd.self, forKey: .watchEnd)
    }

    /// Fields added since the first version are written only when set, so entries of operations
    /// that do not use them keep their earlier bytes.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(kind, forKey: .kind)
        try container.encode(fingerprint, forKey: .fingerprint)
        try container.encode(startedAt, forKey: .startedAt)
        try container.encodeIfPresent(plan, forKey: .plan)
        try container.encodeIfPresent(placedSHA256, forKey: .placedSHA256)
        try container.encode(restartIssued, forKey: .restartIssued)
        try container.encode(reverting, forKey: .reverting)
        try container.encodeIfPresent(failedProbe, forKey: .failedProbe)
        if datastoreChanged { try container.encode(true, forKey: .datastoreChanged) }
        if imagesKept { try container.encode(true, forKey: .imagesKept) }
        try container.encodeIfPresent(outcome, forKey: .outcome)
        try container.encodeIfPresent(finishedAt, forKey: .finishedAt)
        try container.encodeIfPresent(watchEnd, forKey: .watchEnd)
    }

    public init(id: String, kind: OperationKind, fingerprint: String, startedAt: Instant, plan: SwapPlan?) {
        self.id = id
        self.kind = kind
        self.fingerprint = fingerprint
        self.startedAt = startedAt
        self.plan = plan
        placedSHA256 = nil
        restartIssued = false
        reverting = false
        datastoreChanged = false
        imagesKept = false
    }

    public var isRunning: Bool { outcome == nil }
}

/// A healthy install waiting for `commit`.
public struct WatchRecord: Codable, Equatable, Sendable {
    public var installID: String
    public var installed: BinaryRef
    /// What the watchdog puts back when the node is unhealthy at the deadline.
    public var restore: BinaryRef
    public var deadline: Instant
    /// How long the watchdog's own health check may take before it reverts.
    public var healthTimeoutMs: Int64
    /// The watchdog found the node unhealthy and is putting `restore` back.
    public var reverting: Bool

    /// The journal's names since its first version.
    enum CodingKeys: String, CodingKey {
        case installID, installed, restore, healthTimeoutMs, reverting
        case deadline = "deadlineUnixMs"
    }

    public init(installID: String, installed: BinaryRef, restore: BinaryRef, deadline: Instant, healthTimeoutMs: Int64) {
        self.installID = installID
        self.installed = installed
        self.restore = restore
        self.deadline = deadline
        self.healthTimeoutMs = healthTimeoutMs
        reverting = false
    }
}

/// How a watch ended.
public enum WatchEnd: Codable, Equatable, Sendable {
    case committed(operationID: String)
    /// The deadline passed, the agent checked and the node was healthy: the new version stays.
    case keptHealthy(ProbeReport)
    /// The deadline passed unhealthy: the previous binary was restored.
    case reverted(failed: ProbeReport, restored: ProbeReport?, message: String)
    case rolledBack(operationID: String)
    /// The deadline passed unhealthy on a server that went up a Kubernetes minor: the new version
    /// was left in place, because the old binary needs the datastore of its minor restored with it
    /// (https://docs.k3s.io/upgrades/roll-back).
    case keptUnhealthy(failed: ProbeReport, message: String)
    /// A later operation that stops k3s or changes its binary or datastore ended the watch
    /// (stopK3s, restore, rejoin).
    case superseded(operationID: String, kind: OperationKind)
}

/// One line of the operation journal. The agent appends a record, durably, before it acts on it.
public enum JournalRecord: Codable, Equatable, Sendable {
    case began(OperationEntry)
    case step(operationID: String, SwapStep)
    case finished(operationID: String, OperationOutcome, at: Instant)
    case previousKept(BinaryRef)
    case watchStarted(WatchRecord)
    case watchReverting(installID: String)
    case watchEnded(installID: String, WatchEnd)
    /// Before this agent first cordons the node: whether it was unschedulable already (then
    /// `uncordon` leaves it so). Kept until `cordonCleared`.
    case cordonNoted(wasUnschedulable: Bool)
    case cordonCleared
    /// The whole state, written when the journal is compacted.
    case snapshot(JournalState)

    /// The journal's names since its first version (`_1` is the outcome, which has no label).
    enum FinishedCodingKeys: String, CodingKey {
        case operationID, _1
        case at = "atUnixMs"
    }
}
