import NIOCore
import UpkeepHTTP
import NIOPosix

/// A client for one agent that survives lost connections: it connects when needed, and when a
/// call fails because the connection was lost or refused, it reconnects with jittered
/// exponential backoff and sends the call again, within the call's deadline and a bounded
/// number of attempts.
///
/// Dials are backed off too, across calls: after a dial failed, the next one (whoever asks for
/// it) waits the backoff's delay for the failures in a row so far (at most `maximumDelay`), so a
/// fleet of callers never hammers an agent that is down; each such wait is counted
/// (`ProtocolClientLimit.reconnectBackoff`).
///
/// With `keepAliveInterval`, an open connection sends a Ping that often, so an agent never
/// closes it as idle (PROTOCOL.md 11: pings count as frames) while its owner keeps it.
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
    private let keepAliveInterval: Duration?
    private var current: ProtocolClient?
    private var keepAlive: Task<Void, Never>?
    private var connecting: Task<ProtocolClient, any Error>?
    /// Dials that failed in a row, and when the next may start.
    private var failedDials = 0
    private var nextDialAt: ContinuousClock.Instant?
    private var random = SystemRandomNumberGenerator()

    public init(host: String, port: Int, security: ConnectionSecurity = .plaintext,
                configuration: ClientConfiguration = ClientConfiguration(), backoff: Backoff = Backoff(), keepAliveInterval: Duration? = nil,
                eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        precondition(keepAliveInterval.map { $0 > .zero } ?? true, "a keep-alive interval is positive")
        self.keepAliveInterval = keepAliveInterval
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

    /// Whether a usable connection is open now (a call would not dial).
    public var isConnected: Bool { current?.isUsable ?? false }

    /// The connected client, connecting first if there is none (one connect at a time; after a
    /// failed dial, the next waits its backoff first).
    public func connection() async throws -> ProtocolClient {
        if let current, current.isUsable { return current }
        current = nil
        if let connecting { return try await connecting.value }
        let (host, port, security, configuration, group) = (host, port, security, configuration, eventLoopGroup)
        let wait = nextDialAt.map { $0 - ContinuousClock.now }.flatMap { $0 > .zero ? $0 : nil }
        if let wait {
            ProtocolClient.limits.record(.reconnectBackoff, "waiting \(Int((wait / .milliseconds(1)).rounded())) ms before dialling "
                                         + "\(host):\(port) again: \(failedDials) dial\(failedDials == 1 ? "" : "s") in a row failed")
        }
        let task = Task {
            if let wait { try await Task.sleep(for: wait) }
            return try await ProtocolClient.connect(host: host, port: port, security: security, configuration: configuration,
                                                    eventLoopGroup: group)
        }
        connecting = task
        defer { connecting = nil }
        do {
            let client = try await task.value
            (failedDials, nextDialAt) = (0, nil)
            current = client
            keepAlive?.cancel()
            keepAlive = keepAliveInterval.map { interval in Task { await Self.keepAlive(client, every: interval) } }
            return client
        } catch {
            failedDials += 1
            nextDialAt = ContinuousClock.now + backoff.delay(afterAttempt: failedDials, using: &random)
            throw error
        }
    }

    /// Closes the connection open now, if any, and dials a new one: its Hello is current.
    public func reconnect() async throws -> ProtocolClient {
        if let connecting { _ = try? await connecting.value }
        await close()
        return try await connection()
    }

    /// Closes the current connection, if any.
    public func close() async {
        let client = current
        current = nil
        keepAlive?.cancel()
        keepAlive = nil
        await client?.close()
    }

    /// Pings `client` every `interval` (each Ping bounded by it) until it is unusable or the task
    /// is cancelled (the connection closed or replaced).
    private static func keepAlive(_ client: ProtocolClient, every interval: Duration) async {
        while true {
            do { try await Task.sleep(for: interval) } catch { return }
            guard client.isUsable else { return }
            _ = try? await client.ping(deadline: .now + interval)
        }
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
