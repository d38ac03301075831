/// Jittered exponential backoff with bounded attempts and delay. Pure: the random source is
/// passed in, so tests are deterministic.
public struct Backoff: Sendable, Equatable {
    /// Delay before the first retry (before jitter).
    public var initialDelay: Duration
    /// No delay exceeds this.
    public var maximumDelay: Duration
    /// Attempts in all, the first included; then the last error is thrown.
    public var attemptsMax: Int

    public init(initialDelay: Duration = .milliseconds(100), maximumDelay: Duration = .seconds(5), attemptsMax: Int = 6) {
        precondition(initialDelay > .zero && maximumDelay >= initialDelay && attemptsMax >= 1, "backoff bounds")
        self.initialDelay = initialDelay
        self.maximumDelay = maximumDelay
        self.attemptsMax = attemptsMax
    }

    /// The wait after failed attempt `attempt` (1-based): the capped exponential delay, of which
    /// a random half is kept ("equal jitter": never less than half, so retries stay spread but
    /// bounded below).
    public func delay(afterAttempt attempt: Int, using random: inout some RandomNumberGenerator) -> Duration {
        precondition(attempt >= 1, "attempts count from 1")
        let doublings = min(attempt - 1, 30)
        let initial = initialDelay / .nanoseconds(1)
        let capped = min(initial * pow2(doublings), maximumDelay / .nanoseconds(1))
        let half = capped / 2
        return .nanoseconds(Int64(half + Double.random(in: 0...half, using: &random)))
    }

    private func pow2(_ n: Int) -> Double { Double(1 << n) }
}
