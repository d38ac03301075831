import NIOConcurrencyHelpers

/// The body of an answer written as it is produced (a Kubernetes watch): the server sends the
/// head at once with `Transfer-Encoding: chunked`, then each `send` as it comes, and ends the
/// answer at `finish`. The producer is told (`onClose`) when the answer ended either way (it
/// finished, or the connection closed: the client went away, or a server bound cut it).
///
/// It holds no bytes for the producer: each piece goes to the connection's event loop and into
/// the connection's outbound buffer, which the server's outbound bounds cap (a client that stops
/// reading is cut at `pendingBytesMax` or `drainTimeout`, counted and logged like any other).
/// Before the server has attached (the head is not written yet), at most `pendingPiecesMax`
/// pieces wait; more finish the stream.
public final class HTTPResponseStream: Sendable {
    /// What the server's connection is told.
    enum Piece: Sendable {
        case bytes([UInt8])
        case end
    }

    private struct State {
        var sink: (@Sendable (Piece) -> Void)?
        var waiting: [Piece] = []
        var ended = false
        var onClose: [@Sendable () -> Void] = []
    }

    public static let pendingPiecesMax = 1_024
    private let state = NIOLockedValueBox(State())

    public init() {}

    /// Sends one piece of the body (one chunk); false when the answer has ended.
    @discardableResult
    public func send(_ bytes: [UInt8]) -> Bool {
        let sink: (@Sendable (Piece) -> Void)?? = state.withLockedValue { state in
            guard !state.ended else { return .none }
            if let sink = state.sink { return .some(sink) }
            guard state.waiting.count < Self.pendingPiecesMax else { return .none }
            state.waiting.append(.bytes(bytes))
            return .some(nil)
        }
        guard let sink else {
            finish()
            return false
        }
        sink?(.bytes(bytes))
        return true
    }

    /// Ends the answer (the last chunk); the connection may carry the next request.
    public func finish() {
        let sink: (@Sendable (Piece) -> Void)? = state.withLockedValue { state in
            guard !state.ended else { return nil }
            state.ended = true
            if state.sink == nil { state.waiting.append(.end) }
            return state.sink
        }
        sink?(.end)
    }

    /// Runs `body` once the answer has ended (at once if it has); from any thread.
    public func onClose(_ body: @escaping @Sendable () -> Void) {
        let now: Bool = state.withLockedValue { state in
            if state.ended && state.sink == nil && state.waiting.isEmpty { return true }
            state.onClose.append(body)
            return false
        }
        if now { body() }
    }

    /// Whether the answer has ended.
    public var hasEnded: Bool { state.withLockedValue { $0.ended } }

    // MARK: - The server's side

    /// The head is written: pieces go to `sink` from now on, those waiting first.
    func attach(_ sink: @escaping @Sendable (Piece) -> Void) {
        let waiting: [Piece] = state.withLockedValue { state in
            state.sink = sink
            defer { state.waiting = [] }
            return state.waiting
        }
        for piece in waiting { sink(piece) }
    }

    /// The connection is done with the answer (ended, or closed): tells the producer.
    func closed() {
        let callbacks: [@Sendable () -> Void] = state.withLockedValue { state in
            state.ended = true
            state.sink = nil
            state.waiting = []
            defer { state.onClose = [] }
            return state.onClose
        }
        for callback in callbacks { callback() }
    }
}

extension HTTPResponseStream: Equatable {
    public static func == (lhs: HTTPResponseStream, rhs: HTTPResponseStream) -> Bool { lhs === rhs }
}
