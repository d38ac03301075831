import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import UpkeepCore
import UpkeepPOSIX
import UpkeepTLS

/// Time, sleep and randomness as the client sees them; tests replace them to make retries
/// deterministic without changing anything on the wire.
public struct HTTPClock: Sendable {
    /// Wall-clock seconds since the epoch (rate-limit resets are given in them).
    public var now: @Sendable () -> Double
    public var sleep: @Sendable (Double) async throws -> Void
    /// Uniform in [0, 1): the backoff jitter.
    public var random: @Sendable () -> Double

    public init(now: @escaping @Sendable () -> Double, sleep: @escaping @Sendable (Double) async throws -> Void,
                random: @escaping @Sendable () -> Double)
    {
        self.now = now
        self.sleep = sleep
        self.random = random
    }

    public static let system = HTTPClock(
        now: { Double(Instant.wallClockNow().milliseconds) / 1000 },
        sleep: { seconds in try await Task.sleep(nanoseconds: UInt64(max(0, seconds) * 1e9)) },
        random: { Double.random(in: 0..<1) })
}

/// Upkeep's one HTTP/1.1 client: GitHub's API and the k3s channel server, release mirrors and
/// downloads, the Kubernetes API (with a client certificate), the agent's health probes, and
/// plain-http loopback services. docs/http.md describes it beside the server.
///
/// - TLS modes: public trust (the system store or given CAs) for https, the certificate
///   verified for the URL's host (or `tlsServerName`); the same with a client certificate
///   (mutual TLS, the Kubernetes API); or no TLS context, and then only http URLs.
/// - Keep-alive connections, pooled per origin and bounded; callers beyond the bound wait in a
///   bounded queue. A request with `Connection: close` gets a connection of its own.
/// - Every exchange is bounded: connect (with the TLS handshake), response time, body size; and,
///   when the request sets `timeoutSeconds`, the whole request.
/// - Retries and rate limits follow `RetryPolicy` (bounded attempts, jittered backoff, waits
///   only as long as allowed; `RetryPolicy.never` for callers with loops of their own).
/// - Redirects are followed only when the request asks for it; `Authorization` never
///   follows a redirect to another origin, and https is never downgraded.
/// - With an `ETagCache`, GETs that ask for it are conditional and 304s answer from disk.
/// - Each bound reached is counted in `limits` and logged, rate-limited.
///
/// It never logs headers or bodies (they may carry tokens); only method, URL, status and timing.
/// It imports no Foundation: the agent links it.
public final class HTTPClient: Sendable {
    public struct Configuration: Sendable {
        /// TCP connect and TLS handshake.
        public var connectTimeoutSeconds: Double
        /// From the request written to the last byte of the answer, per attempt.
        public var responseTimeoutSeconds: Double
        /// The answer's body; more closes the connection and fails the request.
        public var responseBytesMax: Int
        public var connectionsPerOriginMax: Int
        /// A pooled connection unused for longer is closed rather than reused.
        public var idleSecondsMax: Double
        /// Requests waiting for a free connection, over all origins; one more fails at once.
        public var waitingMax: Int
        public var retry: RetryPolicy
        public var userAgent: String

        public init(connectTimeoutSeconds: Double = 10, responseTimeoutSeconds: Double = 30, responseBytesMax: Int = 32 << 20,
                    connectionsPerOriginMax: Int = 4, idleSecondsMax: Double = 30, waitingMax: Int = 1_024,
                    retry: RetryPolicy = RetryPolicy(), userAgent: String = "upkeep")
        {
            self.connectTimeoutSeconds = connectTimeoutSeconds
            self.responseTimeoutSeconds = responseTimeoutSeconds
            self.responseBytesMax = responseBytesMax
            self.connectionsPerOriginMax = connectionsPerOriginMax
            self.idleSecondsMax = idleSecondsMax
            self.waitingMax = waitingMax
            self.retry = retry
            self.userAgent = userAgent
        }
    }

    public let configuration: Configuration
    public let cache: ETagCache?
    /// How often each bound was reached by this client; the owner may export it as a metric.
    public let limits: LimitLog<ClientLimit>
    /// How often each bound was reached by every client of the process (the release, Kubernetes,
    /// notification and probe clients alike): what `upkeep serve` and the agent export.
    public static let processLimits = LimitTally<ClientLimit>()
    private let clock: HTTPClock
    private let logger: Logger
    private let pool: ConnectionPool
    private let group: any EventLoopGroup
    private let connect: @Sendable (Origin, Double) async throws -> HTTPConnection

