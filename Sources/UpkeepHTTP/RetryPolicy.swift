import NIOHTTP1

/// Decides, after each attempt, whether to hand the answer back, try again after a delay, or
/// give up. A pure value: the caller supplies the time and a random number, so every decision
/// is reproducible in tests.
///
/// - Transient failures (no connection, timeouts, a connection closed before the answer) of
///   idempotent requests are retried with jittered exponential backoff.
/// - 500/502/503/504 answers to idempotent requests are retried the same way (or after
///   `retry-after` when the server gave one and it is within `rateLimitWaitSecondsMax`).
/// - Rate limits (403/429 with `x-ratelimit-remaining: 0`, a `retry-after`, or a body naming
///   a rate limit) wait for the time the server asked for, if that is at most
///   `rateLimitWaitSecondsMax`; otherwise they fail at once with `HTTPClientError.rateLimited`.
///   A secondary limit without any hint backs off exponentially from
///   `secondaryLimitBackoffSeconds` (GitHub asks for at least a minute).
/// - Nothing is attempted more than `attemptsMax` times.
///
/// `RetryPolicy.never` sends once and hands every answer back: for callers with a retry loop of
/// their own (the Kubernetes client's callers; an endpoint failover) and for answers whose
/// 403/429 means something else (the Kubernetes API's 429 is an eviction refused by a
/// disruption budget).
public struct RetryPolicy: Sendable, Equatable {
    public var attemptsMax: Int
    public var backoffBaseSeconds: Double
    public var backoffMaxSeconds: Double
    public var rateLimitWaitSecondsMax: Double
    public var secondaryLimitBackoffSeconds: Double
    /// Read 403/429 answers as API rate limits (GitHub's rules, above); off, they are answers
    /// like any other.
    public var followsRateLimits: Bool

    public init(attemptsMax: Int = 4, backoffBaseSeconds: Double = 0.5, backoffMaxSeconds: Double = 20,
                rateLimitWaitSecondsMax: Double = 60, secondaryLimitBackoffSeconds: Double = 60, followsRateLimits: Bool = true)
    {
        self.attemptsMax = max(1, attemptsMax)
        self.backoffBaseSeconds = max(0, backoffBaseSeconds)
        self.backoffMaxSeconds = max(0, backoffMaxSeconds)
        self.rateLimitWaitSecondsMax = max(0, rateLimitWaitSecondsMax)
        self.secondaryLimitBackoffSeconds = max(0, secondaryLimitBackoffSeconds)
        self.followsRateLimits = followsRateLimits
    }

    /// One attempt; every answer and every failure goes back to the caller as it is.
    public static let never = RetryPolicy(attemptsMax: 1, followsRateLimits: false)

    /// One attempt's result, as far as the policy needs it.
    public enum Outcome: Sendable {
        case response(status: Int, headers: HTTPHeaders, body: [UInt8])
        case failure(HTTPClientError)
    }

    public enum Decision: Sendable, Equatable {
        /// Hand the answer (or the failure) back to the caller as it is.
        case deliver
        case retry(afterSeconds: Double, reason: String)
        case fail(HTTPClientError)
    }

    /// - Parameters:
    ///   - attempt: attempts made so far, 1 for the first.
    ///   - random: uniform in [0, 1), for the jitter.
    public func decide(_ outcome: Outcome, attempt: Int, idempotent: Bool, authenticated: Bool, url: String,
                       now: Double, random: Double) -> Decision
    {
        switch outcome {
        case let .failure(error):
            let safe = idempotent || error.happenedBeforeSending
            guard error.isTransient, safe else { return .fail(error) }
            guard attempt < attemptsMax else {
                return .fail(attempt == 1 ? error : .retriesExhausted(url: url, attempts: attempt, last: error.description))
            }
            return .retry(afterSeconds: backoffSeconds(afterAttempt: attempt, random: random), reason: error.description)

        case let .response(status, headers, body):
            let limits = RateLimitStatus(headers: headers)
            if followsRateLimits, Self.isRateLimited(status: status, limits: limits, body: body) {
                let wait = limits.waitSeconds(now: now) ?? secondaryLimitBackoffSeconds * Double(1 << min(attempt - 1, 16))
                let limited = HTTPClientError.rateLimited(url: url, resetEpochSeconds: limits.resetEpochSeconds,
                                                          waitSeconds: wait, authenticated: authenticated)
                guard wait <= rateLimitWaitSecondsMax, attempt < attemptsMax else { return .fail(limited) }
                return .retry(afterSeconds: wait, reason: "rate limited (HTTP \(status))")
            }
            if [500, 502, 503, 504].contains(status), idempotent, attempt < attemptsMax {
                if let asked = limits.waitSeconds(now: now), asked <= rateLimitWaitSecondsMax {
                    return .retry(afterSeconds: asked, reason: "HTTP \(status) with retry-after")
                }
                return .retry(afterSeconds: backoffSeconds(afterAttempt: attempt, random: random), reason: "HTTP \(status)")
            }
            return .deliver
        }
    }

    /// Equal jitter: half of the exponential step for sure, the other half at random, so
    /// retries neither stampede nor collapse to zero.
    public func backoffSeconds(afterAttempt attempt: Int, random: Double) -> Double {
        let step = min(backoffMaxSeconds, backoffBaseSeconds * Double(1 << min(max(attempt - 1, 0), 30)))
        return step / 2 + step / 2 * min(max(random, 0), 1)
    }

    static func isRateLimited(status: Int, limits: RateLimitStatus, body: [UInt8]) -> Bool {
        guard status == 403 || status == 429 else { return false }
        if status == 429 || limits.isExhausted || limits.retryAfterSeconds != nil || limits.retryAtEpochSeconds != nil { return true }
        // GitHub's secondary limits: 403 with a message naming the rate limit.
        return String(decoding: body.prefix(2048), as: UTF8.self).lowercased().contains("rate limit")
    }
}
