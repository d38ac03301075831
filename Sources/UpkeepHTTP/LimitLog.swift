import Logging
import NIOConcurrencyHelpers
import NIOCore
import UpkeepCore

/// Counts each time one of a component's bounds is reached and logs it, at most one line per
/// bound per `intervalSeconds` (the next line says how many were not logged in between), so a
/// flood of slow or oversized requests cannot flood the log. The counts only grow; the owner
/// exports them as a counter metric (`upkeep serve` does, docs/http.md).
///
/// It never logs more than the bound's name and the detail its caller gives, which must not
/// carry a header, a body or a credential.
public final class LimitLog<Limit>: Sendable
where Limit: CaseIterable & Hashable & RawRepresentable & Sendable, Limit.RawValue == String {
    private struct State {
        var counts: [Limit: Int] = [:]
        var lastLoggedNanoseconds: [Limit: UInt64] = [:]
        var unlogged: [Limit: Int] = [:]
    }

    public let intervalSeconds: Double
    private let logger: Logger
    private let level: @Sendable (Limit) -> Logger.Level
    private let now: @Sendable () -> UInt64
    private let counted: @Sendable (Limit) -> Void
    private let state = NIOLockedValueBox(State())

    /// `level` chooses each bound's log level (routine ones, an idle keep-alive closed, log at
    /// debug); `now` is a monotonic clock in nanoseconds; `counted` runs after each count (an
    /// owner that exports the counts to a file writes it then, throttled: it must not block).
    public init(logger: Logger, intervalSeconds: Double = 60, level: @escaping @Sendable (Limit) -> Logger.Level = { _ in .warning },
                now: @escaping @Sendable () -> UInt64 = { NIODeadline.now().uptimeNanoseconds },
                counted: @escaping @Sendable (Limit) -> Void = { _ in })
    {
        self.logger = logger
        self.intervalSeconds = intervalSeconds
        self.level = level
        self.now = now
        self.counted = counted
    }

    /// Counts `times` hits of `limit` (one by default), and logs `detail` unless a line for it
    /// went out less than an interval ago.
    public func record(_ limit: Limit, times: Int = 1, _ detail: @autoclosure () -> String) {
        let at = now()
        let interval = UInt64(max(0, intervalSeconds) * 1e9)
        let skipped: Int? = state.withLockedValue { state in
            state.counts[limit, default: 0] += max(1, times)
            if let last = state.lastLoggedNanoseconds[limit], at &- last < interval {
                state.unlogged[limit, default: 0] += 1
                return nil
            }
            state.lastLoggedNanoseconds[limit] = at
            return state.unlogged.removeValue(forKey: limit) ?? 0
        }
        counted(limit)
        guard let skipped else { return }
        var metadata: Logger.Metadata = ["limit": "\(limit.rawValue)"]
        if skipped > 0 { metadata["not_logged_since_last"] = "\(skipped)" }
        logger.log(level: level(limit), "\(detail())", metadata: metadata)
    }

    /// How often each bound was reached so far, every bound listed (zero when never reached).
    public var counts: [(limit: Limit, count: Int)] {
        let counts = state.withLockedValue { $0.counts }
        return Limit.allCases.map { ($0, counts[$0] ?? 0) }
    }

    public func count(_ limit: Limit) -> Int {
        state.withLockedValue { $0.counts[limit] ?? 0 }
    }
}

extension LimitLog {
    /// Counts a connection that `OutboundBacklogHandler` closed, under its bound's name
    /// (`outbound_bytes`, `drain_timeout`), which every `Limit` that counts them spells alike.
    public func recordOutbound(_ limit: OutboundBacklog.Limit, _ detail: String) {
        guard let counted = Limit(rawValue: limit.rawValue) else { preconditionFailure("\(Limit.self) does not count \(limit.rawValue)") }
        record(counted, detail)
    }
}

/// How often each bound of one kind was reached in the whole process, summed over the
/// `LimitLog`s of many owners (every `HTTPClient`'s, which come and go): what a long-running
/// process exports as a counter. One observer (the agent's metrics file) is told after each count;
/// it must not block.
public final class LimitTally<Limit>: Sendable where Limit: CaseIterable & Hashable & Sendable {
    private struct State {
        var counts: [Limit: Int] = [:]
        var observer: (@Sendable () -> Void)?
    }

    private let state = NIOLockedValueBox(State())

    public init() {}

    public func add(_ limit: Limit) {
        let observer = state.withLockedValue { state in
            state.counts[limit, default: 0] += 1
            return state.observer
        }
        observer?()
    }

    /// Every bound, in declaration order, with its count (zero when never reached).
    public var counts: [(limit: Limit, count: Int)] {
        let counts = state.withLockedValue { $0.counts }
        return Limit.allCases.map { ($0, counts[$0] ?? 0) }
    }

    public func count(_ limit: Limit) -> Int { state.withLockedValue { $0.counts[limit] ?? 0 } }

    /// Calls `observer` after every count from now on (replacing an earlier one).
    public func observe(_ observer: @escaping @Sendable () -> Void) {
        state.withLockedValue { $0.observer = observer }
    }
}

/// The bounds of `HTTPClient`, as `HTTPClient.limits` counts them.
public enum ClientLimit: String, CaseIterable, Hashable, Sendable {
    /// `Configuration.connectTimeoutSeconds`: TCP connect and TLS handshake.
    case connectTimeout = "connect_timeout"
    /// `Configuration.responseTimeoutSeconds` (or the request's own `timeoutSeconds`).
    case responseTimeout = "response_timeout"
    /// `Configuration.responseBytesMax`.
    case responseBytes = "response_bytes"
    /// `Configuration.waitingMax`: requests queued for a connection.
    case waiting
    /// `RetryPolicy.attemptsMax`.
    case attempts
    /// `RetryPolicy.rateLimitWaitSecondsMax`.
    case rateLimitWait = "rate_limit_wait"
    /// `RedirectPolicy.follow(max:)`.
    case redirects
    /// `HTTPClient.stream`'s `piecesMax`: the reader of a streamed answer (a watch) fell behind; cut.
    case streamBacklog = "stream_backlog"
}
