import Synchronization
import UpkeepCore
import UpkeepPOSIX
import UpkeepRuntime
import UpkeepStore

/// Maintenance mode around a rollout (`maintenance.suspendFlux`), switched by the runtime while
/// the rollout holds its lock, so no other controller's operation (or `maintenance enable`)
/// comes between: on right after the lock is taken and before anything is recorded, off (once
/// the rollout finished) right before it is given back. Every write checks that lock first. It
/// must never be used without the lock: that is what `RunBracket` guarantees.
final class RolloutMaintenance: RunBracket {
    private let mode: MaintenanceMode
    private let by: String
    private let say: @Sendable (String) -> Void

    private struct State {
        var hold: MaintenanceMode.Hold?
        var failure: CommandFailure?
    }

    private let state = Mutex(State())

    init(_ mode: MaintenanceMode, by: String, say: @escaping @Sendable (String) -> Void) {
        self.mode = mode
        self.by = by
        self.say = say
    }

    /// What the command ends with instead of the run's own result: maintenance mode could not be
    /// switched on (the run did not start), or not off after the rollout finished (exit 8).
    var failure: CommandFailure? { state.withLock { $0.failure } }

    /// On for the rollout; an enable that fails is undone as far as it got (a lost lock stops
    /// that too: the record stays as a crash leaves it), and the rollout is not started.
    func opening(rolloutID: String, lock: OperationLock) async throws {
        let mode = fenced(by: lock)
        do {
            let hold = try await mode.hold(forRollout: rolloutID, by: by, now: .wallClockNow())
            state.withLock { $0.hold = hold }
        } catch {
            try? await mode.release(forRollout: rolloutID, by: by, now: .wallClockNow())
            let cause = MaintenanceSession.failure(error) as? CommandFailure
            let failure = CommandFailure(code: cause?.code ?? RolloutExitCode.state,
                                         message: "maintenance mode (maintenance.suspendFlux) could not be switched on: "
                                             + "\(cause?.message ?? "\(error)"); no node was touched")
            state.withLock { $0.failure = failure }
            throw failure
        }
    }

    /// Off once the rollout finished (completed, rolled back, failed: Flux must not stay
    /// suspended); on while it is blocked; off again when this run switched it on and the
    /// rollout was then refused before it was driven.
    func closing(rolloutID: String, lock: OperationLock, outcome: Result<RunResult, RuntimeError>) async {
        let mode = fenced(by: lock)
        switch outcome {
        case .success(.finished), .success(.restored):
            do {
                try await mode.release(forRollout: rolloutID, by: by, now: .wallClockNow())
            } catch {
                let failure = CommandFailure(code: RolloutExitCode.unreachable,
                                             message: "rollout \(rolloutID) finished (`upkeep status`), but maintenance mode held for it could not be "
                                                 + "switched off: \(error); Flux stays suspended until `upkeep maintenance disable`")
                state.withLock { $0.failure = failure }
            }
        case .success(.blocked):
            if let period = try? await mode.held(forRollout: rolloutID) {
                say("maintenance mode \(period.id) stays on while the rollout is blocked (\(period.suspended.count) Flux objects suspended); "
                    + "it goes off when the rollout finishes, or with `upkeep maintenance disable`")
            }
        case .failure(let error):
            guard state.withLock({ $0.hold }) == .enabledNow, Self.neverDrove(error) else { return }
            try? await mode.release(forRollout: rolloutID, by: by, now: .wallClockNow())
        }
    }

    private func fenced(by lock: OperationLock) -> MaintenanceMode {
        var mode = self.mode
        mode.fence = { lock.loss() }
        return mode
    }

    /// Whether the run ended before it acted on the rollout: the store refused it when loading
    /// (a lock lost later stopped a rollout that was driven).
    private static func neverDrove(_ error: RuntimeError) -> Bool {
        switch error {
        case .store(let cause): cause.meansNotDriven
        case .lock, .lockLost, .alreadyRunning, .stalled, .cancelled, .notOpened: false
        }
    }
}
