import Synchronization

/// The sending side of one stream's flow control (PROTOCOL.md 7.2): how many chunk bytes the
/// receiver still accepts. The sender waits here; WindowUpdates add credit. Credit can never
/// exceed the receiver's window. One sender at a time.
final class CreditGate: Sendable {
    private struct State {
        var creditBytes: Int
        var waiter: CheckedContinuation<Void, any Error>?
        var failure: (any Error)?
    }

    let windowBytes: Int
    private let state: Mutex<State>

    init(windowBytes: Int) {
        self.windowBytes = windowBytes
        state = Mutex(State(creditBytes: windowBytes))
    }

    /// Adds returned credit. False when the increment is 0 or would raise the credit above the
    /// window: the receiver broke the protocol.
    func add(_ incrementBytes: Int) -> Bool {
        let (accepted, waiter) = state.withLock { state -> (Bool, CheckedContinuation<Void, any Error>?) in
            guard incrementBytes > 0, state.creditBytes + incrementBytes <= windowBytes else { return (false, nil) }
            state.creditBytes += incrementBytes
            defer { state.waiter = nil }
            return (true, state.waiter)
        }
        waiter?.resume()
        return accepted
    }

    /// Ends the stream: the waiting sender (and any later `take`) throws `error`.
    func fail(_ error: any Error) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, any Error>? in
            if state.failure == nil { state.failure = error }
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(throwing: error)
    }

    /// Waits until there is credit, then takes up to `bytesMax` of it (at least 1 byte).
    func take(upTo bytesMax: Int) async throws -> Int {
        precondition(bytesMax > 0, "take at least one byte")
        while true {
            let taken = try state.withLock { state throws -> Int? in
                if let failure = state.failure { throw failure }
                guard state.creditBytes > 0 else { return nil }
                let bytes = min(state.creditBytes, bytesMax)
                state.creditBytes -= bytes
                return bytes
            }
            if let taken { return taken }
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                    let ready = state.withLock { state -> Result<Void, any Error>? in
                        if let failure = state.failure { return .failure(failure) }
                        if state.creditBytes > 0 { return .success(()) }
                        precondition(state.waiter == nil, "one sender per stream")
                        state.waiter = continuation
                        return nil
                    }
                    if let ready { continuation.resume(with: ready) }
                }
            } onCancel: {
                fail(CancellationError())
            }
        }
    }
}
