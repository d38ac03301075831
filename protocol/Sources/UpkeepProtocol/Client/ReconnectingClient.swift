import NIOCore
import UpkeepHTTP
import NIOPosix

/// A client for one agent that survives lost connections: it connects when needed, and when a
/// call fails because the connection was lost or refused, it reconnects with jittered
/// exponential backoff and sends the call again, within the call's deadline and a bounded
/// number of attempts.
///
/// Sending again is safe: either the agent certainly did not process the call (GoAway,
/// `busy`, connection refused), or the method is read-only, or it is mutating and carries an
/// operation id, which the agent answers from its journal instead of acting twice. Uploads are
/// produced again from the start (see `ChunkSource`).
public actor ReconnectingClient {
    public let host: String
    public let port: Int
    private let security: ConnectionSecurity
    private let configuration: ClientConfiguration
    private let backoff: Backoff
    private let eventLoopGroup: any EventLoopGroup
    private var current: ProtocolClient?
    private var connecting: Task<ProtocolClient, any Error>?
    private var random = SystemRandomNumberGenerator()

    public init(host: String, port: Int, security: ConnectionSecurity = .plaintext,
                configuration: ClientConfiguration = ClientConfiguration(), backoff: Backoff = Backoff(),
                eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.host = host
        self.port = port
        self.security = security
        self.configuration = configuration
        self.backoff = backoff
        self.eventLoopGroup = eventLoopGroup
    }

    /// Sends `message` (again on a new connection when needed) and returns its result.
    public func call<M: RequestMessage>(_ message: M, upload: ChunkSource? = nil,
                                        deadline: ContinuousClock.Instant) async throws -> M.Result {
        var attempt = 1
        while true {
            do {
                let client = try await connection()
                return try await client.call(message, upload: upload, deadline: deadline)
            } catch let error as ProtocolError where Self.worthRetrying(error) {
                drop(after: error)
                let delay = backoff.delay(afterAttempt: attempt, using: &random)
                guard attempt < backoff.attemptsMax, ContinuousClock.now + delay < deadline else {
                    ProtocolClient.limits.record(.attempts, "gave up a call to \(host):\(port) after \(attempt) attempts "
                                                 + "(attemptsMax \(backoff.attemptsMax), or its deadline): \(error)")
                    throw error
                }
                try await Task.sleep(for: delay)
                attempt += 1
            }
        }
    }

    /// The connected client, connecting first if there is none (one connect at a time).
    public func connection() async throws -> ProtocolClient {
        if let current, current.isUsable { return current }
        current = nil
        if let connecting { return try await connecting.value }
        let (host, port, security, configuration, group) = (host, port, security, configuration, eventLoopGroup)
        let task = Task {
            try await ProtocolClient.connect(host: host, port: port, security: security, configuration: configuration,
                                             eventLoopGroup: group)
        }
        connecting = task
        defer { connecting = nil }
        let client = try await task.value
        current = client
        return client
    }

    /// Closes the current connection, if any.
    public func close() async {
        let client = current
        current = nil
        await client?.close()
    }

    private func drop(after error: ProtocolError) {
        if let current, !current.isUsable { self.current = nil }
    }

    /// Connection failures and refusals that say nothing about the call itself.
    static func worthRetrying(_ error: ProtocolError) -> Bool {
        switch error {
        case .connectFailed, .connectionClosed, .notProcessed: true
        case .remote(let response): response.code == .busy || response.code == .shuttingDown
        case .tls, .deadlineExceeded, .digestMismatch, .protocolViolation, .uploadFailed: false
        }
    }
}
