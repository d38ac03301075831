import Synchronization

/// Where the task sending one stream (an upload on the client, a download on the server) waits
/// for flow-control credit (PROTOCOL.md 7.2), and for its connection to be writable: a peer that
/// grants credit and then stops reading holds the sender here, not bytes in the channel's
/// buffer (`OutboundBacklogHandler` closes the connection when it does not drain in time). The
/// connection's session decides how much credit there is and grants it here, its handler says
/// when the channel's writability changes; the sender takes credit. One sender at a time.
final class CreditGate: Sendable {
    private struct State {
        var creditBytes: Int
        var isWritable: Bool
        var waiter: CheckedContinuation<Void, any Error>?
        var failure: (any Error)?
    }

    private let state: Mutex<State>

    /// A gate holding `creditBytes` to start with, on a channel writable or not.
    init(creditBytes: Int, isWritable: Bool = true) {
        state = Mutex(State(creditBytes: creditBytes, isWritable: isWritable))
    }

    /// The channel became writable (below its low water mark) or stopped being so (above its high one).
    func writabilityChanged(_ isWritable: Bool) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, any Error>? in
            state.isWritable = isWritable
            guard isWritable else { return nil }
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    /// Adds credit the session granted.
    func grant(_ bytes: Int) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, any Error>? in
            state.creditBytes += bytes
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
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

    /// Waits until there is credit and the channel is writable, then takes up to `bytesMax` of
    /// the credit (at least 1 byte).
    func take(upTo bytesMax: Int) async throws -> Int {
        precondition(bytesMax > 0, "take at least one byte")
        while true {
            let taken = try state.withLock { state throws -> Int? in
                if let failure = state.failure { throw failure }
                guard state.creditBytes > 0, state.isWritable else { return nil }
                let bytes = min(state.creditBytes, bytesMax)
                state.creditBytes -= bytes
                return bytes
            }
            if let taken { return taken }
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                    let ready = state.withLock { state -> Result<Void, any Error>? in
                        if let failure = state.failure { return .failure(failure) }
                        if state.creditBytes > 0, state.isWritable { return .success(()) }
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
