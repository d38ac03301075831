/// The bounds on what one connection may hold for a peer that does not read: SwiftNIO's write
/// buffer water marks, a hard cap on the bytes waiting to be sent, and how long the peer has to
/// drain them below the low mark once they passed the high one (docs/tls.md, "A peer that stops
/// reading"; docs/decisions/2026-12-07-outbound-backlog.md says why these numbers).
///
/// Producers that stream (artifact uploads, backup downloads) wait while the connection is not
/// writable (above `highWaterMarkBytes` until below `lowWaterMarkBytes`), so only answers written
/// without waiting can pass the high mark; `pendingBytesMax` bounds those.
public struct OutboundBounds: Equatable, Sendable {
    /// Above this many bytes waiting for the socket the connection stops being writable.
    public var highWaterMarkBytes: Int
    /// Below this many it is writable again.
    public var lowWaterMarkBytes: Int
    /// More waiting than this closes the connection at once.
    public var pendingBytesMax: Int
    /// Not writable for this long (not drained below the low mark) closes the connection.
    public var drainTimeout: Duration

    public static let highWaterMarkBytesDefault = 1 << 20
    public static let lowWaterMarkBytesDefault = 256 << 10
    public static let pendingBytesMaxDefault = 16 << 20
    public static let drainTimeoutDefault: Duration = .seconds(30)

    /// Bounds as given, made consistent: the low mark at least 1 and below the high one, the cap
    /// at least the high mark.
    public init(highWaterMarkBytes: Int = highWaterMarkBytesDefault, lowWaterMarkBytes: Int = lowWaterMarkBytesDefault,
                pendingBytesMax: Int = pendingBytesMaxDefault, drainTimeout: Duration = drainTimeoutDefault) {
        self.highWaterMarkBytes = max(2, highWaterMarkBytes)
        self.lowWaterMarkBytes = min(max(1, lowWaterMarkBytes), self.highWaterMarkBytes - 1)
        self.pendingBytesMax = max(self.highWaterMarkBytes, pendingBytesMax)
        self.drainTimeout = max(.zero, drainTimeout)
    }
}

/// What one connection decides about its peer's reading: when to start and stop the drain
/// deadline, and when to close. A plain value: events in, actions out, no channel and no clock
/// (the handler that owns it, `OutboundBacklogHandler` in UpkeepTLS, schedules the deadline and
/// closes), so the rule is tested by feeding events.
public struct OutboundBacklog: Sendable {
    public enum Event: Equatable, Sendable {
        /// Bytes were queued; `pendingBytes` are now waiting for the socket in all.
        case queued(pendingBytes: Int)
        /// The channel's writability changed (it crossed the high mark up, or the low one down).
        case writabilityChanged(isWritable: Bool)
        /// The deadline started by `.startDrainDeadline` passed.
        case drainDeadlinePassed
    }

    /// The bound a closed connection reached.
    public enum Limit: String, Equatable, Sendable {
        /// `pendingBytesMax`.
        case pendingBytes = "outbound_bytes"
        /// `drainTimeout`.
        case drainTimeout = "drain_timeout"
    }

    public enum Action: Equatable, Sendable {
        case startDrainDeadline(Duration)
        case cancelDrainDeadline
        /// Close the connection now; report `limit` with `pendingBytes` waiting.
        case close(Limit, pendingBytes: Int)
    }

    public let bounds: OutboundBounds
    /// Bytes waiting, as last reported.
    public private(set) var pendingBytes = 0
    private var isWritable = true
    private var deadlineRunning = false
    private var closed = false

    public init(bounds: OutboundBounds) {
        self.bounds = bounds
    }

    public mutating func handle(_ event: Event) -> [Action] {
        guard !closed else { return [] }
        switch event {
        case .queued(let pending):
            pendingBytes = pending
            guard pending > bounds.pendingBytesMax else { return [] }
            return close(.pendingBytes)
        case .writabilityChanged(let writable):
            isWritable = writable
            if writable, deadlineRunning {
                deadlineRunning = false
                return [.cancelDrainDeadline]
            }
            if !writable, !deadlineRunning {
                deadlineRunning = true
                return [.startDrainDeadline(bounds.drainTimeout)]
            }
            return []
        case .drainDeadlinePassed:
            // A deadline cancelled too late to stop its timer must not close a drained connection.
            guard deadlineRunning, !isWritable else { return [] }
            deadlineRunning = false
            return close(.drainTimeout)
        }
    }

    private mutating func close(_ limit: Limit) -> [Action] {
        closed = true
        var actions: [Action] = []
        if deadlineRunning {
            deadlineRunning = false
            actions.append(.cancelDrainDeadline)
        }
        actions.append(.close(limit, pendingBytes: pendingBytes))
        return actions
    }
}
