import UpkeepCore

/// A datastore backup the engine asked for before a hop's first server is touched, and what
/// came of it (design: a snapshot per hop, so every hop can be undone).
struct HopSnapshot: Codable, Equatable, Sendable {
    enum State: String, Codable, Sendable { case taking, taken, failed }

    var hop: Int
    /// The server whose agent takes it (the hop's first server).
    var node: String
    /// The version that server runs: the one the hop leaves.
    var version: K3sVersion
    var backupID: String
    /// Bumped on every deliberate retry (`resume` after a failure).
    var attempt = 1
    /// Agent restarts in a row during it (optional: engine states of earlier builds load).
    var interruptions: Int?
    var state = State.taking
    var takenAt: Instant?
    var message: String?

    func operationID(_ rollout: String) -> String { "\(rollout):h\(hop):backup:\(attempt)" }

    var restorable: RestoreSnapshot? {
        guard state == .taken, let takenAt else { return nil }
        return RestoreSnapshot(backupID: backupID, version: version, takenAt: takenAt, node: node)
    }
}

/// A sealed datastore backup a restore puts back, as the engine names it to the operator.
public struct RestoreSnapshot: Codable, Equatable, Sendable {
    public var backupID: String
    /// The k3s version of the server it was taken on.
    public var version: K3sVersion
    public var takenAt: Instant
    public var node: String

    public init(backupID: String, version: K3sVersion, takenAt: Instant, node: String) {
        self.backupID = backupID
        self.version = version
        self.takenAt = takenAt
        self.node = node
    }
}

/// What `upkeep rollback --restore` would do, or why it cannot.
public enum RestoreChoice: Equatable, Sendable {
    /// Restore `snapshot`, undoing `hop` (its nodes go back to where the hop found them).
    case ready(hop: Int, snapshot: RestoreSnapshot)
    case refused(String)
}

/// One node taking part in a restore (design-15 section 3). Servers come first, the restoring
/// one at index 0; agents follow in the batches the restore returns them in.
struct RestoreMember: Codable, Equatable, Sendable {
    /// How the node reaches `to`.
    enum Way: String, Codable, Sendable {
        /// The restoring server: its datastore comes from the snapshot.
        case restore
        /// Another server: its datastore is cleared and it joins the restored one.
        case rejoin
        /// An agent the hop moved: the binary its agent kept goes back.
        case rollback
        /// An agent brought to `to` by an install (recovery, where nothing was kept for it).
        case install
        /// An agent the hop did not move: drained and uncordoned around the restore only.
        case stay
    }

    enum Phase: String, Codable, Sendable {
        case waiting
        /// Its binary of `to` is being staged.
        case staging
        /// The restoring server: the backup streams to it.
        case receiving
        /// Ready for the restore to stop anything.
        case prepared
        case cordoning, draining
        case drained
        case stopping
        case stopped
        case restoring, rejoining, rollingBack, installing, committing
        /// At `to` and healthy by its agent's probes.
        case back
        case uncordoning
        case done
        /// Its step was refused or came up unhealthy: the restore blocks; `resume` redoes it.
        case failed
    }

    /// `x1.0`: restore 1, member 0. Operation ids and `status` use it.
    var key: String
    var node: String
    var role: NodeRole
    var arch: Arch
    /// What it runs when the restore begins, when known.
    var from: K3sVersion?
    var to: K3sVersion
    var way: Way
    var phase = Phase.waiting
    var attempt = 1
    /// Redos after an agent said the operation was interrupted; bounded by `requestTriesMax`.
    var redos = 0
    var cordonedByUs = false
    /// The stage request of this restore for its binary (never one from before the restore:
    /// the agent may no longer hold what an earlier hop staged).
    var stageOperationID: String?
    var installOperationID: String?
    /// After a failure: the phase `resume` starts it in again.
    var retry: Phase?
    var note: String?

    func operationID(_ rollout: String, _ command: AgentCommand) -> String { "\(rollout):\(key):\(command.name):\(attempt)" }
}

/// The k3s-documented restore of one hop's snapshot (https://docs.k3s.io/upgrades/roll-back),
/// as engine state: every stage persisted, every request with an operation id.
struct RestoreRun: Codable, Equatable, Sendable {
    enum Stage: String, Codable, Sendable {
        /// Waiting for a fresh look at the cluster to know every node (API available).
        case surveying
        /// Binaries staged on every server, the backup streamed to the restoring server.
        /// Nothing is stopped before this stage is complete.
        case preparing
        /// Every node cordoned and drained (API available; a drain that does not finish is a warning).
        case draining
        /// k3s stopped on every server.
        case stopping
        /// The snapshot restored on the restoring server with the old binary, k3s started.
        case restoring
        /// The other servers, one at a time, cleared and started: they join the restored one.
        case rejoining
        /// Agents the hop moved go back, batch by batch.
        case returningAgents
        case uncordoning
        /// Every member Ready at its version through the API.
        case verifying
        case done
    }

    /// 1 for the engine's first restore; keys and operation ids carry it.
    var number: Int
    /// The hop undone; nil for a recovery from a backup.
    var hop: Int?
    var snapshot: RestoreSnapshot
    /// Why: the failure, or the operator's request.
    var cause: String
    /// The operator asked for it (`rollback --restore`, `recover`); nil or false: the engine
    /// restored after a failure (optional: engine states of earlier builds load).
    var requested: Bool?
    var apiAvailable: Bool
    var stage: Stage
    var members: [RestoreMember] = []
    /// Agent member indices, batch by batch.
    var agentBatches: [[Int]] = []
    /// The batch (returningAgents) or server (rejoining) being worked on.
    var position = 0
    var deadline: Instant?
    /// Observations numbered at or below this were made before the current wait began.
    var sinceSerial = 0

    var servers: [Int] { members.indices.filter { members[$0].role == .server } }
}
