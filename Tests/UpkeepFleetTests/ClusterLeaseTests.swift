import Foundation
import Synchronization
import Testing
import UpkeepCore
import UpkeepFleet
import UpkeepHTTPServer
import UpkeepKube
import UpkeepRollout
import UpkeepSandbox
import UpkeepSandboxTestSupport

/// The cluster Lease against the sandbox's API over a real socket, with short terms: a 3 s
/// duration, renewed every second, given up after 2 s without a renewal.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct ClusterLeaseTests {
    static let terms = ClusterLease.Terms(durationSeconds: 3, renewDeadlineSeconds: 2, renewIntervalSeconds: 1)

    /// A controller: its own client (1 s per request) and the moments it was told it lost.
    final class Controller: Sendable {
        let lease: ClusterLease
        let client: KubeClient
        let lostReasons = Mutex<[(String, Instant)]>([])

        init(_ api: SandboxAPI, id: String) throws {
            client = try KubeClient(endpoint: api.client.endpoint, requestTimeoutSeconds: 1)
            lease = ClusterLease(client: client, controllerID: id, terms: ClusterLeaseTests.terms, now: { Self.now() })
        }

        static func now() -> Instant { Instant(milliseconds: Int64(Date().timeIntervalSince1970 * 1000)) }

        func acquire(_ operation: String, takeOver: Bool = false, outageAllowed: Bool = false) async throws(ClusterLockError) -> ClusterLockGrant {
            try await lease.acquire(operation: operation, takeOver: takeOver, outageAllowed: outageAllowed) { [self] reason in
                self.lostReasons.withLock { $0.append((reason, Self.now())) }
            }
        }

        var lost: (reason: String, at: Instant)? { lostReasons.withLock { $0.first } }

        func close() async {
            await lease.release()
            await client.shutdown()
        }
    }

    static func leaseSpec(_ api: SandboxAPI) async throws -> CoordinationLease.Spec {
        try await api.client.get(CoordinationLease.self, "upkeep", namespace: "kube-system").spec
    }

    /// Both ask at the same moment, five times over: one holds it each time, the other is told
    /// who; every change of holder is counted in leaseTransitions.
    @Test func ofTwoControllersAskingAtOnceExactlyOneHoldsIt() async throws {
        let api = try await SandboxAPI(spec: ClusterSpec(servers: 1, agents: 0, volumes: 0))
        let a = try Controller(api, id: "ctl-a"), b = try Controller(api, id: "ctl-b")
        for round in 1...5 {
            async let first = capture { () async throws(ClusterLockError) in try await a.acquire("apply a\(round)") }
            async let second = capture { () async throws(ClusterLockError) in try await b.acquire("apply b\(round)") }
            let results = await [("ctl-a (apply a\(round))", first), ("ctl-b (apply b\(round))", second)]
            let winners = results.filter { if case .success = $0.1 { true } else { false } }.map(\.0)
            try #require(winners.count == 1, "round \(round): \(results.map { "\($0.0): \($0.1)" })")
            let winner = winners[0]
            for (name, result) in results where name != winner {
                guard case .failure(.held(let lock, let holder, _, _)) = result else {
                    Issue.record("round \(round): \(name) got \(result)")
                    continue
                }
                #expect(lock == "kube-system/upkeep" && holder == winner)
            }
            let spec = try await Self.leaseSpec(api)
            #expect(spec.holderIdentity == winner && spec.leaseDurationSeconds == 3 && spec.leaseTransitions == round - 1)
            await (winner.hasPrefix("ctl-a") ? a : b).lease.release()
        }
        await a.close()
        await b.close()
        await api.close()
    }

    /// A holder cut off from the API stops counting on the Lease at its renew deadline (2 s), a
    /// second before the Lease lapses (3 s): another controller takes it only after that.
    @Test func aCutOffHolderStopsBeforeAnotherMayTakeItOver() async throws {
        let api = try await SandboxAPI(spec: ClusterSpec(servers: 1, agents: 0, volumes: 0))
        let a = try Controller(api, id: "ctl-a"), b = try Controller(api, id: "ctl-b")
        #expect(try await a.acquire("apply r1") == .held(holder: "ctl-a (apply r1)", tookOverFrom: nil))
        let acquired = try await Self.leaseSpec(api)
        try await Task.sleep(for: .milliseconds(2500))
        let renewed = try await Self.leaseSpec(api)
        #expect((renewed.renewTime ?? 0) > (acquired.renewTime ?? 0) && renewed.acquireTime == acquired.acquireTime, "A renews its Lease")
        #expect(a.lease.isHeld(at: Controller.now()))

        await a.client.shutdown()  // A can no longer reach the API; the Lease stays as A last wrote it
        let lastRenewal = try #require(try await Self.leaseSpec(api).renewTime)
        var taken: Instant?
        while taken == nil {
            do {
                _ = try await b.acquire("apply r2")
                taken = Controller.now()
            } catch {
                guard case .held(_, let holder, _, _) = error else { throw error }
                #expect(holder == "ctl-a (apply r1)")
                try await Task.sleep(for: .milliseconds(100))
            }
            if Controller.now() > Instant(milliseconds: Int64(lastRenewal * 1000)).adding(seconds: 10) { break }
        }
        let takenAt = try #require(taken, "B never took the Lease over")
        let lapse = Instant(milliseconds: Int64(lastRenewal * 1000)).adding(seconds: 3)
        #expect(takenAt >= lapse, "B took the Lease \(lapse.milliseconds - takenAt.milliseconds) ms before it lapsed")
        let lost = try #require(a.lost, "A was never told it lost the Lease")
        #expect(lost.at < takenAt && lost.reason.contains("not renewed for 2 s"), "\(lost)")
        #expect(!a.lease.isHeld(at: Controller.now()))
        let spec = try await Self.leaseSpec(api)
        #expect(spec.holderIdentity == "ctl-b (apply r2)" && spec.leaseTransitions == 1)
        await a.lease.release()
        #expect(try await Self.leaseSpec(api).holderIdentity == "ctl-b (apply r2)", "A's release leaves B's Lease alone")
        await b.close()
        await api.close()
    }

    /// Taken over by force while alive: the holder learns it at its next renewal and lets go.
    @Test func aHolderTakenOverIsToldAtItsNextRenewal() async throws {
        let api = try await SandboxAPI(spec: ClusterSpec(servers: 1, agents: 0, volumes: 0))
        let a = try Controller(api, id: "ctl-a"), b = try Controller(api, id: "ctl-b")
        _ = try await a.acquire("apply r1")
        #expect(try await b.acquire("apply r2", takeOver: true) == .held(holder: "ctl-b (apply r2)", tookOverFrom: "ctl-a (apply r1)"))
        let told = await api.waitUntil(seconds: 5) { a.lost != nil }
        #expect(told && a.lost?.reason == "ctl-b (apply r2) holds it now", "\(String(describing: a.lost))")
        #expect(!a.lease.isHeld(at: Controller.now()) && b.lease.isHeld(at: Controller.now()))
        await a.close()
        #expect(try await Self.leaseSpec(api).holderIdentity == "ctl-b (apply r2)")
        await b.close()
        let released = try await Self.leaseSpec(api)
        #expect(released.holderIdentity == nil && released.leaseDurationSeconds == 1 && released.leaseTransitions == 1)
        await api.close()
    }

    /// While the operation itself keeps the API down nobody can take the Lease, so not reaching
    /// it is no loss; once the outage ends, the renew deadline counts again.
    @Test func anExpectedOutageIsNotALossUntilItEnds() async throws {
        let api = try await SandboxAPI(spec: ClusterSpec(servers: 1, agents: 0, volumes: 0))
        let a = try Controller(api, id: "ctl-a")
        _ = try await a.acquire("restore r1")
        a.lease.expectOutage(true, at: Controller.now())
        await api.server.close()
        try await Task.sleep(for: .milliseconds(3500))
        #expect(a.lost == nil && a.lease.isHeld(at: Controller.now()))
        let ended = Controller.now()
        a.lease.expectOutage(false, at: ended)
        #expect(a.lease.isHeld(at: ended.adding(milliseconds: 1900)) && !a.lease.isHeld(at: ended.adding(seconds: 2)))
        let told = await api.waitUntil(seconds: 5) { a.lost != nil }
        #expect(told && a.lost?.reason.contains("not renewed for 2 s") == true, "\(String(describing: a.lost))")
        await a.close()
        await api.close()
    }

    /// A holder paused past its renew deadline that notices it itself (isHeld, before its
    /// renewal wakes) and gives the Lease back: the loss is counted once all the same.
    @Test func aLapseTheHolderNoticesFirstIsCountedLostOnce() async throws {
        let api = try await SandboxAPI(spec: ClusterSpec(servers: 1, agents: 0, volumes: 0))
        let client = try KubeClient(endpoint: api.client.endpoint, requestTimeoutSeconds: 1)
        let paused = Mutex<Int64>(0), events = Mutex<[ClusterLease.Event]>([])
        let lease = ClusterLease(client: client, controllerID: "ctl-a", terms: Self.terms,
                                 now: { Controller.now().adding(milliseconds: paused.withLock { $0 }) },
                                 record: { event in events.withLock { $0.append(event) } })
        _ = try await lease.acquire(operation: "apply r1", takeOver: false, outageAllowed: false) { _ in }
        // The clock jumps as it does for a process continued after SIGSTOP.
        paused.withLock { $0 = 10_000 }
        #expect(!lease.isHeld(at: Controller.now().adding(milliseconds: 10_000)))
        await lease.release()
        #expect(events.withLock { $0 }.filter { $0 == .lost }.count == 1, "\(events.withLock { $0 })")
        await client.shutdown()
        await api.close()
    }

    /// A recovery starts with the API down: only when allowed does it go on with the local lease alone.
    @Test func anAPIThatDoesNotAnswerRefusesUnlessAnOutageIsAllowed() async throws {
        let api = try await SandboxAPI(spec: ClusterSpec(servers: 1, agents: 0, volumes: 0))
        await api.server.close()
        let a = try Controller(api, id: "ctl-a")
        let refused = await capture { () async throws(ClusterLockError) in try await a.acquire("apply r1") }
        guard case .failure(.unreachable(let lock, _)) = refused else {
            Issue.record("an API that does not answer refuses: \(refused)")
            return
        }
        #expect(lock == "kube-system/upkeep")
        guard case .localOnly = try await a.acquire("recover v1", outageAllowed: true) else {
            Issue.record("an allowed outage grants the local lease alone")
            return
        }
        try await Task.sleep(for: .milliseconds(2500))
        #expect(a.lost == nil && a.lease.isHeld(at: Controller.now()))
        await a.close()
        await api.close()
    }

    /// `abandon` gives back a Lease its controller's killed operation left, and nothing else.
    @Test func aLeftoverOfThisControllerIsGivenBackAndAnothersIsNot() async throws {
        let api = try await SandboxAPI(spec: ClusterSpec(servers: 1, agents: 0, volumes: 0))
        let now = Double(Controller.now().milliseconds) / 1000
        let left = CoordinationLease(namespace: "kube-system", name: "upkeep", spec: CoordinationLease.Spec(
            holderIdentity: "ctl-a (apply r1)", leaseDurationSeconds: 60, acquireTime: now, renewTime: now, leaseTransitions: 2))
        _ = try await api.client.create(left)
        let b = try Controller(api, id: "ctl-b")
        #expect(try await b.lease.releaseLeftover() == nil)
        #expect(try await Self.leaseSpec(api).holderIdentity == "ctl-a (apply r1)")
        let a = try Controller(api, id: "ctl-a")
        #expect(try await a.lease.releaseLeftover() == "ctl-a (apply r1)")
        let spec = try await Self.leaseSpec(api)
        #expect(spec.holderIdentity == nil && spec.leaseTransitions == 2)
        #expect(try await b.acquire("apply r2") == .held(holder: "ctl-b (apply r2)", tookOverFrom: nil))
        await a.close()
        await b.close()
        await api.close()
    }
}

/// How `body` ended, as a value.
func capture<T, E: Error>(_ body: () async throws(E) -> T) async -> Result<T, E> {
    do { return .success(try await body()) } catch { return .failure(error) }
}
