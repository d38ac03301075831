import UpkeepCore

/// What an install or rollback will do, recorded when it starts so that a restarted agent can
/// finish or undo it.
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

    public init(target: BinaryRef, replaced: LiveBinary?, restore: BinaryRef?, healthTimeoutMs: Int64,
                watchdogTimeoutMs: Int64?) {
        self.target = target
        self.replaced = replaced
        self.restore = restore
        self.healthTimeoutMs = healthTimeoutMs
        self.watchdogTimeoutMs = watchdogTimeoutMs
    }
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
    public var outcome: OperationOutcome?
    public var finishedAt: Instant?
    /// Install only: how the watch that followed it ended.
    public var watchEnd: WatchEnd?

    /// The journal's names since its first version, when times were Int64 fields named `…UnixMs`.
    enum CodingKeys: String, CodingKey {
        case id, kind, fingerprint, plan, placedSHA256, restartIssued, reverting, outcome, watchEnd
        case startedAt = "startedAtUnixMs"
        case finishedAt = "finishedAtUnixMs"
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
