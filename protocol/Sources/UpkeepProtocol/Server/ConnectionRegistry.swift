import NIOCore
import Synchronization
import UpkeepCore
import UpkeepHTTP

/// The open connections of one server: the TLS handshake budget, admission of authenticated
/// connections against the limit, and the handles graceful shutdown needs.
///
/// A connection is first in its handshake (`HandshakeBudget`: a small budget of its own, where
/// a new connection closes the oldest), then, once the peer is authenticated, admitted against
/// `connectionsMax` or refused `busy`. So silent or slow unauthenticated connections can never
/// take the places of controllers.
final class ConnectionRegistry: Sendable {
    struct Connection: Sendable {
        let channel: any Channel
        let handler: NIOLoopBound<ServerConnectionHandler>
    }

    private enum Phase {
        case handshaking
        /// Its handshake failed or it was displaced from the budget: counted, closing.
        case handshakeEnded
        case admitted
        case refusing
    }

    private struct State {
        var handshakes: HandshakeBudget<ObjectIdentifier>
        var phases: [ObjectIdentifier: Phase] = [:]
        var channels: [ObjectIdentifier: any Channel] = [:]
        var admitted = 0
        /// Connections being answered `busy`/`shuttingDown` (bounded too: beyond
        /// `refusalsMax` they are closed without an answer).
        var refusing = 0
        var connections: [ObjectIdentifier: Connection] = [:]
        var shuttingDown = false
    }

    enum Admission: Equatable {
        /// In its TLS handshake: `secured` decides once it completes.
        case handshaking
        case admitted
        /// Answer with this error, then close.
        case refused(ErrorResponse)
        /// Too many refusals in progress: close without a word.
        case dropped
    }

    /// Refusals in progress at most (each may wait for a TLS handshake).
    static let refusalsMax = 64

    let configuration: ServerConfiguration
    let limits: LimitLog<ProtocolServerLimit>
    /// How each connection's TLS handshake ended, once per connection (`HandshakeOutcome`).
    let handshakes: LimitTally<HandshakeOutcome>
    private let state: Mutex<State>

    init(configuration: ServerConfiguration, limits: LimitLog<ProtocolServerLimit>, handshakes: LimitTally<HandshakeOutcome>) {
        self.configuration = configuration
        self.limits = limits
        self.handshakes = handshakes
        state = Mutex(State(handshakes: HandshakeBudget(handshakesMax: configuration.handshakesMax,
                                                        handshakesPerSourceMax: configuration.handshakesPerSourceMax)))
    }

    /// Authenticated connections open now.
    var count: Int { state.withLock { $0.admitted } }
    /// Connections in their TLS handshake now.
    var handshakeCount: Int { state.withLock { $0.handshakes.count } }
    /// TLS handshakes completed since the server started (what a controller's reconnects cost).
    var handshakesCompleted: Int { handshakes.count(.completed) }

    /// Counts a new `channel` in (it is counted out when it closes). One that `needsHandshake`
    /// enters the handshake budget, closing the connection it displaces; a plaintext one is
    /// admitted or refused at once.
    func accept(_ channel: any Channel, needsHandshake: Bool) -> Admission {
        let key = ObjectIdentifier(channel)
        let source = Self.source(of: channel)
        let (admission, displaced) = state.withLock { state -> (Admission, [(HandshakeBudget<ObjectIdentifier>.Close, (any Channel)?)]) in
            if !state.shuttingDown && needsHandshake {
                let closes = state.handshakes.begin(key, source: source)
                state.phases[key] = .handshaking
                state.channels[key] = channel
                for close in closes { state.phases[close.key] = .handshakeEnded }
                return (.handshaking, closes.map { ($0, state.channels[$0.key]) })
            }
            return (Self.admit(key, &state, connectionsMax: configuration.connectionsMax), [])
        }
        for (close, displacedChannel) in displaced {
            handshakes.add(.displaced)
            limits.record(close.reason == .perSource ? .handshakesPerSource : .handshakes,
                          close.detail(handshakesMax: configuration.handshakesMax, handshakesPerSourceMax: configuration.handshakesPerSourceMax))
            displacedChannel?.close(promise: nil)
        }
        if case .refused(let refusal) = admission, refusal.code == .busy { recordBusy(source) }
        if admission == .dropped { limits.record(.refusals, "closed a connection from \(source) without an answer: \(Self.refusalsMax) refusals in progress") }
        watch(channel, admission)
        return admission
    }

