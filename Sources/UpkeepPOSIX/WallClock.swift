#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import UpkeepCore

extension Instant {
    /// Now on the wall clock (`CLOCK_REALTIME`), truncated to the millisecond: the one place the
    /// agent, the controller's runtime and its commands read the time their pure cores are
    /// given, so a deadline persisted before a restart means the same moment after it.
    public static func wallClockNow() -> Instant {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Instant(milliseconds: Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000)
    }
}
