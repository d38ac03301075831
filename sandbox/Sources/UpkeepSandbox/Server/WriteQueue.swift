import NIOConcurrencyHelpers

/// One writer at a time, in arrival order, with at most `waitingMax` waiting: the simulated
/// API's writes, each of which copies the view, writes the datastore and only then changes the
/// view. A writer beyond the bound is refused at once (`Full`), so a datastore that hangs holds
/// up a bounded number of callers.
final class WriteQueue: Sendable {
    struct Full: Error, CustomStringConvertible {
        let waitingMax: Int
        var description: String { "\(waitingMax) writes are already waiting for the datastore" }
    }

    private struct State {
        var busy = false
        var waiting: [CheckedContinuation<Bool, Never>] = []
    }

    private let state = NIOLockedValueBox(State())
    let waitingMax: Int

    init(waitingMax: Int) {
        self.waitingMax = waitingMax
    }

    /// Runs `body` once every writer before it has finished.
    func run<T>(_ body: () async throws -> T) async throws -> T {
        let admitted = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let now: Bool? = state.withLockedValue { state in
                if !state.busy {
                    state.busy = true
                    return true
                }
                guard state.waiting.count < waitingMax else { return false }
                state.waiting.append(continuation)
                return nil
            }
            if let now { continuation.resume(returning: now) }
        }
        guard admitted else { throw Full(waitingMax: waitingMax) }
        defer {
            // The next writer inherits the queue (it stays busy), or it goes idle.
            state.withLockedValue { state -> CheckedContinuation<Bool, Never>? in
                if state.waiting.isEmpty {
                    state.busy = false
                    return nil
                }
                return state.waiting.removeFirst()
            }?.resume(returning: true)
        }
        return try await body()
    }

    var waitingCount: Int { state.withLockedValue { $0.waiting.count } }
}
