#if canImport(Glibc)
import Glibc
#endif

/// Why the runner stopped a child before it ended by itself.
enum StopReason: Equatable, Sendable {
    case timedOut
    case cancelled
    /// It printed more than the cap on this stream ("stdout" or "stderr").
    case outputTooLarge(stream: String)
}

/// When a running child gets which signal: none before its deadline unless a stop is asked for
/// (cancellation, too much output); then SIGTERM, SIGKILL `grace` later, and after `killWait`
/// more the watch gives up waiting for a process even SIGKILL did not end (stuck in the
/// kernel). Pure: the watch loop feeds it the time and performs what it returns.
struct StopSchedule {
    typealias Instant = ContinuousClock.Instant

    enum Action: Equatable {
        /// Nothing to do before this instant (unless the child ends or a stop is asked for).
        case wait(until: Instant)
        /// Send this signal now, then look again at the instant.
        case signal(Int32, thenWaitUntil: Instant)
        /// SIGKILL was sent `killWait` ago and the process is still there.
        case abandon
    }

    let deadline: Instant
    let grace: Duration
    let killWait: Duration
    private(set) var reason: StopReason?
    private var terminatedAt: Instant?
    private var killedAt: Instant?

    init(deadline: Instant, grace: Duration = .seconds(2), killWait: Duration = .seconds(5)) {
        self.deadline = deadline
        self.grace = grace
        self.killWait = killWait
    }

    /// Asks for the child to be stopped; the first reason given is the one reported.
    mutating func stop(_ reason: StopReason) {
        if self.reason == nil { self.reason = reason }
    }

    mutating func next(now: Instant) -> Action {
        if reason == nil && now >= deadline { reason = .timedOut }
        guard reason != nil else { return .wait(until: deadline) }
        guard let terminatedAt else {
            terminatedAt = now
            return .signal(SIGTERM, thenWaitUntil: now + grace)
        }
        guard let killedAt else {
            guard now >= terminatedAt + grace else { return .wait(until: terminatedAt + grace) }
            killedAt = now
            return .signal(SIGKILL, thenWaitUntil: now + killWait)
        }
        return now >= killedAt + killWait ? .abandon : .wait(until: killedAt + killWait)
    }
}
