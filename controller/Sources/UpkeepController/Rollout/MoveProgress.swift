import UpkeepCore

/// A read-only view of one node's move (a plan step, or its way back after a failure), for the
/// store's per-node history, `upkeep status` and progress views. It reports; it decides nothing.
public struct MoveProgress: Codable, Equatable, Sendable {
    public enum Direction: String, Codable, Sendable {
        /// A step of the plan (`f<n>`).
        case forward
        /// The way back of a finished step after a failure (`r<n>`).
        case back
    }

    /// Where the move stands, coarser than its phase.
    public enum State: String, Codable, Sendable {
        /// Not started; waits for its wave's gate.
        case waiting
        case inProgress
        /// At `to`, committed.
        case done
        /// Stopped before anything changed.
        case cancelled
        /// Failed and back at `from`.
        case reverted
        /// Not healthy; watched until it recovers.
        case unhealthy

        /// Nothing more happens to the move unless the rollout is resumed.
        public var isFinished: Bool { self != .waiting && self != .inProgress }
    }

    /// `f3` or `r3`: unique within a rollout, the middle of its operation ids.
    public var key: String
    public var node: String
    public var role: NodeRole
    public var direction: Direction
    public var from: K3sVersion
    public var to: K3sVersion
    public var state: State
    /// The engine's phase (`draining`, `verifying`, …), for display.
    public var phase: String
    public var attempt: Int
    /// Upkeep cordoned the node and has not uncordoned it yet.
    public var cordonedByUpkeep: Bool
    /// Why the move is unhealthy, when it is.
    public var note: String?

    public init(key: String, node: String, role: NodeRole, direction: Direction, from: K3sVersion, to: K3sVersion,
                state: State, phase: String, attempt: Int, cordonedByUpkeep: Bool = false, note: String? = nil) {
        self.key = key
        self.node = node
        self.role = role
        self.direction = direction
        self.from = from
        self.to = to
        self.state = state
        self.phase = phase
        self.attempt = attempt
        self.cordonedByUpkeep = cordonedByUpkeep
        self.note = note
    }
}

extension RolloutEngine {
    /// Every move so far, plan steps first, then the ways back in the order they run.
    public var progress: [MoveProgress] {
        moves.map { move in
            let state: MoveProgress.State = switch move.phase {
            case .pending: .waiting
            case .done: .done
            case .cancelled: .cancelled
            case .reverted: .reverted
            case .unhealthy: .unhealthy
            default: .inProgress
            }
            return MoveProgress(key: move.key, node: move.node, role: move.role, direction: move.key.hasPrefix("r") ? .back : .forward,
                                from: move.from, to: move.to, state: state, phase: move.phase.rawValue, attempt: move.attempt,
                                cordonedByUpkeep: move.cordonedByUs, note: move.note)
        }
    }
}
