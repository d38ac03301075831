import Testing
import UpkeepCore
import UpkeepFleet
import UpkeepKube

/// Who may hold the cluster Lease, decided from the Lease as read and the moment (no I/O).
@Suite struct LeaseElectionTests {
    static let me = LeaseElection.Candidate(controllerID: "ctl-a-0000000a", operation: "apply r2")
    static let t0 = Instant.seconds(1_800_000_000)

    static func spec(_ holder: String?, renewed: Instant?, duration: Int? = 60, transitions: Int = 3) -> CoordinationLease.Spec {
        CoordinationLease.Spec(holderIdentity: holder, leaseDurationSeconds: duration, acquireTime: renewed.map(seconds),
                               renewTime: renewed.map(seconds), leaseTransitions: transitions)
    }

    static func seconds(_ instant: Instant) -> Double { Double(instant.milliseconds) / 1000 }

    @Test func noLeaseIsCreatedWithNoTransitions() {
        let decision = LeaseElection.decide(nil, candidate: Self.me, durationSeconds: 60, now: Self.t0, takeOver: false)
        #expect(decision == .create(Self.spec("ctl-a-0000000a (apply r2)", renewed: Self.t0, transitions: 0)))
    }

    @Test func ourOwnLeaseIsRenewedKeepingItsAcquireTimeAndTransitions() {
        var held = Self.spec(Self.me.holderIdentity, renewed: Self.t0)
        held.acquireTime = Self.seconds(Self.t0.adding(seconds: -300))
        let now = Self.t0.adding(seconds: 5)
        guard case .update(let renewed, nil) = LeaseElection.decide(held, candidate: Self.me, durationSeconds: 60, now: now, takeOver: false) else {
            Issue.record("a renewal writes an update")
            return
        }
        #expect(renewed.holderIdentity == Self.me.holderIdentity && renewed.renewTime == Self.seconds(now))
        #expect(renewed.acquireTime == held.acquireTime && renewed.leaseTransitions == 3)
    }

    /// client-go's rule: a Lease lapses once renewTime + leaseDurationSeconds has passed.
    @Test func anotherHoldersLeaseBindsUntilItsDurationPassesThenIsTakenOver() {
        let other = Self.spec("ctl-b-0000000b (apply r1)", renewed: Self.t0, duration: 30)
        let during = LeaseElection.decide(other, candidate: Self.me, durationSeconds: 60, now: Self.t0.adding(milliseconds: 29_999), takeOver: false)
        #expect(during == .held(by: "ctl-b-0000000b (apply r1)", renewedAt: Self.t0, expiresAt: Self.t0.adding(seconds: 30)))
        let after = Self.t0.adding(seconds: 30)
        let decision = LeaseElection.decide(other, candidate: Self.me, durationSeconds: 60, now: after, takeOver: false)
        #expect(decision == .update(Self.spec(Self.me.holderIdentity, renewed: after, transitions: 4), takingOverFrom: "ctl-b-0000000b (apply r1)"))
    }

    @Test func takeOverTakesALiveLeaseAndCountsATransition() {
        let other = Self.spec("ctl-b-0000000b (apply r1)", renewed: Self.t0)
        let decision = LeaseElection.decide(other, candidate: Self.me, durationSeconds: 60, now: Self.t0, takeOver: true)
        #expect(decision == .update(Self.spec(Self.me.holderIdentity, renewed: Self.t0, transitions: 4), takingOverFrom: "ctl-b-0000000b (apply r1)"))
    }

    /// The state directory's lease keeps a second process of one controller out, so a live Lease
    /// naming this controller's other operation (a crash, a restored datastore) is its own.
    @Test func thisControllersEarlierOperationIsTakenAtOnce() {
        let earlier = Self.spec("ctl-a-0000000a (apply r1)", renewed: Self.t0)
        let decision = LeaseElection.decide(earlier, candidate: Self.me, durationSeconds: 60, now: Self.t0.adding(seconds: 1), takeOver: false)
        #expect(decision == .update(Self.spec(Self.me.holderIdentity, renewed: Self.t0.adding(seconds: 1), transitions: 4),
                                    takingOverFrom: "ctl-a-0000000a (apply r1)"))
        // A longer id that merely starts the same is another controller.
        let lookalike = Self.spec("ctl-a-0000000a1 (apply r1)", renewed: Self.t0)
        #expect(LeaseElection.decide(lookalike, candidate: Self.me, durationSeconds: 60, now: Self.t0, takeOver: false)
            == .held(by: "ctl-a-0000000a1 (apply r1)", renewedAt: Self.t0, expiresAt: Self.t0.adding(seconds: 60)))
    }

    @Test func aReleasedLeaseIsFreeAndItsTransitionsGoOn() {
        let released = LeaseElection.released(Self.spec("ctl-b-0000000b (apply r1)", renewed: Self.t0), now: Self.t0.adding(seconds: 1))
        #expect(released.holderIdentity == nil && released.leaseDurationSeconds == 1 && released.leaseTransitions == 3)
        #expect(!LeaseElection.isLive(released, at: Self.t0))
        let decision = LeaseElection.decide(released, candidate: Self.me, durationSeconds: 60, now: Self.t0.adding(seconds: 1), takeOver: false)
        #expect(decision == .update(Self.spec(Self.me.holderIdentity, renewed: Self.t0.adding(seconds: 1), transitions: 4), takingOverFrom: nil))
    }

    @Test func aLeaseWithoutTimesOrDurationNeverBinds() {
        for spec in [Self.spec("ctl-b-0000000b (x)", renewed: nil), Self.spec("ctl-b-0000000b (x)", renewed: Self.t0, duration: nil)] {
            #expect(LeaseElection.expiry(of: spec) == nil && !LeaseElection.isLive(spec, at: Self.t0))
            guard case .update(_, "ctl-b-0000000b (x)") = LeaseElection.decide(spec, candidate: Self.me, durationSeconds: 60, now: Self.t0,
                                                                               takeOver: false) else {
                Issue.record("\(spec) should be taken over")
                continue
            }
        }
    }

    @Test func theControllerIDIsTheHolderIdentityUpToItsFirstSpace() {
        #expect(LeaseElection.Candidate.controllerID(of: "ctl-a-0000000a (apply r2)") == "ctl-a-0000000a")
        #expect(LeaseElection.Candidate.controllerID(of: "kube-controller-manager_4f1c") == "kube-controller-manager_4f1c")
    }
}
