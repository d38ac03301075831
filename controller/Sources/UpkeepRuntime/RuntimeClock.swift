import Foundation
import UpkeepRollout
import UpkeepCore
import UpkeepPOSIX

/// The runtime's time: `now` for the engine and the lease, and a bounded sleep for wake-ups.
/// Production uses wall time (`WallClock`), so a deadline persisted before a crash means the
/// same moment after it; tests may use it too with small policy timeouts.
public protocol RuntimeClock: Sendable {
    func now() -> Instant
    /// Returns at `deadline` (or at once when it has passed); throws when the task is cancelled.
    func sleep(until deadline: Instant) async throws
}

/// Unix wall time in milliseconds; sleeps on the monotonic clock for the remaining span.
public struct WallClock: RuntimeClock {
    public init() {}

    public func now() -> Instant { Instant.wallClockNow() }

    public func sleep(until deadline: Instant) async throws {
        let remaining = deadline.milliseconds - now().milliseconds
        if remaining > 0 { try await Task.sleep(for: .milliseconds(remaining)) }
    }
}
