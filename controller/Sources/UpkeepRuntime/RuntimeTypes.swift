import UpkeepRollout
import UpkeepStore
import UpkeepCore

/// How a run of the runtime ended.
public enum RunResult: Equatable, Sendable {
    /// The rollout finished: completed, rolled back or failed.
    case finished(RolloutOutcome)
    /// A restore the operator asked for (`rollback --restore`, `recover`) finished: every node is
    /// back where the snapshot's hop found it. The rollout's outcome is `rolledBack(cause)`; for
    /// the command that asked, it is done.
    case restored(cause: String)
    /// The rollout waits for `upkeep resume` (a gate, a refusal, an agent that does not answer);
    /// nothing is in flight and the lease is released.
    case blocked(reason: String)
}

/// What the runtime tells the CLI's progress view as it goes. Notices and moves are reported
/// after they are persisted.
public enum RuntimeUpdate: Sendable {
    case notice(Notice, at: Instant)
    /// Every move, after a transition that changed any of them.
    case moves([MoveProgress], at: Instant)
    /// A line an agent streamed while working on a request (evicted pods, staged bytes).
    case agentProgress(node: String, operationID: String, line: String)
    /// Something about the runtime itself: a look at the cluster failed, a lease renewal failed.
    case warning(String)
}

/// Why a run stopped other than by finishing or blocking.
public enum RuntimeError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The store refused or failed (lease held or lost, disk, unknown rollout, …).
    case store(StoreError)
    /// The cluster lock was not taken: another controller holds it, the API does not answer, or refuses.
    case lock(ClusterLockError)
    /// The operation lock was lost while running (`reason`): the rollout was stopped without
    /// acting further and recorded blocked.
    case lockLost(rolloutID: String, reason: String)
    /// This runtime is already driving a rollout.
    case alreadyRunning
    /// The engine waits for nothing that can happen (a bug): stopped rather than hang.
    case stalled(String)
    /// The caller cancelled the run (the process is stopping); the rollout resumes later.
    case cancelled
    /// The run's `RunBracket` refused to open (`reason`): nothing was loaded or recorded, and
    /// the lock was given back.
    case notOpened(rolloutID: String, reason: String)

    public var description: String {
        switch self {
        case .store(let error): error.description
        case .lock(let error): error.description
        case .lockLost(let id, let reason):
            "this controller lost its lock (\(reason)) and stopped rollout \(id) without acting further; it is blocked. "
                + "`upkeep status` shows who holds the cluster Lease; `upkeep resume` carries the rollout on once it is free, "
                + "`upkeep abandon` gives it up"
        case .alreadyRunning: "this controller is already driving a rollout"
        case .stalled(let status): "the rollout engine waits for nothing (status \(status)); run `upkeep resume`, and report this as a bug"
        case .cancelled: "stopped before the rollout finished; run `upkeep resume` to carry it on"
        case .notOpened(let id, let reason): "rollout \(id) was not started: \(reason)"
        }
    }
}
