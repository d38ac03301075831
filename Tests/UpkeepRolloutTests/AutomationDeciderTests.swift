import Testing
import UpkeepCore
import UpkeepRollout

@Suite struct AutomationDeciderTests {
    static func v(_ text: String) -> K3sVersion {
        guard let version = try? K3sVersion(text) else { preconditionFailure("bad version \(text)") }
        return version
    }

    /// 2026-11-28 (a Saturday) 03:00 UTC.
    static let saturday3 = Instant.seconds(1_795_834_800)
    static let releases = ["v1.30.2+k3s1", "v1.30.5+k3s1", "v1.31.1+k3s1", "v1.31.4+k3s1", "v1.32.0-rc1+k3s1", "v1.32.2+k3s1", "v1.33.1+k3s1"]
        .map(v)

    /// A check made a minute ago saw the cluster at `installed` and the goal `goal`.
    static func facts(installed: String, goal: String, now: Instant = saturday3) -> AutomationFacts {
        AutomationFacts(checks: CheckHistoryFacts(lastSuccessAt: now.adding(seconds: -60)),
                        seen: SeenVersions(installed: v(installed), releases: releases, goal: v(goal)))
    }

    static let minor = AutomationPolicy(k3s: .minor)
    static let patch = AutomationPolicy(k3s: .patch)

    @Test func aMinorPolicyGoesOneMinorAtATimeAtItsNewestRelease() {
        let decision = AutomationDecider.decide(Self.facts(installed: "v1.30.2+k3s1", goal: "v1.33.1+k3s1"), policy: Self.minor, now: Self.saturday3)
        #expect(decision == .start(target: Self.v("v1.31.4+k3s1")), "v1.30 to v1.31's newest, not to v1.33")
        let next = AutomationDecider.decide(Self.facts(installed: "v1.31.4+k3s1", goal: "v1.33.1+k3s1"), policy: Self.minor, now: Self.saturday3)
        #expect(next == .start(target: Self.v("v1.32.2+k3s1")), "a release candidate is never a step")
        let last = AutomationDecider.decide(Self.facts(installed: "v1.32.2+k3s1", goal: "v1.33.1+k3s1"), policy: Self.minor, now: Self.saturday3)
        #expect(last == .start(target: Self.v("v1.33.1+k3s1")))
    }

    @Test func aMinorWithoutAReleaseIsNotSkipped() {
        let releases = ["v1.30.2+k3s1", "v1.32.2+k3s1"].map(Self.v)
        let choice = AutomationDecider.target(installed: Self.v("v1.30.2+k3s1"), releases: releases, goal: Self.v("v1.32.2+k3s1"), scope: .minor)
        #expect(choice == .missingMinor(MinorLine(major: 1, minor: 31)))
    }

    @Test func aPatchPolicyStaysInTheClustersMinor() {
        let within = AutomationDecider.decide(Self.facts(installed: "v1.30.2+k3s1", goal: "v1.33.1+k3s1"), policy: Self.patch, now: Self.saturday3)
        #expect(within == .start(target: Self.v("v1.30.5+k3s1")))
        let none = AutomationDecider.decide(Self.facts(installed: "v1.30.5+k3s1", goal: "v1.33.1+k3s1"), policy: Self.patch, now: Self.saturday3)
        guard case .wait(_, .notAllowedByPolicy(let available, .patch)) = none else {
            Issue.record("expected a wait for the policy, got \(none)")
            return
        }
        #expect(available == Self.v("v1.33.1+k3s1"))
    }

