import UpkeepCore
import UpkeepRollout
import UpkeepPOSIX
import UpkeepRuntime
import UpkeepStore

extension OperationLock {
    /// Takes the lock for `operation`, runs `body`, and gives the lock back however `body` ends:
    /// what a command that is no rollout (`update`, `maintenance enable` and `disable`) holds
    /// around its writes. A refusal ends with `untouched` (what was not done, e.g. "nothing was
    /// changed"): exit 6 when another holder has the lock (the message names it), 9 when the
    /// state database failed, 8 when the API did not answer or refused.
    func holding<T>(_ operation: String, untouched: String, say: (String) -> Void, _ body: () async throws -> T) async throws -> T {
        let grant: ClusterLockGrant?
        do throws(RuntimeError) {
            grant = try await self.acquire(operation: operation, lost: { _ in })
        } catch {
            switch error {
            case .store(.leaseHeld), .lock(.held): throw CommandFailure(code: RolloutExitCode.leaseHeld, message: "\(error); \(untouched)")
            case .store: throw CommandFailure(code: RolloutExitCode.state, message: error.description)
            default: throw CommandFailure(code: RolloutExitCode.unreachable, message: "\(error); \(untouched)")
            }
        }
        if case .held(_, let from?)? = grant { say("took the cluster Lease over from \(from)") }
        let result: T
        do {
            result = try await body()
        } catch {
            await release()
            throw error
        }
        await release()
        return result
    }

    /// Why this controller can no longer count on the lock, nil while it holds it: check it
    /// before every write made under the lock.
    func loss(at now: Instant = .wallClockNow()) -> String? {
        isHeld(at: now) ? nil : "this controller lost its lock (\(lostReason ?? "the cluster Lease was not renewed in time"))"
    }
}
