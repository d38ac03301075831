import NIOHTTP1

/// The rate-limit headers GitHub (and compatible mirrors) send with every answer.
///
/// https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api:
/// `x-ratelimit-limit|remaining|used|reset` (reset in epoch seconds) and, for secondary
/// limits, `retry-after` (seconds or an HTTP date).
public struct RateLimitStatus: Sendable, Equatable, Codable {
    public var limit: Int?
    public var remaining: Int?
    public var used: Int?
    public var resetEpochSeconds: Double?
    /// `retry-after` as absolute epoch seconds when it was an HTTP date, else nil.
    public var retryAtEpochSeconds: Double?
    /// `retry-after` in seconds when it was a number.
    public var retryAfterSeconds: Double?

    public init(limit: Int? = nil, remaining: Int? = nil, used: Int? = nil, resetEpochSeconds: Double? = nil,
                retryAtEpochSeconds: Double? = nil, retryAfterSeconds: Double? = nil)
    {
        self.limit = limit
        self.remaining = remaining
        self.used = used
        self.resetEpochSeconds = resetEpochSeconds
        self.retryAtEpochSeconds = retryAtEpochSeconds
        self.retryAfterSeconds = retryAfterSeconds
    }

    public init(headers: HTTPHeaders) {
        func integer(_ name: String) -> Int? { headers.first(name: name).flatMap { Int($0.trimmingSpaces) } }
        limit = integer("x-ratelimit-limit")
        remaining = integer("x-ratelimit-remaining")
        used = integer("x-ratelimit-used")
        resetEpochSeconds = integer("x-ratelimit-reset").map(Double.init)
        if let retry = headers.first(name: "retry-after")?.trimmingSpaces {
            if let seconds = Int(retry), seconds >= 0 {
                retryAfterSeconds = Double(seconds)
            } else {
                retryAtEpochSeconds = HTTPDate.parseIMF(retry)
            }
        }
    }

    /// The primary limit is used up.
    public var isExhausted: Bool { remaining == 0 }

    /// Seconds to wait from `now` that the server asked for, if it asked: `retry-after` first,
    /// then the reset of an exhausted primary limit (plus a second, as resets are whole seconds).
    public func waitSeconds(now: Double) -> Double? {
        if let retryAfterSeconds { return retryAfterSeconds }
        if let retryAtEpochSeconds { return max(0, retryAtEpochSeconds - now) }
        if isExhausted, let resetEpochSeconds { return max(0, resetEpochSeconds - now) + 1 }
        return nil
    }
}

extension StringProtocol {
    var trimmingSpaces: String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}
