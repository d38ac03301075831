import NIOCore
import Synchronization

/// The open connections of one server: admission against the limit, and the handles graceful
/// shutdown needs.
final class ConnectionRegistry: Sendable {
    struct Connection: Sendable {
        let channel: any Channel
        let handler: NIOLoopBound<ServerConnectionHandler>
    }

    private struct State {
        var admitted = 0
        /// Connections being answered `busy`/`shuttingDown` (bounded too: beyond
        /// `refusalsMax` they are closed without an answer).
        var refusing = 0
        var connections: [ObjectIdentifier: Connection] = [:]
        var shuttingDown = false
    }

    enum Admission: Equatable {
        case admitted
        /// Answer with this error, then close.
        case refused(ErrorResponse)
        /// Too many refusals in progress: close without a word.
        case dropped
    }

    /// Refusals in progress at most (each may wait for a TLS handshake).
    static let refusalsMax = 64

    let connectionsMax: Int
    private let state = Mutex(State())

    init(connectionsMax: Int) {
        self.connectionsMax = connectionsMax
    }

    var count: Int { state.withLock { $0.admitted } }

    /// Counts `channel` in (it is counted out when it closes), or says how to refuse it.
    func admit(_ channel: any Channel) -> Admission {
        let admission = state.withLock { state -> Admission in
            let refusal: ErrorResponse
            if state.shuttingDown {
                refusal = ErrorResponse(.shuttingDown, "the agent is shutting down; connect again later")
            } else if state.admitted >= connectionsMax {
                refusal = ErrorResponse(.busy, "the agent has \(state.admitted) connections, its maximum; retry later")
            } else {
                state.admitted += 1
                return .admitted
            }
            guard state.refusing < Self.refusalsMax else { return .dropped }
            state.refusing += 1
            return .refused(refusal)
        }
        let key = ObjectIdentifier(channel)
        switch admission {
        case .admitted:
            channel.closeFuture.whenComplete { _ in
                self.state.withLock { state in
                    state.admitted -= 1
                    state.connections[key] = nil
                }
            }
        case .refused:
            channel.closeFuture.whenComplete { _ in self.state.withLock { $0.refusing -= 1 } }
        case .dropped:
            break
        }
        return admission
    }

    enum Registration: Equatable {
        case registered
        /// Shutdown began after the channel was admitted: it was not among the connections
        /// shutdown tells to go away.
        case shuttingDown
    }

    /// Records the handler of an admitted channel. Called from the channel's initializer, so on
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