    /// A client trusting `trust` for https (the system store by default).
    public convenience init(configuration: Configuration = Configuration(), trust: TrustRoots = .system, cache: ETagCache? = nil,
                            group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, clock: HTTPClock = .system,
                            logger: Logger = Logger(label: "upkeep.http")) throws
    {
        try self.init(configuration: configuration, tls: TLSContext.publicClient(trust: trust), cache: cache, group: group,
                      clock: clock, logger: logger)
    }

    /// A client using `tls` for https (a context with a client certificate, for instance), or
    /// none: then https URLs fail with `HTTPClientError.tls`. `tlsServerName` replaces the URL's
    /// host for certificate verification and SNI (a kubeconfig's `tls-server-name`).
    /// `tlsPeer` replaces the host check with another demand on the server's certificate: a
    /// joining node asks the join server for a controller identity under the pinned cluster CA.
    public init(configuration: Configuration = Configuration(), tls: TLSContext?, tlsServerName: String? = nil, tlsPeer: PeerExpectation? = nil,
                cache: ETagCache? = nil,
                group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, clock: HTTPClock = .system,
                logger: Logger = Logger(label: "upkeep.http"))
    {
        self.configuration = configuration
        self.cache = cache
        self.clock = clock
        self.logger = logger
        self.group = group
        limits = LimitLog(logger: logger, counted: { HTTPClient.processLimits.add($0) })
        let connect: @Sendable (Origin, Double) async throws -> HTTPConnection = { origin, timeoutSeconds in
            try await HTTPConnection.connect(origin: origin, tls: tls, tlsServerName: tlsServerName, tlsPeer: tlsPeer, group: group,
                                             timeoutSeconds: timeoutSeconds)
        }
        self.connect = connect
        pool = ConnectionPool(connectionsPerOriginMax: configuration.connectionsPerOriginMax, idleSecondsMax: configuration.idleSecondsMax,
                              waitingMax: configuration.waitingMax, now: clock.now, connect: connect)
    }

    /// Closes idle connections; later requests throw `HTTPClientError.shutDown`.
    public func shutdown() async {
        await pool.shutdown()
    }

    /// A GET of `url`.
    public func get(_ url: HTTPURL, headers: HTTPHeaders = [:], redirects: RedirectPolicy = .none,
                    cache: CachePolicy = .none) async throws -> HTTPResponse
    {
        try await send(HTTPRequest(url: url, headers: headers, redirects: redirects, cache: cache))
    }

