#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import UpkeepAgent
import UpkeepCore

/// The runner's stop timing on its own: the instants fed in are made up, so every boundary (a
/// nanosecond before, exactly at) is hit exactly, which the real-process tests of ProcessRunner
/// cannot do.
@Suite struct StopScheduleTests {
    typealias Instant = ContinuousClock.Instant

    let start = ContinuousClock.now
    var deadline: Instant { start + .seconds(30) }
    let nanosecond = Duration.nanoseconds(1)

    @Test func beforeTheDeadlineItOnlyWaitsForTheDeadline() {
        var schedule = StopSchedule(deadline: deadline)
        #expect(schedule.next(now: start) == .wait(until: deadline))
        #expect(schedule.next(now: deadline - nanosecond) == .wait(until: deadline))
        #expect(schedule.reason == nil)
    }

    @Test func exactlyAtTheDeadlineItSendsSIGTERMAndReportsATimeout() {
        var schedule = StopSchedule(deadline: deadline, grace: .seconds(2))
        #expect(schedule.next(now: deadline) == .signal(SIGTERM, thenWaitUntil: deadline + .seconds(2)))
        #expect(schedule.reason == .timedOut)
    }

    /// The loop may look late (it was reading output, the machine was busy): the grace is counted
    /// from when SIGTERM was sent, so the child always gets all of it.
    @Test func theGraceRunsFromWhenSIGTERMWasSentNotFromTheDeadline() {
        var schedule = StopSchedule(deadline: deadline, grace: .seconds(2))
        let late = deadline + .seconds(7)
        #expect(schedule.next(now: late) == .signal(SIGTERM, thenWaitUntil: late + .seconds(2)))
        #expect(schedule.next(now: late + .seconds(1)) == .wait(until: late + .seconds(2)))
    }

    @Test func aDeadlineAlreadyPastStopsAtTheFirstLook() {
        var schedule = StopSchedule(deadline: start - .seconds(1))
        #expect(schedule.next(now: start) == .signal(SIGTERM, thenWaitUntil: start + schedule.grace))
        #expect(schedule.reason == .timedOut)
    }

    @Test func sigkillComesExactlyWhenTheGraceEndsAndOnlyThen() {
        var schedule = StopSchedule(deadline: deadline, grace: .seconds(2), killWait: .seconds(5))
        _ = schedule.next(now: deadline)
        let graceEnd = deadline + .seconds(2)
        #expect(schedule.next(now: deadline) == .wait(until: graceEnd), "SIGTERM is sent once")
        #expect(schedule.next(now: graceEnd - nanosecond) == .wait(until: graceEnd))
        #expect(schedule.next(now: graceEnd) == .signal(SIGKILL, thenWaitUntil: graceEnd + .seconds(5)))
        #expect(schedule.next(now: graceEnd) == .wait(until: graceEnd + .seconds(5)), "SIGKILL is sent once")
    }

    @Test func itGivesUpExactlyKillWaitAfterSIGKILL() {
        var schedule = StopSchedule(deadline: deadline, grace: .seconds(2), killWait: .seconds(5))
        _ = schedule.next(now: deadline)
        let killedAt = deadline + .seconds(3)  // a late look again: the wait counts from SIGKILL
        #expect(schedule.next(now: killedAt) == .signal(SIGKILL, thenWaitUntil: killedAt + .seconds(5)))
        #expect(schedule.next(now: killedAt + .seconds(5) - nanosecond) == .wait(until: killedAt + .seconds(5)))
        #expect(schedule.next(now: killedAt + .seconds(5)) == .abandon)
        #expect(schedule.next(now: killedAt + .seconds(60)) == .abandon)
        #expect(schedule.reason == .timedOut)
    }

    @Test(arguments: [StopReason.cancelled, .outputTooLarge(stream: "stderr")])
    func aStopBeforeTheDeadlineSendsSIGTERMAtOnceThenFollowsTheSameSteps(reason: StopReason) {
        var schedule = StopSchedule(deadline: deadline, grace: .seconds(2), killWait: .seconds(5))
        let asked = start + .seconds(1)
        #expect(schedule.next(now: start) == .wait(until: deadline))
        schedule.stop(reason)
        #expect(schedule.reason == reason)
        #expect(schedule.next(now: asked) == .signal(SIGTERM, thenWaitUntil: asked + .seconds(2)))
        // SIGKILL after the grace, long before the deadline: the deadline no longer matters.
        #expect(schedule.next(now: asked + .seconds(2)) == .signal(SIGKILL, thenWaitUntil: asked + .seconds(7)))
        #expect(schedule.next(now: asked + .seconds(7)) == .abandon)
        #expect(schedule.reason == reason)
    }

    @Test func theFirstReasonIsTheOneReported() {
        var cancelledFirst = StopSchedule(deadline: deadline)
        cancelledFirst.stop(.cancelled)
        cancelledFirst.stop(.outputTooLarge(stream: "stdout"))
        _ = cancelledFirst.next(now: deadline + .seconds(1))
        #expect(cancelledFirst.reason == .cancelled)

        var timedOutFirst = StopSchedule(deadline: deadline)
        _ = timedOutFirst.next(now: deadline)
        timedOutFirst.stop(.cancelled)
        #expect(timedOutFirst.reason == .timedOut)
    }

