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

    // MARK: - Longhorn and Flux through Git

    static let longhornReleases = ["v1.7.2", "v1.7.3", "v1.8.0", "v1.8.2", "v1.9.0-rc1", "v1.9.1", "v1.10.0", "v2.0.0"].map(v)
    static let fluxReleases = ["v2.4.0", "v2.4.1", "v2.5.1", "v2.6.0-rc.1", "v2.6.2", "v3.0.0"].map(v)

    /// k3s up to date at v1.31.4; Longhorn and Flux at these versions.
    static func gitOpsFacts(longhorn: String? = "v1.7.2", flux: String? = "v2.4.0") -> AutomationFacts {
        var facts = Self.facts(installed: "v1.31.4+k3s1", goal: "v1.31.4+k3s1")
        facts.seen?.gitOps[.longhorn] = longhorn.map { SeenComponent(installed: v($0), releases: longhornReleases) }
        facts.seen?.gitOps[.flux] = flux.map { SeenComponent(installed: v($0), releases: fluxReleases) }
        return facts
    }

    static func policy(k3s: AutomationPolicy.Scope = .minor, longhorn: AutomationPolicy.Scope = .none, flux: AutomationPolicy.Scope = .none,
                       longhornVersion: String? = nil) -> AutomationPolicy {
        AutomationPolicy(k3s: k3s, longhorn: AutomationPolicy.GitOps(scope: longhorn, pinned: longhornVersion.map(v)),
                         flux: AutomationPolicy.GitOps(scope: flux))
    }

    @Test func longhornMinorGoesOneMinorAtATimeAndPatchStaysInItsMinor() {
        let step = { (installed: String, scope: AutomationPolicy.Scope) in
            AutomationDecider.gitOpsTarget(installed: Self.v(installed), releases: Self.longhornReleases, pinned: nil, scope: scope)
        }
        #expect(step("v1.7.2", .minor) == .step(Self.v("v1.8.2")), "v1.7 to v1.8's newest, never v1.9 or v2")
        #expect(step("v1.8.2", .minor) == .step(Self.v("v1.9.1")), "a release candidate is never a step")
        #expect(step("v1.9.1", .minor) == .step(Self.v("v1.10.0")))
        #expect(step("v1.10.0", .minor) == .upToDate, "v2.0.0 is another major: `upkeep update` only")
        #expect(step("v1.7.2", .patch) == .step(Self.v("v1.7.3")))
        #expect(step("v1.7.3", .patch) == .notAllowed(available: Self.v("v1.10.0")))
        #expect(step("v1.7.2", .none) == .notAllowed(available: Self.v("v1.10.0")))
        let gap = AutomationDecider.gitOpsTarget(installed: Self.v("v1.7.3"), releases: ["v1.7.3", "v1.9.1"].map(Self.v), pinned: nil, scope: .minor)
        #expect(gap == .missingMinor(MinorLine(major: 1, minor: 8)), "a minor without a release is not skipped")
        let patchFirst = AutomationDecider.gitOpsTarget(installed: Self.v("v1.7.2"), releases: ["v1.7.3", "v1.9.1"].map(Self.v), pinned: nil, scope: .minor)
        #expect(patchFirst == .step(Self.v("v1.7.3")), "the newest patch of the minor when the next has no release")
    }

    @Test func aGitOpsPinIsACeilingAndNeverADowngrade() {
        let pinned = { (installed: String, pin: String) in
            AutomationDecider.gitOpsTarget(installed: Self.v(installed), releases: Self.longhornReleases, pinned: Self.v(pin), scope: .minor)
        }
        #expect(pinned("v1.7.2", "v1.8.0") == .step(Self.v("v1.8.0")), "not v1.8.2, past the pin")
        #expect(pinned("v1.8.0", "v1.8.0") == .upToDate)
        #expect(pinned("v1.8.2", "v1.8.0") == .ahead(goal: Self.v("v1.8.0")))
        var facts = Self.gitOpsFacts(longhorn: "v1.8.2")
        #expect(AutomationDecider.decide(facts, policy: Self.policy(longhorn: .minor, longhornVersion: "v1.8.0"), now: Self.saturday3)
                == .wait(until: Self.saturday3.adding(seconds: 3540), .updateAhead(.longhorn, installed: Self.v("v1.8.2"), pinned: Self.v("v1.8.0"))))
        facts.seen?.gitOps[.flux] = nil
        #expect(AutomationDecider.decide(facts, policy: Self.policy(longhorn: .minor, longhornVersion: "v1.9.1"), now: Self.saturday3)
                == .update(.longhorn, target: Self.v("v1.9.1")))
    }

    @Test func theOrderIsK3sThenLonghornThenFlux() {
        let all = Self.policy(k3s: .minor, longhorn: .minor, flux: .minor)
        var facts = Self.gitOpsFacts()
        facts.seen?.installed = Self.v("v1.30.5+k3s1")
        #expect(AutomationDecider.decide(facts, policy: all, now: Self.saturday3) == .start(target: Self.v("v1.31.4+k3s1")), "k3s first")
        facts.seen?.installed = Self.v("v1.31.4+k3s1")
        #expect(AutomationDecider.decide(facts, policy: all, now: Self.saturday3) == .update(.longhorn, target: Self.v("v1.8.2")), "then Longhorn")
        facts.seen?.gitOps[.longhorn]?.installed = Self.v("v1.10.0")
        #expect(AutomationDecider.decide(facts, policy: all, now: Self.saturday3) == .update(.flux, target: Self.v("v2.5.1")),
                "then Flux, one minor at a time")
        facts.seen?.gitOps[.flux]?.installed = Self.v("v2.6.2")
        #expect(AutomationDecider.decide(facts, policy: all, now: Self.saturday3)
                == .wait(until: Self.saturday3.adding(seconds: 3540), .upToDate(Self.v("v1.31.4+k3s1"))))
    }

    @Test func aComponentThatMayNotMoveDoesNotHoldTheNextBack() {
        var facts = Self.gitOpsFacts()
        facts.seen?.installed = Self.v("v1.30.5+k3s1")
        let policy = Self.policy(k3s: .patch, longhorn: .none, flux: .patch)
        #expect(AutomationDecider.decide(facts, policy: policy, now: Self.saturday3) == .update(.flux, target: Self.v("v2.4.1")),
                "k3s may not take v1.31, Longhorn may not move: Flux's patch goes")
        facts.failedUpdates = [GitOpsTarget(component: .flux, version: Self.v("v2.4.1")): "u1"]
        #expect(AutomationDecider.decide(facts, policy: policy, now: Self.saturday3)
                == .wait(until: Self.saturday3.adding(seconds: 3540), .notAllowedByPolicy(available: Self.v("v1.31.4+k3s1"), policy: .patch)),
                "the first reason in order is told")
        facts.seen?.installed = Self.v("v1.31.4+k3s1")
        #expect(AutomationDecider.decide(facts, policy: policy, now: Self.saturday3)
                == .wait(until: Self.saturday3.adding(seconds: 3540), .updateNotAllowed(.longhorn, available: Self.v("v1.10.0"), policy: .none)),
                "k3s up to date: Longhorn's reason, not up-to-date")
    }

    @Test func aFailedUpdateIsNotTriedAgainButANewerOneIs() {
        var facts = Self.gitOpsFacts(flux: nil)
        facts.failedUpdates = [GitOpsTarget(component: .longhorn, version: Self.v("v1.8.2")): "u20261207-020000"]
        let policy = Self.policy(longhorn: .minor)
        #expect(AutomationDecider.decide(facts, policy: policy, now: Self.saturday3)
                == .wait(until: Self.saturday3.adding(seconds: 3540), .updateFailedBefore(.longhorn, target: Self.v("v1.8.2"), updateID: "u20261207-020000")))
        facts.seen?.gitOps[.longhorn]?.releases.append(Self.v("v1.8.3"))
        #expect(AutomationDecider.decide(facts, policy: policy, now: Self.saturday3) == .update(.longhorn, target: Self.v("v1.8.3")))
    }

    @Test func anUpdateWaitsForAWindowAndTheLockAndNeverRunsBesideARollout() throws {
        var facts = Self.gitOpsFacts()
        let policy = Self.policy(longhorn: .minor)
        facts.windows = [try MaintenanceWindow("Sat 04:00-06:00")]
        #expect(AutomationDecider.decide(facts, policy: policy, now: Self.saturday3)
                == .wait(until: Self.saturday3.adding(seconds: 3540), .outsideWindowsToUpdate(.longhorn, target: Self.v("v1.8.2"))))
        #expect(WaitReason.outsideWindowsToUpdate(.longhorn, target: Self.v("v1.8.2")).code == "outside-windows")
        #expect(AutomationDecider.decide(facts, policy: policy, now: Self.saturday3.adding(seconds: 3600 + 1))
                == .check, "the check is due first")
        facts.checks.lastSuccessAt = Self.saturday3.adding(seconds: 3600)
        #expect(AutomationDecider.decide(facts, policy: policy, now: Self.saturday3.adding(seconds: 3601)) == .update(.longhorn, target: Self.v("v1.8.2")))
        facts.windows = nil
        let expires = Self.saturday3.adding(seconds: 20)
        facts.lock = .heldElsewhere(holder: "ctl2-9f", expires: expires)
        #expect(AutomationDecider.decide(facts, policy: policy, now: Self.saturday3) == .wait(until: expires, .lockHeld(holder: "ctl2-9f")))
        facts.lock = .free
        facts.unfinished = UnfinishedRolloutFacts(id: "r1", target: Self.v("v1.31.4+k3s1"), state: .blocked("node a1 unhealthy"))
        #expect(AutomationDecider.decide(facts, policy: policy, now: Self.saturday3)
                == .wait(until: Self.saturday3.adding(seconds: 7200), .blocked(rolloutID: "r1", reason: "node a1 unhealthy")),
                "a blocked rollout holds every update (until the check after the one at 04:00)")
        facts.unfinished?.state = .interrupted
        #expect(AutomationDecider.decide(facts, policy: Self.policy(k3s: .none, longhorn: .minor), now: Self.saturday3)
                == .wait(until: Self.saturday3.adding(seconds: 7200), .unfinishedNeedsOperator(rolloutID: "r1")),
                "an unfinished rollout left to an operator holds them too")
    }

    @Test func aReleaseThatNeedsANewerKubernetesWaitsForK3s() {
        var facts = Self.gitOpsFacts(flux: nil)
        facts.seen?.gitOps[.longhorn]?.kubernetesMin = [Self.v("v1.8.2"): MinorLine(major: 1, minor: 32)]
        let policy = Self.policy(k3s: .none, longhorn: .minor)
        #expect(AutomationDecider.decide(facts, policy: policy, now: Self.saturday3)
                == .wait(until: Self.saturday3.adding(seconds: 3540),
                         .updateNeedsKubernetes(.longhorn, target: Self.v("v1.8.2"), needs: MinorLine(major: 1, minor: 32), runs: MinorLine(major: 1, minor: 31))))
        #expect(WaitReason.updateNeedsKubernetes(.longhorn, target: Self.v("v1.8.2"), needs: MinorLine(major: 1, minor: 32),
                                                 runs: MinorLine(major: 1, minor: 31)).code == "kubernetes-too-old")
        facts.seen?.installed = Self.v("v1.32.2+k3s1")
        facts.seen?.goal = Self.v("v1.32.2+k3s1")
        #expect(AutomationDecider.decide(facts, policy: policy, now: Self.saturday3) == .update(.longhorn, target: Self.v("v1.8.2")),
                "once k3s runs v1.32")
    }

    @Test func aK3sMinorTheInstalledLonghornDoesNotSupportWaitsForLonghorn() {
        var facts = Self.facts(installed: "v1.30.5+k3s1", goal: "v1.33.1+k3s1")
        facts.seen?.gitOps[.longhorn] = SeenComponent(installed: Self.v("v1.7.2"), releases: Self.longhornReleases)
        let source = "https://example.test/longhorn-support-matrix"
        facts.seen?.kubernetesSupport[.longhorn] = KubernetesSupport(installed: Self.v("v1.7.2"), minimum: MinorLine(major: 1, minor: 21),
                                                                     maximum: MinorLine(major: 1, minor: 30), source: source)
        let held = AutomationDecider.decide(facts, policy: Self.policy(k3s: .minor), now: Self.saturday3)
        let reason = WaitReason.kubernetesNotSupported(.longhorn, installed: Self.v("v1.7.2"), target: Self.v("v1.31.4+k3s1"),
                                                       supportsUpTo: MinorLine(major: 1, minor: 30), source: source)
        #expect(held == .wait(until: Self.saturday3.adding(seconds: 3540), reason))
        #expect(reason.code == "kubernetes-too-new")
        #expect(reason.description.contains(source) && reason.description.contains("update Longhorn first"), "\(reason)")
        #expect(AutomationDecider.decide(facts, policy: Self.policy(k3s: .minor, longhorn: .minor), now: Self.saturday3)
                == .update(.longhorn, target: Self.v("v1.8.2")), "the held k3s step lets Longhorn's update go first")
        facts.seen?.installed = Self.v("v1.30.2+k3s1")
        #expect(AutomationDecider.decide(facts, policy: Self.policy(k3s: .patch), now: Self.saturday3) == .start(target: Self.v("v1.30.5+k3s1")),
                "a patch within the running minor is not the table's business")
        facts.seen?.kubernetesSupport[.longhorn]?.maximum = MinorLine(major: 1, minor: 31)
        facts.seen?.installed = Self.v("v1.30.5+k3s1")
        #expect(AutomationDecider.decide(facts, policy: Self.policy(k3s: .minor), now: Self.saturday3) == .start(target: Self.v("v1.31.4+k3s1")),
                "once Longhorn supports the next minor")
    }

    @Test func anInterruptedUpdateIsCarriedOnFirstOutsideWindowsOnceItsHolderIsGone() throws {
        // k3s has a step (v1.31 → v1.32) and Flux one too: the interrupted Longhorn update comes first.
        var facts = Self.facts(installed: "v1.31.4+k3s1", goal: "v1.32.2+k3s1")
        facts.seen?.gitOps[.flux] = SeenComponent(installed: Self.v("v2.4.0"), releases: Self.fluxReleases)
        facts.unfinishedUpdate = UnfinishedUpdateFacts(id: "u20261128-020000", component: .longhorn, target: Self.v("v1.8.0"))
        facts.windows = [try MaintenanceWindow("Sat 04:00-06:00")]
        let all = Self.policy(k3s: .minor, longhorn: .minor, flux: .minor)
        #expect(AutomationDecider.decide(facts, policy: all, now: Self.saturday3) == .update(.longhorn, target: Self.v("v1.8.0")),
                "carried on although the window is closed and k3s has a step: started inside a window, it runs to its end")
        // Its process may still drive it, or stopped less than a lease ago: nothing starts beside it.
        let expires = Self.saturday3.adding(seconds: 25)
        facts.lock = .heldElsewhere(holder: "ctl1 pid 4242", expires: expires)
        #expect(AutomationDecider.decide(facts, policy: all, now: Self.saturday3) == .wait(until: expires, .lockHeld(holder: "ctl1 pid 4242")))
        facts.lock = .free
        // A check due comes first, as for an unfinished rollout.
        #expect(AutomationDecider.decide(facts, policy: all, now: Self.saturday3.adding(seconds: 3601)) == .check)
        // With automation.longhorn: none it is left to `upkeep update`, and holds everything else.
        let reason = WaitReason.updateUnfinishedNeedsOperator(.longhorn, target: Self.v("v1.8.0"), updateID: "u20261128-020000")
        #expect(AutomationDecider.decide(facts, policy: Self.policy(k3s: .minor, longhorn: .none, flux: .minor), now: Self.saturday3)
                == .wait(until: Self.saturday3.adding(seconds: 3540), reason))
        #expect(reason.code == "unfinished" && reason.description.contains("upkeep update --component longhorn --to v1.8.0"))
        // An unfinished rollout still comes before it.
        facts.unfinished = UnfinishedRolloutFacts(id: "r1", target: Self.v("v1.32.2+k3s1"), state: .interrupted)
        facts.windows = nil
        #expect(AutomationDecider.decide(facts, policy: all, now: Self.saturday3) == .resume(rolloutID: "r1"))
    }

    @Test func k3sReleasesUnreadHoldK3sButNotLonghorn() {
        var facts = Self.gitOpsFacts(flux: nil)
        facts.seen?.k3sUnread = "cannot read k3s releases: invalid JSON"
        facts.seen?.goal = Self.v("v1.32.2+k3s1")  // would be a step if k3s's part were read
        facts.checks.failures = 1
        facts.checks.lastFailureAt = Self.saturday3.adding(seconds: -10)
        let policy = Self.policy(k3s: .minor, longhorn: .minor)
        #expect(AutomationDecider.decide(facts, policy: policy, now: Self.saturday3) == .update(.longhorn, target: Self.v("v1.8.2")))
        facts.seen?.gitOps = [:]
        #expect(AutomationDecider.decide(facts, policy: policy, now: Self.saturday3)
                == .wait(until: Self.saturday3.adding(seconds: 20), .checkFailing(failures: 1, lastError: "cannot read k3s releases: invalid JSON")))
    }
}
