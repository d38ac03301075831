import UpkeepCore

/// One node going from one version to another: a step of the plan (`f<n>`) or, after a
/// failure, the way back of a finished step (`r<n>`).
struct Move: Codable, Equatable, Sendable {
    enum Phase: String, Codable, Sendable {
        /// Not started; waits for its wave's gate.
        case pending
        case cordoning, draining
        /// Waiting for the binary to be staged on the node (prefetched, or staged now).
        case staging
        case installing
        /// Installed and healthy by the agent; waiting for the API to show it Ready at `to`.
        case verifying
        /// Asked the agent to put the previous binary back.
        case rollingBack
        /// Waiting for the API to show the node Ready at `from` again.
        case verifyingRevert
        case uncordoning
        /// Waiting for Longhorn to report every attached volume healthy.
        case settling
        case committing
        /// At `to`, committed, uncordoned if Upkeep cordoned it.
        case done
        /// Stopped before anything changed; uncordoned if Upkeep cordoned it.
        case cancelled
        /// Failed and back at `from`, uncordoned if Upkeep cordoned it.
        case reverted
        /// Not healthy: left cordoned (if Upkeep cordoned it) and reported; watched, and
        /// uncordoned as soon as the API shows it Ready at `from` again.
        case unhealthy
        /// A server its agent found healthy at a new minor that the API did not show Ready in
        /// time. Its way back needs the datastore restored, so it is left as it is for the
        /// operator: `upkeep rollback --restore`, or `resume`, which waits for it again.
        case unverified

        /// Phases waiting for an answer to a request.
        var awaitsReply: Bool {
            switch self {
            case .cordoning, .draining, .installing, .rollingBack, .uncordoning, .committing: true
            default: false
            }
        }

        /// Phases waiting for the cluster to look a certain way, each with a deadline.
        var awaitsCluster: Bool { self == .verifying || self == .verifyingRevert || self == .settling }

        /// Nothing more happens to the move unless the rollout is resumed.
        var isFinal: Bool {
            switch self {
            case .pending, .done, .cancelled, .reverted: true
            default: false
            }
        }

        /// Nothing is in flight: final, or unhealthy (watched until the node recovers, but no
        /// reason to hold up a stop).
        var isSettled: Bool { isFinal || self == .unhealthy || self == .unverified }

        /// The node is cordoned or down for this move: it takes one of the slots `Admission`
        /// counts. Back and uncordoned (waiting for Longhorn, or the commit) it no longer does,
        /// though it stays busy for the Longhorn rule until its move is final.
        var takesASlot: Bool { !isFinal && self != .settling && self != .committing }
    }

    /// `f3` (the plan's fourth step) or `r3` (its way back).
    var key: String
    /// The wave it belongs to.
    var wave = 0
    var node: String
    var role: NodeRole
    var arch: Arch
    var from: K3sVersion
    var to: K3sVersion
    /// Bumped on every deliberate redo, so a redo never replays a recorded answer.
    var attempt = 1
    /// Times in a row the agent answered the current step `interrupted` (it restarted and left
    /// the step undone); each sends the step again, up to `requestTriesMax`. Nil: none.
    var interruptions: Int?
    var phase = Phase.pending
    /// Where an uncordon leads: settling (success), cancelled or reverted.
    var afterUncordon: Phase?
    /// The node was schedulable when Upkeep cordoned it, so Upkeep (and only Upkeep) uncordons it.
    var cordonedByUs = false
    /// The operation id of the install whose watch `commit` ends.
    var installOperationID: String?
    var deadline: Instant?
    /// Observations numbered at or below this were made before the current wait began.
    var sinceSerial = 0
    var note: String?

    init(key: String, node: String, role: NodeRole, arch: Arch, from: K3sVersion, to: K3sVersion) {
        self.key = key
        self.node = node
        self.role = role
        self.arch = arch
        self.from = from
        self.to = to
    }

    func operationID(_ rollout: String, _ command: AgentCommand) -> String {
        "\(rollout):\(key):\(command.name):\(attempt)"
    }
}

/// A wave of the plan: its gate (the maintenance windows, the canary soak, the configured gates,
/// the hop's backup) opens once; then its nodes start as `Admission` allows, each as soon as
/// a slot is free and Longhorn keeps a healthy replica up, not when the wave before has ended.
struct WaveRun: Codable, Equatable, Sendable {
    /// "hop 1 s2", "rollback w1": how notices name it.
    var label: String
    var role: NodeRole
    var moves: [Int]
    /// Every node of the wave (and of the waves still running beside it) has started.
    var gatePassed = false
    /// The soak, the gates and the hop's backup let the wave go; nil: not (yet) since the gate opened.
    var opened: Bool?
    var gateDeadline: Instant?
    var gateSinceSerial = 0
    /// Gate reports numbered at or below this were read before the gate opened; nil: none read.
    var gateReadSince: Int?
    /// While the configured gates hold the wave: since when, why, and when that was last said.
    var heldSince: Instant?
    var holds: [GateHold]?
    var holdNoticeAt: Instant?
    /// A wave of the plan's canaries (nil: not one).
    var canary: Bool?
    /// The gate is not looked at before this moment (the soak after the canaries).
    var notBefore: Instant?
}

/// A binary being (or already) staged on a node, shared by every move that needs it there.
struct StageRun: Codable, Equatable, Sendable {
    enum State: String, Codable, Sendable { case sending, staged, failed }
    var node: String
    var version: K3sVersion
    var operationID: String
    var state = State.sending
    var message: String?
    /// Times this stage was sent again because the agent restarted during it. Nil: none.
    var interruptions: Int?
}

/// A request sent (or to be sent) and not yet answered.
struct PendingRequest: Codable, Equatable, Sendable {
    enum Owner: Codable, Equatable, Sendable {
        case move(Int)
        /// The stage run with this operation id (stage runs come and go; ids stay).
        case stage(String)
        /// The datastore backup before this hop.
        case snapshot(hop: Int)
        /// The restore member with this key.
        case restore(String)
    }

    var request: AgentRequest
    var owner: Owner
    /// Sends so far.
    var tries = 0
    /// When to send (again); nil while a send is in flight, or once the tries are used up.
    var sendAt: Instant?
    var exhausted = false
}

/// Why the rollout is stopping: a node failed (auto-rollback may follow), or the cluster or an
/// agent does not allow going on (the rollout waits for `resume`).
enum StopReason: Codable, Equatable, Sendable {
    case failure(String)
    case blocked(String)

    var message: String {
        switch self {
        case .failure(let text), .blocked(let text): text
        }
    }
}