    /// The watch loop passes on a cancellation before it asks for the next step: a cancellation
    /// noticed in the same look as the deadline is reported as a cancellation.
    @Test func aStopAskedBeforeALookPastTheDeadlineWinsOverTheTimeout() {
        var schedule = StopSchedule(deadline: deadline)
        schedule.stop(.cancelled)
        #expect(schedule.next(now: deadline + .seconds(1)) == .signal(SIGTERM, thenWaitUntil: deadline + .seconds(1) + schedule.grace))
        #expect(schedule.reason == .cancelled)
    }

    @Test func aStopAfterSIGTERMSendsNothingMore() {
        var schedule = StopSchedule(deadline: deadline, grace: .seconds(2))
        _ = schedule.next(now: deadline)
        schedule.stop(.outputTooLarge(stream: "stdout"))
        #expect(schedule.next(now: deadline + .seconds(1)) == .wait(until: deadline + .seconds(2)))
        #expect(schedule.reason == .timedOut)
    }

    @Test func zeroGraceSendsSIGKILLAtTheNextLookAndZeroKillWaitGivesUpAtTheOneAfter() {
        var schedule = StopSchedule(deadline: deadline, grace: .zero, killWait: .zero)
        #expect(schedule.next(now: deadline) == .signal(SIGTERM, thenWaitUntil: deadline))
        #expect(schedule.next(now: deadline) == .signal(SIGKILL, thenWaitUntil: deadline))
        #expect(schedule.next(now: deadline) == .abandon)
    }

    /// docs/agent.md promises SIGKILL two seconds after SIGTERM.
    @Test func theDefaultsAreTwoSecondsOfGraceAndFiveOfWaitingAfterSIGKILL() {
        let schedule = StopSchedule(deadline: deadline)
        #expect(schedule.grace == .seconds(2) && schedule.killWait == .seconds(5))
    }

    /// Seeded walks through the schedule as the watch loop drives it: woken early (output came),
    /// on time or late, with stops asked at random moments. After every step: no signal before
    /// the deadline unless a stop was asked; SIGTERM once, first; SIGKILL once, at least the grace
    /// after SIGTERM; giving up only after SIGKILL and at least killWait later; every wait is for
    /// a later instant (a wait for now or earlier would make the loop spin); the reason reported
    /// is the first one. Each walk must end (give up) within a bounded number of steps. A walk stops
    /// at the first rule broken, naming its seed and step.
    @Test(arguments: 0..<200) func walksKeepEveryRule(seed: UInt64) throws {
        var random = SeededGenerator(seed: seed)
        let grace = Duration.milliseconds(Int64.random(in: 0...3_000, using: &random))
        let killWait = Duration.milliseconds(Int64.random(in: 0...6_000, using: &random))
        let deadline = start + .milliseconds(Int64.random(in: 0...10_000, using: &random))
        var schedule = StopSchedule(deadline: deadline, grace: grace, killWait: killWait)
        var now = start
        var expectedReason: StopReason?
        var terminatedAt: Instant?
        var killedAt: Instant?
        let reasons: [StopReason] = [.cancelled, .outputTooLarge(stream: "stdout"), .outputTooLarge(stream: "stderr")]
        for step in 0..<1_000 {
            let context = "seed \(seed), step \(step)"
            if Int.random(in: 0..<20, using: &random) == 0 {
                let reason = reasons.randomElement(using: &random)!
                schedule.stop(reason)
                if expectedReason == nil { expectedReason = reason }
            }
            if expectedReason == nil && now >= deadline { expectedReason = .timedOut }
            let action = schedule.next(now: now)
            try #require(schedule.reason == expectedReason, "\(context)")
            let wakeAt: Instant
            switch action {
            case .wait(let instant):
                try #require(instant > now, "\(context): a wait for \(instant) at \(now) would spin")
                wakeAt = instant
            case .signal(SIGTERM, let instant):
                try #require(terminatedAt == nil && killedAt == nil, "\(context): SIGTERM again or after SIGKILL")
                try #require(expectedReason != nil, "\(context): SIGTERM before the deadline without a stop")
                try #require(instant == now + grace, "\(context)")
                terminatedAt = now
                wakeAt = instant
            case .signal(SIGKILL, let instant):
                let terminated = try #require(terminatedAt, "\(context): SIGKILL without SIGTERM first")
                try #require(killedAt == nil, "\(context): SIGKILL twice")
                try #require(now >= terminated + grace, "\(context): SIGKILL within the grace")
                try #require(instant == now + killWait, "\(context)")
                killedAt = now
                wakeAt = instant
            case .signal(let signal, _):
                Issue.record("\(context): unexpected signal \(signal)")
                return
            case .abandon:
                let killed = try #require(killedAt, "\(context): gave up without SIGKILL")
                try #require(now >= killed + killWait, "\(context): gave up within killWait")
                return
            }
            // Woken early by output or a cancellation (anywhere before the instant), on time, or late.
            switch Int.random(in: 0..<3, using: &random) {
            case 0: now += (wakeAt - now) * Double.random(in: 0..<1, using: &random)
            case 1: now = wakeAt
            default: now = wakeAt + .milliseconds(Int64.random(in: 1...500, using: &random))
            }
        }
        // A stop is asked with probability 1/20 per step, the deadline is at most 10 s away and
        // every on-time or late wake moves past the instant waited for.
        Issue.record("seed \(seed): the schedule did not give up within 1,000 steps")
    }
}