    /// `channel`'s TLS handshake completed: admitted against `connectionsMax`, or refused.
    func secured(_ channel: any Channel) -> Admission {
        let key = ObjectIdentifier(channel)
        let (admission, completed) = state.withLock { state in
            state.handshakes.end(key)
            let completed = state.phases[key] == .handshaking
            return (Self.admit(key, &state, connectionsMax: configuration.connectionsMax), completed)
        }
        if completed { handshakes.add(.completed) }
        let source = Self.source(of: channel)
        if case .refused(let refusal) = admission, refusal.code == .busy { recordBusy(source) }
        if admission == .dropped { limits.record(.refusals, "closed a connection from \(source) without an answer: \(Self.refusalsMax) refusals in progress") }
        return admission
    }

    /// `channel`'s TLS session failed: if still in its handshake, the handshake failed and it
    /// leaves the budget now (its close follows); after the handshake it changes nothing.
    func handshakeFailed(_ channel: any Channel) {
        let key = ObjectIdentifier(channel)
        let failed = state.withLock { state in
            guard state.phases[key] == .handshaking else { return false }
            state.handshakes.end(key)
            state.phases[key] = .handshakeEnded
            return true
        }
        if failed { handshakes.add(.failed) }
    }

    private func recordBusy(_ source: String) {
        limits.record(.connections, "answered busy to an authenticated connection from \(source): "
                      + "\(configuration.connectionsMax) connections open (connectionsMax)")
    }

    private static func admit(_ key: ObjectIdentifier, _ state: inout State, connectionsMax: Int) -> Admission {
        let refusal: ErrorResponse
        if state.shuttingDown {
            refusal = ErrorResponse(.shuttingDown, "the agent is shutting down; connect again later")
        } else if state.admitted >= connectionsMax {
            refusal = ErrorResponse(.busy, "the agent is at its connection limit (\(state.admitted) authenticated connections, connectionsMax); retry later")
        } else {
            state.admitted += 1
            state.phases[key] = .admitted
            return .admitted
        }
        guard state.refusing < Self.refusalsMax else {
            state.phases[key] = nil
            return .dropped
        }
        state.refusing += 1
        state.phases[key] = .refusing
        return .refused(refusal)
    }

    /// Counts `channel` out when it closes, whatever phase it is in then.
    private func watch(_ channel: any Channel, _ admission: Admission) {
        guard admission != .dropped else { return }
        let key = ObjectIdentifier(channel)
        channel.closeFuture.whenComplete { _ in
            let closedInHandshake = self.state.withLock { state in
                let phase = state.phases.removeValue(forKey: key)
                switch phase {
                case .handshaking: state.handshakes.end(key)
                case .admitted: state.admitted -= 1
                case .refusing: state.refusing -= 1
                case .handshakeEnded, nil: break
                }
                state.channels[key] = nil
                state.connections[key] = nil
                return phase == .handshaking
            }
            // Closed before its handshake ended without a TLS error (the server shut down).
            if closedInHandshake { self.handshakes.add(.failed) }
        }
    }

    /// The peer's address without its port: what the per-source bound counts.
    static func source(of channel: any Channel) -> String {
        channel.remoteAddress?.ipAddress ?? "an unknown address"
    }

    enum Registration: Equatable {
        case registered
        /// Shutdown began after the channel was accepted: it was not among the connections
        /// shutdown tells to go away.
        case shuttingDown
    }

    /// Records the handler of an accepted channel. Called from the channel's initializer, so on
    /// its event loop before its close callback can run.
    func register(_ channel: any Channel, handler: NIOLoopBound<ServerConnectionHandler>) -> Registration {
        let connection = Connection(channel: channel, handler: handler)
        return state.withLock { state in
            state.connections[ObjectIdentifier(channel)] = connection
            return state.shuttingDown ? .shuttingDown : .registered
        }
    }

    /// Refuses new connections from now on and returns the open ones.
    func beginShutdown() -> [Connection] {
        state.withLock { state in
            state.shuttingDown = true
            return Array(state.connections.values)
        }
    }
}
