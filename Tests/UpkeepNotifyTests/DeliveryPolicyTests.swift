import Testing
import UpkeepCore
import UpkeepNotify
import UpkeepStore

/// The pure decision after each attempt: sent, retried with a bounded jittered backoff, or given up.
@Suite struct DeliveryPolicyTests {
    let now = Instant(milliseconds: 1_800_000_000_000)

    @Test func twoHundredsAreSentRefusalsAreGivenUpAtOnce() {
        let policy = DeliveryPolicy(attemptsMax: 5)
        #expect(policy.decide(.answered(status: 204, retryAfterSeconds: nil, excerpt: ""), attempts: 1, now: now, random: 0.5) == .sent)
        for status in [301, 400, 401, 403, 404, 410, 413] {
            guard case .dead(let error) = policy.decide(.answered(status: status, retryAfterSeconds: nil, excerpt: "no_service"),
                                                        attempts: 1, now: now, random: 0.5) else {
                Issue.record("HTTP \(status) should be given up at once")
                continue
            }
            #expect(error.contains("HTTP \(status): no_service") && error.contains("not tried again"), "\(error)")
        }
    }

    @Test func transientFailuresBackOffExponentiallyWithJitterUpToTheBound() {
        let policy = DeliveryPolicy(attemptsMax: 12, backoffBaseSeconds: 2, backoffMaxSeconds: 300)
        var previousLow: Int64 = 0
        for attempts in 1..<12 {
            let low = policy.decide(.failed("cannot connect"), attempts: attempts, now: now, random: 0)
            let high = policy.decide(.answered(status: 503, retryAfterSeconds: nil, excerpt: ""), attempts: attempts, now: now, random: 0.999)
            guard case .retry(let earliest, let error) = low, case .retry(let latest, _) = high else {
                Issue.record("attempt \(attempts) should be retried: \(low) \(high)")
                return
            }
            #expect(error == "cannot connect")
            let step = min(300, 2 * Double(1 << (attempts - 1)))
            // Equal jitter: at least half the step, at most the step.
            #expect(earliest.milliseconds(since: now) == Int64(step * 500), "attempt \(attempts)")
            #expect(latest.milliseconds(since: now) <= Int64(step * 1000) && latest > earliest, "attempt \(attempts)")
            #expect(earliest.milliseconds(since: now) >= previousLow)
            previousLow = earliest.milliseconds(since: now)
        }
        guard case .dead(let error) = policy.decide(.failed("connection refused"), attempts: 12, now: now, random: 0.5) else {
            Issue.record("the last attempt's failure gives up")
            return
        }
        #expect(error == "gave up after 12 attempts; last: connection refused")
        #expect(policy.retryWindowSecondsMax > 1_000 && policy.retryWindowSecondsMax < 2_000, "\(policy.retryWindowSecondsMax)")
    }

    @Test func aRetryAfterWithinTheBoundIsFollowedOneBeyondItIsNot() {
        let policy = DeliveryPolicy(attemptsMax: 5, backoffBaseSeconds: 2, backoffMaxSeconds: 300)
        let asked = policy.decide(.answered(status: 429, retryAfterSeconds: 120, excerpt: ""), attempts: 1, now: now, random: 0)
        #expect(asked == .retry(at: now.adding(seconds: 120), error: "HTTP 429"))
        let tooLong = policy.decide(.answered(status: 429, retryAfterSeconds: 86_400, excerpt: ""), attempts: 1, now: now, random: 0)
        #expect(tooLong == .retry(at: now.adding(seconds: 1), error: "HTTP 429"))
    }
}
