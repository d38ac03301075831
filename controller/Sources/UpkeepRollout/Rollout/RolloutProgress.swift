import UpkeepCore

/// One node's move as the progress view, `upkeep status` and the history show it.
public struct MoveProgress: Codable, Equatable, Sendable {
    public enum Stage: String, Codable, Sendable {
        case waiting, working, done, cancelled, reverted, unhealthy
    }

    /// `f3` (the plan's fourth step) or `r3` (its way back in a rollback).
    public var key: String
    public var node: String
    public var role: NodeRole
    public var from: K3sVersion
    public var to: K3sVersion
    /// The engine's phase word: pending, cordoning, draining, staging, installing, verifying, …
    public var phase: String
    public var stage: Stage
    /// "hop 1 s1", "rollback w2".
    public var wave: String
    public var isRollback: Bool
    public var note: String?

    public init(key: String, node: String, role: NodeRole, from: K3sVersion, to: K3sVersion, phase: String, stage: Stage,
                wave: String, isRollback: Bool, note: String?) {
        self.key = key
        self.node = node
        self.role = role
        self.from = from
        self.to = to
        self.phase = phase
        self.stage = stage
        self.wave = wave
        self.isRollback = isRollback
        self.note = note
    }
}

extension RolloutEngine {
    /// Every move in plan order (forward moves first, then those of a rollback).
    public var progress: [MoveProgress] {
        moves.indices.map(progress(ofMove:)) + restoreProgress
    }

    func progress(ofMove index: Int) -> MoveProgress {
        let move = moves[index]
        let stage: MoveProgress.Stage = switch move.phase {
        case .pending: .waiting
        case .done: .done
        case .cancelled: .cancelled
        case .reverted: .reverted
        case .unhealthy: .unhealthy
        default: .working
        }
        return MoveProgress(key: move.key, node: move.node, role: move.role, from: move.from, to: move.to,
                            phase: move.phase.rawValue, stage: stage,
                            wave: waves.indices.contains(move.wave) ? waves[move.wave].label : "",
                            isRollback: move.key.hasPrefix("r"), note: move.note)
    }

    /// The members of the restore under way or done, after the moves in `progress`.
    var restoreProgress: [MoveProgress] {
        guard let run = restore else { return [] }
        let label = run.hop.map { "restore of hop \($0)" } ?? "recovery"
        return run.members.map { member in
            let stage: MoveProgress.Stage = switch member.phase {
            case .waiting, .prepared: .waiting
            case .done: .done
            case .failed: .unhealthy
            default: .working
            }
            return MoveProgress(key: member.key, node: member.node, role: member.role, from: member.from ?? member.to, to: member.to,
                                phase: member.phase.rawValue, stage: stage, wave: label, isRollback: true, note: member.note)
        }
    }
}
