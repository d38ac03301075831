import Testing
import UpkeepCore

/// The rule for a peer that stops reading (docs/tls.md, "A peer that stops reading"): the drain
/// deadline runs exactly while the connection is not writable, and the connection is closed at
/// the byte cap or when the deadline passes, once.
@Suite struct OutboundBacklogTests {
    static let bounds = OutboundBounds(highWaterMarkBytes: 64 << 10, lowWaterMarkBytes: 16 << 10, pendingBytesMax: 1 << 20,
                                       drainTimeout: .seconds(2))

    @Test func aPeerThatDrainsInTimeIsNeverClosed() {
        var backlog = OutboundBacklog(bounds: Self.bounds)
        #expect(backlog.handle(.queued(pendingBytes: 70 << 10)).isEmpty)
        #expect(backlog.handle(.writabilityChanged(isWritable: false)) == [.startDrainDeadline(.seconds(2))])
        #expect(backlog.handle(.writabilityChanged(isWritable: false)).isEmpty)
        #expect(backlog.handle(.writabilityChanged(isWritable: true)) == [.cancelDrainDeadline])
        // A timer cancelled too late fires on a drained connection: nothing happens.
        #expect(backlog.handle(.drainDeadlinePassed).isEmpty)
        #expect(backlog.handle(.writabilityChanged(isWritable: false)) == [.startDrainDeadline(.seconds(2))])
    }

    @Test func aPeerThatDoesNotDrainIsClosedAtTheDeadline() {
        var backlog = OutboundBacklog(bounds: Self.bounds)
        _ = backlog.handle(.queued(pendingBytes: 300 << 10))
        #expect(backlog.handle(.writabilityChanged(isWritable: false)) == [.startDrainDeadline(.seconds(2))])
        #expect(backlog.handle(.drainDeadlinePassed) == [.close(.drainTimeout, pendingBytes: 300 << 10)])
        // Closed once: what follows decides nothing.
        #expect(backlog.handle(.queued(pendingBytes: 2 << 20)).isEmpty)
        #expect(backlog.handle(.drainDeadlinePassed).isEmpty)
    }

    @Test func bytesBeyondTheCapCloseAtOnce() {
        var backlog = OutboundBacklog(bounds: Self.bounds)
        #expect(backlog.handle(.queued(pendingBytes: 1 << 20)).isEmpty)
        _ = backlog.handle(.writabilityChanged(isWritable: false))
        #expect(backlog.handle(.queued(pendingBytes: (1 << 20) + 1)) == [.cancelDrainDeadline, .close(.pendingBytes, pendingBytes: (1 << 20) + 1)])
        #expect(backlog.handle(.writabilityChanged(isWritable: true)).isEmpty)
    }

    @Test func boundsAreMadeConsistent() {
        let bounds = OutboundBounds(highWaterMarkBytes: 100, lowWaterMarkBytes: 500, pendingBytesMax: 10, drainTimeout: .seconds(-1))
        #expect(bounds.lowWaterMarkBytes == 99 && bounds.pendingBytesMax == 100 && bounds.drainTimeout == .zero)
        let defaults = OutboundBounds()
        #expect(defaults.highWaterMarkBytes == 1 << 20 && defaults.lowWaterMarkBytes == 256 << 10)
        #expect(defaults.pendingBytesMax == 16 << 20 && defaults.drainTimeout == .seconds(30))
    }
}
