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
        var connections: [ObjectIdentifier: Connection] = [:]
        var shuttingDown = false
    }

    let connectionsMax: Int
    private let state = Mutex(State())

    init(connectionsMax: Int) {
        self.connectionsMax = connectionsMax
    }

    var isShuttingDown: Bool { state.withLock { $0.shuttingDown } }
    var count: Int { state.withLock { $0.admitted } }

    /// Why `channel` cannot be served, or nil after counting it in (it is counted out when it
    /// closes).
    func admit(_ channel: any Channel) -> ErrorResponse? {
        let refusal = state.withLock { state -> ErrorResponse? in
            if state.shuttingDown {
                return ErrorResponse(.shuttingDown, "the agent is shutting down; connect again later")
            }
            guard state.admitted < connectionsMax else {
                return ErrorResponse(.busy, "the agent has \(state.admitted) connections, its maximum; retry later")
            }
            state.admitted += 1
            return nil
        }
        if refusal == nil {
            let key = ObjectIdentifier(channel)
            channel.closeFuture.whenComplete { _ in
                self.state.withLock { state in
                    state.admitted -= 1
                    state.connections[key] = nil
                }
            }
        }
        return refusal
    }

    /// Records the handler of an admitted channel. Called from the channel's initializer, so on
    /// its event loop before its close callback can run.
    func register(_ channel: any Channel, handler: NIOLoopBound<ServerConnectionHandler>) {
        let connection = Connection(channel: channel, handler: handler)
        state.withLock { $0.connections[ObjectIdentifier(channel)] = connection }
    }

    /// Refuses new connections from now on and returns the open ones.
    func beginShutdown() -> [Connection] {
        state.withLock { state in
            state.shuttingDown = true
            return Array(state.connections.values)
        }
    }
}