    @Test func aPinnedVersionIsTheGoalAndNeverPassed() {
        var facts = Self.facts(installed: "v1.30.2+k3s1", goal: "v1.31.1+k3s1")
        #expect(AutomationDecider.decide(facts, policy: AutomationPolicy(k3s: .minor, goal: .pinned(Self.v("v1.31.1+k3s1"))), now: Self.saturday3)
                == .start(target: Self.v("v1.31.1+k3s1")), "the pin, although v1.31.4 is out")
        facts = Self.facts(installed: "v1.31.4+k3s1", goal: "v1.31.1+k3s1")
        guard case .wait(_, .clusterAhead) = AutomationDecider.decide(facts, policy: Self.minor, now: Self.saturday3) else {
            Issue.record("a pin below the cluster must not start a downgrade")
            return
        }
    }

    @Test func policyNoneChecksButNeverStarts() {
        let policy = AutomationPolicy(k3s: .none)
        let fresh = AutomationDecider.decide(AutomationFacts(), policy: policy, now: Self.saturday3)
        #expect(fresh == .check, "no check made yet")
        let decision = AutomationDecider.decide(Self.facts(installed: "v1.30.2+k3s1", goal: "v1.31.4+k3s1"), policy: policy, now: Self.saturday3)
        #expect(decision == .wait(until: Self.saturday3.adding(seconds: 3600 - 60),
                                  .notAllowedByPolicy(available: Self.v("v1.31.4+k3s1"), policy: .none)))
    }

    @Test func upToDateWaitsForTheNextCheck() {
        let decision = AutomationDecider.decide(Self.facts(installed: "v1.31.4+k3s1", goal: "v1.31.4+k3s1"), policy: Self.minor, now: Self.saturday3)
        #expect(decision == .wait(until: Self.saturday3.adding(seconds: 3540), .upToDate(Self.v("v1.31.4+k3s1"))))
        #expect(AutomationDecider.decide(Self.facts(installed: "v1.31.4+k3s1", goal: "v1.31.4+k3s1"), policy: Self.minor,
                                         now: Self.saturday3.adding(seconds: 3540)) == .check)
    }

    @Test func aClosedWindowWaitsUntilItOpens() throws {
        var facts = Self.facts(installed: "v1.30.2+k3s1", goal: "v1.31.4+k3s1")
        facts.windows = [try MaintenanceWindow("Sat 04:00-06:00")]
        let decision = AutomationDecider.decide(facts, policy: AutomationPolicy(checkIntervalSeconds: 86_400, k3s: .minor), now: Self.saturday3)
        #expect(decision == .wait(until: Self.saturday3.adding(seconds: 3600), .outsideWindows(target: Self.v("v1.31.4+k3s1"))))
        let open = AutomationDecider.decide(facts, policy: AutomationPolicy(checkIntervalSeconds: 86_400, k3s: .minor),
                                            now: Self.saturday3.adding(seconds: 3600))
        #expect(open == .start(target: Self.v("v1.31.4+k3s1")))
    }

    @Test func aLockHeldElsewhereStartsNothing() {
        var facts = Self.facts(installed: "v1.30.2+k3s1", goal: "v1.31.4+k3s1")
        let expires = Self.saturday3.adding(seconds: 15)
        facts.lock = .heldElsewhere(holder: "ctl2-1a2b3c4d", expires: expires)
        #expect(AutomationDecider.decide(facts, policy: Self.minor, now: Self.saturday3) == .wait(until: expires, .lockHeld(holder: "ctl2-1a2b3c4d")))
        facts.unfinished = UnfinishedRolloutFacts(id: "r1", target: Self.v("v1.31.4+k3s1"), state: .interrupted)
        #expect(AutomationDecider.decide(facts, policy: Self.minor, now: Self.saturday3) == .wait(until: expires, .lockHeld(holder: "ctl2-1a2b3c4d")),
                "a rollout another process drives is left to it")
    }

    @Test func anInterruptedRolloutIsResumedInsideAWindowOnly() throws {
        var facts = Self.facts(installed: "v1.30.2+k3s1", goal: "v1.33.1+k3s1")
        facts.unfinished = UnfinishedRolloutFacts(id: "r20261128-020000", target: Self.v("v1.31.4+k3s1"), state: .interrupted)
        #expect(AutomationDecider.decide(facts, policy: Self.minor, now: Self.saturday3) == .resume(rolloutID: "r20261128-020000"))
        facts.windows = [try MaintenanceWindow("Sun 02:00-06:00")]
        guard case .wait(let until, .outsideWindowsToResume("r20261128-020000")) = AutomationDecider.decide(facts, policy: Self.minor, now: Self.saturday3)
        else {
            Issue.record("a resume waits for a window")
            return
        }
        #expect(until == Self.saturday3.adding(seconds: 3540), "the next check comes before Sunday's window")
        facts.unfinished?.state = .outsideWindows
        let sunday2 = Instant.seconds(1_795_917_600)
        facts.checks.lastSuccessAt = sunday2.adding(seconds: -60)
        #expect(AutomationDecider.decide(facts, policy: Self.minor, now: sunday2) == .resume(rolloutID: "r20261128-020000"),
                "Sunday 02:00: the window opened")
    }

    @Test func aBlockedRolloutWaitsForAnOperatorAndNoneLeavesItToThem() {
        var facts = Self.facts(installed: "v1.30.2+k3s1", goal: "v1.31.4+k3s1")
        facts.unfinished = UnfinishedRolloutFacts(id: "r1", target: Self.v("v1.31.4+k3s1"), state: .blocked("node a1 unhealthy"))
        #expect(AutomationDecider.decide(facts, policy: Self.minor, now: Self.saturday3)
                == .wait(until: Self.saturday3.adding(seconds: 3540), .blocked(rolloutID: "r1", reason: "node a1 unhealthy")))
        facts.unfinished?.state = .interrupted
        #expect(AutomationDecider.decide(facts, policy: AutomationPolicy(k3s: .none), now: Self.saturday3)
                == .wait(until: Self.saturday3.adding(seconds: 3540), .unfinishedNeedsOperator(rolloutID: "r1")))
    }

    @Test func aFailedTargetIsNotTriedAgainButANewerOneIs() {
        var facts = Self.facts(installed: "v1.30.2+k3s1", goal: "v1.31.1+k3s1")
        facts.failedTargets = [Self.v("v1.31.1+k3s1"): "r1"]
        #expect(AutomationDecider.decide(facts, policy: Self.minor, now: Self.saturday3)
                == .wait(until: Self.saturday3.adding(seconds: 3540), .failedBefore(target: Self.v("v1.31.1+k3s1"), rolloutID: "r1")))
        facts.seen?.goal = Self.v("v1.31.4+k3s1")
        #expect(AutomationDecider.decide(facts, policy: Self.minor, now: Self.saturday3) == .start(target: Self.v("v1.31.4+k3s1")))
    }

    @Test func failingChecksBackOffFrom30SecondsToTheInterval() {
        let policy = AutomationPolicy(checkIntervalSeconds: 600, k3s: .minor)
        let failedAt = Self.saturday3
        let delays = (1...7).map { failures in
            AutomationDecider.nextCheckAt(CheckHistoryFacts(failures: failures, lastFailureAt: failedAt), policy: policy, now: failedAt)
                .milliseconds(since: failedAt) / 1000
        }
        #expect(delays == [30, 60, 120, 240, 480, 600, 600])
        let decision = AutomationDecider.decide(AutomationFacts(checks: CheckHistoryFacts(failures: 2, lastFailureAt: failedAt, lastError: "503")),
                                                policy: policy, now: failedAt.adding(seconds: 10))
        #expect(decision == .wait(until: failedAt.adding(seconds: 60), .checkFailing(failures: 2, lastError: "503")))
        #expect(AutomationDecider.nextCheckAt(CheckHistoryFacts(failures: 10_000, lastFailureAt: failedAt), policy: policy, now: failedAt)
                == failedAt.adding(seconds: 600), "no overflow however many failures")
    }

    @Test func aWindowBlockOfTheRealEngineReadsAsOutsideWindows() throws {
        // Serve tells a block at a closed window from every other by the engine's own words.
        let harness = try MaintenanceWindowTests.closedBeforeTheSecondWave()
        #expect(UnfinishedRolloutFacts.State(harness.engine.status) == .outsideWindows, "\(harness.engine.status)")
        #expect(UnfinishedRolloutFacts.State(.blocked(reason: "agent a1 unreachable")) == .blocked("agent a1 unreachable"))
        #expect(UnfinishedRolloutFacts.State(.running) == .interrupted)
    }
}
