/// Idle keep-alive connections per origin: at most `connectionsPerOriginMax` open to one
/// origin, callers beyond that wait (at most `waitingMax` of them in all, each at most until its
/// deadline); a connection idle longer than `idleSecondsMax` is closed instead of reused.
actor ConnectionPool {
    typealias Connect = @Sendable (Origin, _ timeoutSeconds: Double) async throws -> HTTPConnection

    private struct Idle {
        let connection: HTTPConnection
        let sinceSeconds: Double
    }

    private struct Waiter {
        let id: Int
        let continuation: CheckedContinuation<Bool, Never>
    }

    let connectionsPerOriginMax: Int
    let idleSecondsMax: Double
    let waitingMax: Int
    private let connect: Connect
    private let now: @Sendable () -> Double
    private var idle: [Origin: [Idle]] = [:]
    private var open: [Origin: Int] = [:]
    private var waiters: [Origin: [Waiter]] = [:]
    private var waiting = 0
    private var nextWaiterID = 0
    private var isShutDown = false

    init(connectionsPerOriginMax: Int, idleSecondsMax: Double, waitingMax: Int, now: @escaping @Sendable () -> Double,
         connect: @escaping Connect)
    {
        self.connectionsPerOriginMax = max(1, connectionsPerOriginMax)
        self.idleSecondsMax = idleSecondsMax
        self.waitingMax = max(0, waitingMax)
        self.now = now
        self.connect = connect
    }

    /// A connection to `origin`: an idle one when available (`reused`), else a new one made
    /// within `connectTimeoutSeconds`. The request's `deadline` (on the pool's clock), when it
    /// comes sooner, ends the wait for a free slot or the connect with
    /// `HTTPClientError.responseTimeout(url:seconds:)` for `budgetSeconds`.
    func acquire(_ origin: Origin, connectTimeoutSeconds: Double, deadline: Double?, url: String,
                 budgetSeconds: Double?) async throws -> (connection: HTTPConnection, reused: Bool)
    {
        let outOfTime = HTTPClientError.responseTimeout(url: url, seconds: budgetSeconds ?? 0)
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
                let left = deadline.map { $0 - now() } ?? .infinity
                guard left > 0 else { throw outOfTime }
                open[origin, default: 0] += 1
                do {
                    return (try await connect(origin, min(connectTimeoutSeconds, left)), false)
                } catch {
                    open[origin, default: 1] -= 1
                    wakeOne(origin)
                    if case .connectTimeout = error as? HTTPClientError, left < connectTimeoutSeconds { throw outOfTime }
                    throw error
                }
            }
            guard waiting < waitingMax else { throw HTTPClientError.tooManyWaiting(origin: origin.description, max: waitingMax) }
            let id = nextWaiterID
            nextWaiterID += 1
            waiting += 1
            var timer: Task<Void, Never>?
            if let deadline {
                let seconds = max(0, deadline - now())
                timer = Task { [weak self] in
                    try? await Task.sleep(nanoseconds: UInt64(seconds * 1e9))
                    await self?.expire(id, origin: origin)
                }
            }
            let woken = await withCheckedContinuation { waiters[origin, default: []].append(Waiter(id: id, continuation: $0)) }
            timer?.cancel()
            guard woken else { throw outOfTime }
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
        guard var queue = waiters[origin], !queue.isEmpty else { return }
        let waiter = queue.removeFirst()
        waiters[origin] = queue
        waiting -= 1
        waiter.continuation.resume(returning: true)
    }

    /// A waiter's deadline passed before a connection was free.
    private func expire(_ id: Int, origin: Origin) {
        guard var queue = waiters[origin], let index = queue.firstIndex(where: { $0.id == id }) else { return }
        let waiter = queue.remove(at: index)
        waiters[origin] = queue
        waiting -= 1
        waiter.continuation.resume(returning: false)
    }

    func shutdown() async {
        isShutDown = true
        let connections = idle.values.flatMap { $0 }
        idle = [:]
        for entry in connections { await entry.connection.close() }
        for queue in waiters.values { for waiter in queue { waiter.continuation.resume(returning: true) } }
        waiters = [:]
        waiting = 0
    }
}
