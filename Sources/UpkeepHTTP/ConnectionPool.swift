/// Idle keep-alive connections per origin: at most `connectionsPerOriginMax` open to one
/// origin, callers beyond that wait (at most `waitersMax` of them); a connection idle longer
/// than `idleSecondsMax` is closed instead of reused.
actor ConnectionPool {
    typealias Connect = @Sendable (Origin) async throws -> HTTPConnection

    private struct Idle {
        let connection: HTTPConnection
        let sinceSeconds: Double
    }

    let connectionsPerOriginMax: Int
    let idleSecondsMax: Double
    static let waitersMax = 1_024
    private let connect: Connect
    private let now: @Sendable () -> Double
    private var idle: [Origin: [Idle]] = [:]
    private var open: [Origin: Int] = [:]
    private var waiters: [Origin: [CheckedContinuation<Void, Never>]] = [:]
    private var isShutDown = false

    init(connectionsPerOriginMax: Int, idleSecondsMax: Double, now: @escaping @Sendable () -> Double, connect: @escaping Connect) {
        self.connectionsPerOriginMax = max(1, connectionsPerOriginMax)
        self.idleSecondsMax = idleSecondsMax
        self.now = now
        self.connect = connect
    }

    /// A connection to `origin`: an idle one when available (`reused`), else a new one.
    func acquire(_ origin: Origin) async throws -> (connection: HTTPConnection, reused: Bool) {
        while true {
            guard !isShutDown else { throw HTTPClientError.shutDown }
            while let candidate = idle[origin]?.popLast() {
                if candidate.connection.isActive, now() - candidate.sinceSeconds <= idleSecondsMax {
                    return (candidate.connection, true)
                }
                open[origin, default: 1] -= 1
                Task { await candidate.connection.close() }
            }
            if open[origin, default: 0] < connectionsPerOriginMax {
                open[origin, default: 0] += 1
                do {
                    return (try await connect(origin), false)
                } catch {
                    open[origin, default: 1] -= 1
                    wakeOne(origin)
                    throw error
                }
            }
            guard waiters.values.reduce(0, { $0 + $1.count }) < Self.waitersMax else {
                throw HTTPClientError.connectFailed(origin: origin.description, reason: "more than \(Self.waitersMax) requests waiting for a connection")
            }
            await withCheckedContinuation { waiters[origin, default: []].append($0) }
        }
    }

    /// Returns a connection after a complete exchange; it is kept only if still open and reusable.
    func release(_ connection: HTTPConnection, reusable: Bool) {
        let origin = connection.origin
        if isShutDown || !reusable || !connection.isActive {
            open[origin, default: 1] -= 1
            Task { await connection.close() }
        } else {
            idle[origin, default: []].append(Idle(connection: connection, sinceSeconds: now()))
        }
        wakeOne(origin)
    }

    /// Closes a connection after a failed exchange.
    func discard(_ connection: HTTPConnection) async {
        open[connection.origin, default: 1] -= 1
        await connection.close()
        wakeOne(connection.origin)
    }

    private func wakeOne(_ origin: Origin) {
        if var queue = waiters[origin], !queue.isEmpty {
            queue.removeFirst().resume()
            waiters[origin] = queue
        }
    }

    func shutdown() async {
        isShutDown = true
        let connections = idle.values.flatMap { $0 }
        idle = [:]
        for entry in connections { await entry.connection.close() }
        for queue in waiters.values { for waiter in queue { waiter.resume() } }
        waiters = [:]
    }
}