    /// Sends `request` with retries, rate-limit waits, redirects and caching as it asks.
    /// Throws `HTTPClientError` (or `CancellationError`); any HTTP status is a response.
    public func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        do {
            return try await follow(request, deadline: request.timeoutSeconds.map { clock.now() + $0 })
        } catch let error as HTTPClientError {
            if let limit = error.limit { limits.record(limit, "\(error)") }
            throw error
        }
    }

    /// Sends `request` (a GET) on a connection of its own, once (no retries, redirects or
    /// cache), and hands its answer's body over as it arrives: a Kubernetes watch. The head must
    /// arrive within `responseTimeoutSeconds`; the whole answer is cut at `request.timeoutSeconds`
    /// (the configured response timeout without one). At most `piecesMax` pieces wait for the
    /// reader: one more cuts the stream with `HTTPClientError.streamBacklog`, counted. Cancelling
    /// the reading task, or `HTTPStreamedResponse.close`, closes the connection.
    public func stream(_ request: HTTPRequest, piecesMax: Int = 1_024) async throws -> HTTPStreamedResponse {
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: request.url.hostHeader)
        headers.add(name: "User-Agent", value: configuration.userAgent)
        headers.add(name: "Accept", value: request.headers.first(name: "accept") ?? "application/json")
        for (name, value) in request.headers where !["host", "accept", "content-length", "user-agent"].contains(name.lowercased()) {
            headers.add(name: name, value: value)
        }
        let url = request.url.description
        let connection: HTTPConnection
        do {
            connection = try await connect(request.url.origin, configuration.connectTimeoutSeconds)
        } catch let error as HTTPClientError {
            if let limit = error.limit { limits.record(limit, "\(error)") }
            throw error
        }
        let (body, continuation) = AsyncThrowingStream<[UInt8], any Error>.makeStream(bufferingPolicy: .bufferingOldest(max(1, piecesMax)))
        let limits = self.limits
        let channel = connection.channel
        let head: HTTPResponseHead
        do {
            head = try await connection.stream(
                HTTPRequestHead(version: .http1_1, method: request.method, uri: request.url.target, headers: headers), url: url,
                headTimeoutSeconds: configuration.responseTimeoutSeconds,
                timeoutSeconds: request.timeoutSeconds ?? configuration.responseTimeoutSeconds
            ) { piece in
                switch piece {
                case .bytes(let bytes):
                    if case .dropped = continuation.yield(bytes) {
                        let error = HTTPClientError.streamBacklog(url: url, piecesMax: piecesMax)
                        limits.record(.streamBacklog, "\(error)")
                        continuation.finish(throwing: error)
                        channel.close(promise: nil)
                    }
                case .end:
                    continuation.finish()
                case .failed(let error):
                    if let limit = error.limit { limits.record(limit, "\(error)") }
                    continuation.finish(throwing: error)
                }
            }
        } catch let failure as ExchangeFailure {
            await connection.close()
            throw failure.error
        }
        continuation.onTermination = { _ in channel.close(promise: nil) }
        return HTTPStreamedResponse(status: Int(head.status.code), headers: head.headers, body: body, url: request.url, channel: channel)
    }

    /// Sends `request` and waits for the answer on the calling thread, which must be neither an
    /// event loop's (the answer could never arrive) nor one running a Swift task (blocking it
    /// can starve the concurrency pool the client runs on): a thread of its own, a
    /// `NIOThreadPool`'s, `HTTPServer`'s blocking responders'. Throws what `send` throws.
    public func sendAndWait(_ request: HTTPRequest) throws -> HTTPResponse {
        precondition(MultiThreadedEventLoopGroup.currentEventLoop == nil, "HTTPClient.sendAndWait called on an event loop")
        precondition(withUnsafeCurrentTask { $0 == nil }, "HTTPClient.sendAndWait called from a Swift task; use send")
        let answer = group.any().makePromise(of: HTTPResponse.self)
        answer.completeWithTask { try await self.send(request) }
        return try answer.futureResult.wait()
    }

    private func follow(_ request: HTTPRequest, deadline: Double?) async throws -> HTTPResponse {
        var current = request
        var followed = 0
        while true {
            let response = try await sendWithRetries(current, deadline: deadline)
            guard case let .follow(max) = request.redirects, response.isRedirect, response.status != 304 else { return response }
            guard followed < max else { throw HTTPClientError.tooManyRedirects(url: request.url.description, max: max) }
            guard let next = response.location else {
                throw HTTPClientError.redirectRefused(url: current.url.description, reason: "HTTP \(response.status) without a usable Location")
            }
            if current.url.scheme == .https, next.scheme == .http {
                throw HTTPClientError.redirectRefused(url: current.url.description, reason: "it leads from https to http (\(next))")
            }
            if next.origin != current.url.origin { current.headers.remove(name: "authorization") }
            let rewritesToGET = response.status == 303
                || ([301, 302].contains(response.status) && current.method != .GET && current.method != .HEAD)
            if rewritesToGET {
                current.method = .GET
                current.isIdempotent = true
                current.body = []
                current.headers.remove(name: "content-type")
            }
            logger.debug("redirect", metadata: ["from": "\(current.url)", "to": "\(next)", "status": "\(response.status)"])
            current.url = next
            followed += 1
        }
    }

    private func sendWithRetries(_ request: HTTPRequest, deadline: Double?) async throws -> HTTPResponse {
        let accept = request.headers.first(name: "accept") ?? "*/*"
        let url = request.url.description
        let cacheable = request.method == .GET && request.cache == .etag
        let cached = cacheable ? cache?.lookup(url: url, accept: accept) : nil
        let authenticated = request.headers.contains(name: "authorization")
        var attempt = 0
        while true {
            attempt += 1
            try Task.checkCancellation()
            let outcome: RetryPolicy.Outcome
            do {
                let (head, body) = try await exchange(request, accept: accept, ifNoneMatch: cached?.etag, deadline: deadline)
                outcome = .response(status: Int(head.status.code), headers: head.headers, body: body)
            } catch let error as HTTPClientError {
                outcome = .failure(error)
            }
            let decision = configuration.retry.decide(outcome, attempt: attempt, idempotent: request.isIdempotent,
                                                      authenticated: authenticated, url: url, now: clock.now(), random: clock.random())
            switch (decision, outcome) {
            case let (.retry(seconds, reason), outcome):
                if let deadline, clock.now() + seconds >= deadline {
                    // The next attempt could not finish in time: the last outcome stands.
                    if case let .failure(error) = outcome { throw error }
                    throw HTTPClientError.responseTimeout(url: url, seconds: request.timeoutSeconds ?? 0)
                }
                logger.info("retrying", metadata: ["request": "\(request)", "attempt": "\(attempt)", "reason": "\(reason)",
                                                   "wait_seconds": "\(seconds)"])
                try await clock.sleep(seconds)
            case let (.fail(error), _), let (.deliver, .failure(error)):
                throw error
            case let (.deliver, .response(status, headers, body)):
                logger.debug("answered", metadata: ["request": "\(request)", "status": "\(status)", "attempt": "\(attempt)"])
                if status == 304, let cached {
                    return HTTPResponse(status: cached.status, headers: Self.merge(cached: cached.headers, fresh: headers), body: cached.body,
                                        url: request.url, fromCache: true, attempts: attempt)
                }
                if cacheable, status == 200, let cache, let etag = headers.first(name: "etag"), !etag.isEmpty {
                    cache.store(url: url, accept: accept, etag: etag, status: status, headers: headers, body: body, now: clock.now())
                }
                return HTTPResponse(status: status, headers: headers, body: body, url: request.url, attempts: attempt)
            }
        }
    }

    /// The stored headers with the fresh answer's rate-limit and date headers.
    private static func merge(cached: [[String]], fresh: HTTPHeaders) -> HTTPHeaders {
        var headers = HTTPHeaders(cached.compactMap { $0.count == 2 ? ($0[0], $0[1]) : nil })
        for (name, value) in fresh where name.lowercased().hasPrefix("x-ratelimit-") || name.lowercased() == "date" {
            headers.replaceOrAdd(name: name, value: value)
        }
        return headers
    }

    /// One exchange on a pooled connection. A reused connection that the server closed while
    /// idle (nothing received) is replaced once at no cost to the retry budget.
    private func exchange(_ request: HTTPRequest, accept: String, ifNoneMatch: String?,
                          deadline: Double?) async throws -> (HTTPResponseHead, [UInt8])
    {
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: request.url.hostHeader)
        headers.add(name: "User-Agent", value: configuration.userAgent)
        headers.add(name: "Accept", value: accept)
        for (name, value) in request.headers where !["host", "accept", "content-length", "user-agent"].contains(name.lowercased()) {
            headers.add(name: name, value: value)
        }
        if let user = request.headers.first(name: "user-agent") { headers.replaceOrAdd(name: "User-Agent", value: user) }
        if let ifNoneMatch { headers.replaceOrAdd(name: "If-None-Match", value: ifNoneMatch) }
        if !request.body.isEmpty || [.POST, .PUT, .PATCH].contains(request.method) {
            headers.add(name: "Content-Length", value: String(request.body.count))
        }
        let head = HTTPRequestHead(version: .http1_1, method: request.method, uri: request.url.target, headers: headers)
        let url = request.url.description
        let budget = request.timeoutSeconds
        /// The bound for the exchange: the configured one, or what is left of the request's own
        /// budget when that is shorter (and then a timeout reports the request's budget).
        func bound(_ configured: Double) throws -> (seconds: Double, byDeadline: Bool) {
            guard let deadline else { return (configured, false) }
            let left = deadline - clock.now()
            guard left > 0 else { throw HTTPClientError.responseTimeout(url: url, seconds: budget ?? 0) }
            return left < configured ? (left, true) : (configured, false)
        }
        for _ in 0..<2 {
            let (connection, reused) = try await pool.acquire(request.url.origin, connectTimeoutSeconds: configuration.connectTimeoutSeconds,
                                                              deadline: deadline, url: url, budgetSeconds: budget)
            let response = try bound(configuration.responseTimeoutSeconds)
            do {
                let reply = try await connection.exchange(head, body: request.body, url: url, timeoutSeconds: response.seconds,
                                                          bodyBytesMax: configuration.responseBytesMax)
                await pool.release(connection, reusable: reply.head.isKeepAlive && !request.closesConnection)
                return reply
            } catch let failure as ExchangeFailure {
                await pool.discard(connection)
                if reused, failure.nothingReceived, request.isIdempotent, failure.error == .connectionClosed(url: url) {
                    continue
                }
                if case .responseTimeout = failure.error, response.byDeadline {
                    throw HTTPClientError.responseTimeout(url: url, seconds: budget ?? 0)
                }
                throw failure.error
            } catch {
                await pool.discard(connection)
                throw error
            }
        }
        throw HTTPClientError.connectionClosed(url: url)
    }
}
