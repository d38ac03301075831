/// A moment, as whole milliseconds since the Unix epoch on the caller's clock: wall time in
/// production (so a deadline persisted before a crash or an agent restart still means the same
/// moment after it), simulated time in tests and the simulation. The one time type of the pure
/// cores (the planner, the rollout engine, the agent's upgrade machine): they never read a clock,
/// every `handle` is given `now`; the shells convert at their edges.
///
/// Durations stay integers whose names end in their unit (`healthTimeoutMs`,
/// `gateTimeoutSeconds`), as the engine's state, the agent's journal, the protocol and
/// upkeep.yaml spell them (docs/decisions/2026-12-06-one-instant.md).
///
/// Encoded as that one integer, which is how the engine's state in SQLite and the agent's journal
/// have always written their times.
public struct Instant: Codable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var milliseconds: Int64

    public init(milliseconds: Int64) { self.milliseconds = milliseconds }

    public static func seconds(_ seconds: Int64) -> Instant { Instant(milliseconds: seconds * 1000) }

    public func adding(seconds: Int) -> Instant { Instant(milliseconds: milliseconds + Int64(seconds) * 1000) }
    public func adding(milliseconds delta: Int64) -> Instant { Instant(milliseconds: milliseconds + delta) }

    /// How many milliseconds after `earlier` this is (negative when it is before).
    public func milliseconds(since earlier: Instant) -> Int64 { milliseconds - earlier.milliseconds }

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
