import UpkeepCore
import UpkeepHTTP
import UpkeepStore

/// Decides what one delivery attempt means for its notification: sent, tried again after an
/// exponential backoff with jitter, or given up. Pure: the caller gives the time and a random
/// number, so every decision is reproducible.
///
/// - 2xx: sent.
/// - No answer (connection refused, timeout, closed), 408, 425, 429 and 5xx: tried again,
///   after `retry-after` when the answer gives one within the backoff's maximum, until
///   `attemptsMax` attempts were made.
/// - Any other answer (a 3xx, 4xx): the sink refuses this request and would refuse it again
///   (a wrong URL, a revoked token, a body it does not take): given up at once.
public struct DeliveryPolicy: Sendable, Equatable {
    /// What came back from one attempt.
    public enum Attempt: Sendable, Equatable {
        /// `excerpt`: the start of the answer's body, for the error text.
        case answered(status: Int, retryAfterSeconds: Double?, excerpt: String)
        /// No usable answer; the text names the sink by its redacted URL.
        case failed(String)
    }

    public var attemptsMax: Int
    /// The backoff: equal jitter, from `backoffBaseSeconds` doubling to `backoffMaxSeconds`.
    public var backoff: RetryPolicy

    public static let backoffBaseSeconds = 2.0
    public static let backoffMaxSeconds = 300.0

    public init(attemptsMax: Int, backoffBaseSeconds: Double = DeliveryPolicy.backoffBaseSeconds,
                backoffMaxSeconds: Double = DeliveryPolicy.backoffMaxSeconds) {
        self.attemptsMax = max(1, attemptsMax)
        backoff = RetryPolicy(attemptsMax: self.attemptsMax, backoffBaseSeconds: backoffBaseSeconds, backoffMaxSeconds: backoffMaxSeconds)
    }

    /// `attempts`: attempts made, this one included. `random`: uniform in [0, 1).
    public func decide(_ attempt: Attempt, attempts: Int, now: Instant, random: Double) -> DeliveryRecord {
        let error: String
        var asked: Double?
        switch attempt {
        case .answered(let status, let retryAfter, let excerpt):
            if (200..<300).contains(status) { return .sent }
            let said = excerpt.isEmpty ? "" : ": \(excerpt)"
            guard Self.isTransient(status) else {
                return .dead(error: "HTTP \(status)\(said) (refused; not tried again: check the sink's URL and credentials)")
            }
            error = "HTTP \(status)\(said)"
            asked = retryAfter
        case .failed(let message):
            error = message
        }
        guard attempts < attemptsMax else { return .dead(error: "gave up after \(attempts) attempts; last: \(error)") }
        var wait = backoff.backoffSeconds(afterAttempt: attempts, random: random)
        if let asked, asked > wait, asked <= backoff.backoffMaxSeconds { wait = asked }
        return .retry(at: now.adding(milliseconds: Int64((wait * 1000).rounded(.up))), error: error)
    }

    static func isTransient(_ status: Int) -> Bool {
        status == 408 || status == 425 || status == 429 || (500..<600).contains(status)
    }

    /// The longest a notification can wait between its first and its last attempt (the sum of
    /// the backoffs at their maximum), for the docs and the status.
    public var retryWindowSecondsMax: Double {
        (1..<attemptsMax).reduce(0) { $0 + backoff.backoffSeconds(afterAttempt: $1, random: 1) }
    }
}
