/// A moment as milliseconds on the runtime's clock (wall-clock Unix time in production, so a
/// deadline persisted before a crash still means the same moment after it; simulated time in
/// tests). The engine never reads a clock: every `handle` call is given `now`.
public struct Instant: Codable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var milliseconds: Int64

    public init(milliseconds: Int64) { self.milliseconds = milliseconds }

    public static func seconds(_ seconds: Int64) -> Instant { Instant(milliseconds: seconds * 1000) }

    public func adding(seconds: Int) -> Instant { Instant(milliseconds: milliseconds + Int64(seconds) * 1000) }
    public func adding(milliseconds delta: Int64) -> Instant { Instant(milliseconds: milliseconds + delta) }

    public static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.milliseconds < rhs.milliseconds }

    public var description: String { "t+\(milliseconds)ms" }

    public init(from decoder: any Decoder) throws {
        milliseconds = try decoder.singleValueContainer().decode(Int64.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(milliseconds)
    }
}
