/// The connections of one server that are still in their TLS handshake: who is unauthenticated,
/// and which of them to close so that they never crowd out the authenticated ones. The agent's
/// protocol server (PROTOCOL.md 5.2) and the HTTP server with TLS (the enrollment listener) keep
/// one each.
///
/// A connection enters at accept and leaves when its handshake completes, fails or the
/// connection closes. At most `handshakesMax` are in it at once and at most
/// `handshakesPerSourceMax` from one source address: a new connection over either bound is
/// admitted and the oldest one of the same source (per-source bound) or of all (overall bound)
/// is closed instead. A peer that holds many silent connections open thus only ever pushes its
/// own out, and a controller's new connection always starts its handshake.
///
/// A plain value: `begin` and `end` return what to close and never touch a channel or a clock,
/// so the rule is tested by feeding keys. Memory stays within `handshakesMax` entries.
public struct HandshakeBudget<Key: Hashable> {
    /// Why a connection is to be closed.
    public enum Eviction: Equatable, Sendable {
        /// Its source had `handshakesPerSourceMax` handshakes in progress.
        case perSource
        /// The server had `handshakesMax` handshakes in progress.
        case overall
    }

    public struct Close: Equatable {
        public let key: Key
        public let source: String
        public let reason: Eviction

        public init(key: Key, source: String, reason: Eviction) {
            self.key = key
            self.source = source
            self.reason = reason
        }

        /// What to log for it (the server adds its bound's name), with the bounds that applied.
        public func detail(handshakesMax: Int, handshakesPerSourceMax: Int) -> String {
            switch reason {
            case .perSource:
                "closed the oldest connection from \(source) still in its TLS handshake: "
                    + "\(handshakesPerSourceMax) from that address at once (handshakesPerSourceMax)"
            case .overall:
                "closed the oldest connection (from \(source)) still in its TLS handshake: \(handshakesMax) at once (handshakesMax)"
            }
        }
    }

    struct Entry {
        let key: Key
        let source: String
    }

    public let handshakesMax: Int
    public let handshakesPerSourceMax: Int
    /// Oldest first; at most `handshakesMax`.
    private var entries: [Entry] = []
    private var perSource: [String: Int] = [:]

    public init(handshakesMax: Int, handshakesPerSourceMax: Int) {
        self.handshakesMax = max(1, handshakesMax)
        self.handshakesPerSourceMax = max(1, min(handshakesPerSourceMax, self.handshakesMax))
    }

    /// Connections in their handshake now.
    public var count: Int { entries.count }

    /// Connections from `source` in their handshake now.
    public func count(from source: String) -> Int { perSource[source] ?? 0 }

    public func contains(_ key: Key) -> Bool { entries.contains { $0.key == key } }

    /// `key` from `source` begins its handshake; returns the connections to close to make room
    /// (at most one), oldest first.
    public mutating func begin(_ key: Key, source: String) -> [Close] {
        var closes: [Close] = []
        if count(from: source) >= handshakesPerSourceMax, let oldest = entries.firstIndex(where: { $0.source == source }) {
            closes.append(remove(at: oldest, reason: .perSource))
        } else if entries.count >= handshakesMax {
            closes.append(remove(at: 0, reason: .overall))
        }
        entries.append(Entry(key: key, source: source))
        perSource[source, default: 0] += 1
        return closes
    }

    /// `key`'s handshake is over (completed, failed, or its connection closed); a key not in
    /// the budget (already evicted) is ignored. Returns whether it was in.
    @discardableResult
    public mutating func end(_ key: Key) -> Bool {
        guard let index = entries.firstIndex(where: { $0.key == key }) else { return false }
        _ = remove(at: index, reason: .overall)
        return true
    }

    private mutating func remove(at index: Int, reason: Eviction) -> Close {
        let entry = entries.remove(at: index)
        let left = (perSource[entry.source] ?? 1) - 1
        perSource[entry.source] = left > 0 ? left : nil
        return Close(key: entry.key, source: entry.source, reason: reason)
    }
}

extension HandshakeBudget: Sendable where Key: Sendable {}
extension HandshakeBudget.Close: Sendable where Key: Sendable {}
extension HandshakeBudget.Entry: Sendable where Key: Sendable {}
