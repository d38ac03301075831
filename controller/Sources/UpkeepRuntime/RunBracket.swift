/// Work a run does under its lock on either side of driving the rollout, that the runtime itself
/// knows nothing of: the CLI's maintenance mode (Flux suspended around a rollout with
/// `maintenance.suspendFlux`). Held by the same lock as the rollout, it cannot interleave with
/// another controller's operation, or with another command of this one.
///
/// The runtime calls `opening` right after it took the lock, before the rollout is loaded,
/// recorded or driven; and `closing` on every way out of a run whose `opening` returned, after
/// every task of the run stopped (nothing more is sent) and before the lock is given back. It
/// must never drive nodes, and must check `lock` before each write of its own: a lock lost
/// meanwhile belongs to someone else.
public protocol RunBracket: Sendable {
    /// Throwing ends the run: nothing is loaded or recorded, the lock is given back, and the run
    /// throws `RuntimeError.notOpened`. What it did before throwing, it undoes itself.
    func opening(rolloutID: String, lock: OperationLock) async throws
    /// `outcome`: how the run ended, what the run then returns or throws.
    func closing(rolloutID: String, lock: OperationLock, outcome: Result<RunResult, RuntimeError>) async
}
