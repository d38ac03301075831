import Testing
import UpkeepRollout
import UpkeepCore

/// The configured gates before every forward wave, the canary soak and the drain options, as
/// the engine decides them from the reports it is handed.
@Suite struct GateEngineTests {
    static let inventory = ClusterInventory(
        nodes: [server("server-1", "v1.31.0+k3s1"), server("server-2", "v1.31.0+k3s1"), server("server-3", "v1.31.0+k3s1"),
                agent("agent-1", "v1.31.0+k3s1"), agent("agent-2", "v1.31.0+k3s1")],
        volumes: [])
    static let healthyEtcd = EtcdReading.members(["server-1", "server-2", "server-3"].map { (node: String) in
        EtcdMemberHealth(name: "\(node)-0a1b2c3d", node: node, healthy: true)
    }, askedNode: "server-1")
    static let clear = GateReport(prometheus: .firing([]), blockingPods: .pods([]), etcd: healthyEtcd)

    static func harness(kinds: [GateKind] = [.prometheus, .blockingPods, .etcd], holdSeconds: Int = 3600, canaries: Int = 0, soak: Int = 0,
                        passWhenUnreachable: Bool = false, drain: DrainPolicy? = nil) throws -> EngineHarness {
        let plan = try Planner.plan(inventory: inventory, target: v("v1.31.4+k3s1"), available: offered,
                                    policy: PlanPolicy(agentConcurrency: 1, canaryAgents: canaries, canarySoakSeconds: soak))
        let policy = RolloutPolicy(pollIntervalMilliseconds: 1000,
                                   gates: GatePolicy(kinds: kinds, holdTimeoutSeconds: holdSeconds,
                                                     passWhenPrometheusUnreachable: passWhenUnreachable),
                                   drain: drain)
        var harness = try EngineHarness(plan: plan, inventory: inventory, policy: policy)
        harness.gates = clear
        return harness
    }

    /// Nodes asked to cordon, in order.
    static func cordoned(_ harness: EngineHarness) -> [String] {
        harness.sentRequests.filter { $0.command == .cordon }.map(\.node)
    }

    @Test func aFiringAlertHoldsTheFirstWaveUntilItClears() throws {
        var harness = try Self.harness()
        harness.gates?.prometheus = .firing(["KubeNodeNotReady", "HighErrorRate", "KubeNodeNotReady"])
        harness.handle(.start)
        for _ in 0..<30 {
            harness.advance(seconds: 1)
            harness.observe()
            harness.handle(.tick)
        }
        #expect(Self.cordoned(harness).isEmpty, "nothing is touched while a gate holds")
        #expect(harness.gateQuestions.first?.kinds == [.prometheus, .blockingPods, .etcd])
        #expect(harness.gateQuestions.first?.etcdNodes == ["server-1", "server-2", "server-3"])
        let hold = try #require(harness.engine.gateHold)
        #expect(hold.wave == "hop 1 s1" && !hold.blocked && hold.holds == [GateHold(.prometheus, "alerts firing: HighErrorRate, KubeNodeNotReady")])
        #expect(hold.blocksAt == hold.since.adding(seconds: 3600))
        let said = harness.notices.filter { $0.contains("held by the gates") }
        #expect(said.count == 1, "said once, not at every read: \(said)")
        #expect(said.first?.hasPrefix("hop 1 s1: held by the gates: prometheus: alerts firing: HighErrorRate, KubeNodeNotReady; waiting until ") == true)
        // The alert clears: the gate passes and the rollout runs to its end.
        harness.gates?.prometheus = .firing([])
        harness.runHealthy()
        #expect(harness.outcome == .completed)
        #expect(harness.notices.contains { $0.hasPrefix("hop 1 s1: the gates no longer hold it (held ") })
        #expect(harness.engine.gateHold == nil)
    }

    @Test func aHoldPastItsTimeoutBlocksWithTheReasonAndResumeReadsAgain() throws {
        var harness = try Self.harness(holdSeconds: 60)
        harness.gates?.prometheus = .firing(["Watchdog"])
        harness.handle(.start)
        for _ in 0..<70 where !harness.isBlocked {
            harness.advance(seconds: 1)
            harness.observe()
            harness.handle(.tick)
        }
        guard case .blocked(let reason) = harness.engine.status else {
            Issue.record("expected blocked, got \(harness.engine.status)")
            return
        }
        #expect(reason == "hop 1 s1: held by the gates for 60 s (gates.holdTimeout): prometheus: alert firing: Watchdog; `upkeep resume` once it clears")
        #expect(harness.engine.gateHold?.blocked == true)
        #expect(Self.cordoned(harness).isEmpty)
        harness.gates?.prometheus = .firing([])
        harness.handle(.resume)
        harness.runHealthy()
        #expect(harness.outcome == .completed)
    }

    @Test func aReminderIsSaidEveryFiveMinutesWhileTheReasonStaysTheSame() throws {
        var harness = try Self.harness()
        harness.gates?.etcd = .members([EtcdMemberHealth(name: "server-1-0a1b2c3d", node: "server-1", healthy: true),
                                        EtcdMemberHealth(name: "server-2-0a1b2c3d", node: "server-2", healthy: false, message: "no answer within 2 s"),
                                        EtcdMemberHealth(name: "server-3-0a1b2c3d", node: "server-3", healthy: true)], askedNode: "server-1")
        harness.handle(.start)
        for _ in 0..<660 {
            harness.advance(seconds: 1)
            harness.observe()
            harness.handle(.tick)
        }
        let said = harness.notices.filter { $0.contains("held by the gates") }
        #expect(said.count == 3, "at 0, 300 and 600 s: \(said.count)")
        #expect(said.first?.contains("etcd: member not healthy: server-2-0a1b2c3d (server-2): no answer within 2 s; 2 of 3 members healthy (asked server-1)") == true)
    }

    @Test func anUnreachablePrometheusHoldsUnlessConfiguredToPass() throws {
        for passes in [false, true] {
            var harness = try Self.harness(kinds: [.prometheus], passWhenUnreachable: passes)
            harness.gates = GateReport(prometheus: .unreachable("connection refused"))
            harness.handle(.start)
            harness.runHealthy(rounds: 60)
            if passes {
                #expect(harness.outcome == .completed)
            } else {
                #expect(Self.cordoned(harness).isEmpty)
                #expect(harness.engine.gateHold?.holds.first?.reason
                        == "cannot read the alerts (connection refused); an unreachable Prometheus holds (gates.prometheus.whenUnreachable: hold)")
            }
        }
    }

    @Test func aPodBlockingItsNodeHoldsOnlyTheWaveThatTakesThatNodeDown() throws {
        var harness = try Self.harness(kinds: [.blockingPods])
        harness.gates = GateReport(blockingPods: .pods([BlockingPod(namespace: "db", name: "backup-7f", node: "agent-2", selector: "app=backup",
                                                                    scope: .node)]))
        harness.handle(.start)
        harness.runHealthy(rounds: 200)
        #expect(harness.outcome == nil)
        #expect(Self.cordoned(harness) == ["server-1", "server-2", "server-3", "agent-1"])
        #expect(harness.engine.gateHold?.holds == [GateHold(.blockingPods, "running on a node about to go: db/backup-7f on agent-2 (app=backup)")])
        harness.gates = GateReport(blockingPods: .pods([]))
        harness.runHealthy()
        #expect(harness.outcome == .completed)
    }

    @Test func aPodBlockingAnywhereHoldsEveryWave() throws {
        var harness = try Self.harness(kinds: [.blockingPods])
        harness.gates = GateReport(blockingPods: .pods([BlockingPod(namespace: "ops", name: "migrate", node: nil, selector: "upkeep.io/block",
                                                                    scope: .anywhere)]))
        harness.handle(.start)
        harness.runHealthy(rounds: 50)
        #expect(Self.cordoned(harness).isEmpty)
        #expect(harness.engine.gateHold?.holds.first?.reason == "running: ops/migrate (upkeep.io/block)")
    }

    @Test func etcdWithoutQuorumOrUnknownHolds() throws {
        let members = ["server-1", "server-2", "server-3"].enumerated().map { (index: Int, node: String) in
            EtcdMemberHealth(name: "\(node)-0a1b2c3d", node: node, healthy: index == 0)
        }
        let cases: [(EtcdReading, String)] = [
            (.members(members, askedNode: "server-1"), "no quorum: 1 of 3 members healthy (asked server-1)"),
            (.unknown("server-1: connection refused; server-2: unknownMethod"), "health unknown: server-1: connection refused; server-2: unknownMethod"),
        ]
        for (reading, reason) in cases {
            var harness = try Self.harness(kinds: [.etcd])
            harness.gates = GateReport(etcd: reading)
            harness.handle(.start)
            harness.runHealthy(rounds: 30)
            #expect(harness.engine.gateHold?.holds == [GateHold(.etcd, reason)])
        }
        // No embedded etcd: nothing to hold on.
        var sqlite = try Self.harness(kinds: [.etcd])
        sqlite.gates = GateReport(etcd: .noEmbeddedEtcd)
        sqlite.handle(.start)
        sqlite.runHealthy()
        #expect(sqlite.outcome == .completed)
    }

    @Test func aRollbackIsNeverHeldByTheGates() throws {
        var harness = try Self.harness(kinds: [.prometheus])
        harness.handle(.start)
        // agent-2's install fails once every server and agent-1 are done; then the alert fires.
        harness.runHealthy(failInstallOn: ["agent-2"], until: { $0.sentRequests.contains { $0.node == "agent-2" && $0.command.name == "install" } })
        harness.gates = GateReport(prometheus: .firing(["KubePodCrashLooping"]))
        harness.runHealthy(failInstallOn: ["agent-2"])
        guard case .rolledBack = harness.outcome else {
            Issue.record("expected rolled back, got \(String(describing: harness.outcome)) \(harness.engine.status)")
            return
        }
    }

    @Test func theRestWaitsForTheCanarySoakThenItsGates() throws {
        var harness = try Self.harness(kinds: [.prometheus], canaries: 1, soak: 600)
        harness.handle(.start)
        harness.runHealthy(until: { $0.notices.contains { $0.hasPrefix("canaries done") } })
        #expect(harness.notices.contains { $0.hasPrefix("canaries done (agent-1): soaking 600 s until ") })
        let soakStarted = harness.now
        harness.runHealthy(rounds: 590)
        #expect(Self.cordoned(harness) == ["server-1", "server-2", "server-3", "agent-1"], "agent-2 waits for the soak")
        let readsDuringSoak = harness.gateQuestions.count
        harness.runHealthy()
        #expect(harness.outcome == .completed)
        #expect(Self.cordoned(harness).last == "agent-2")
        #expect(harness.now.milliseconds(since: soakStarted) >= 600_000)
        #expect(harness.gateQuestions.count > readsDuringSoak, "the gates are read again once the soak is over")
        #expect(harness.notices.contains("hop 1 w1: the canary soak is over; checking the gates for the rest"))
        #expect(harness.engine.progress.map(\.wave).contains("hop 1 c1"))
    }

    @Test func theDrainOptionsGoWithEveryDrain() throws {
        let drain = DrainPolicy(gracePeriodSeconds: 30, podSelector: "app!=cache", deleteEmptyDirData: true, skipWaitForDeleteTimeoutSeconds: 20,
                                disableEviction: true)
        var harness = try Self.harness(kinds: [], drain: drain)
        harness.handle(.start)
        harness.runHealthy()
        #expect(harness.outcome == .completed)
        let drains = harness.sentRequests.filter { $0.command.name == "drain" }.map(\.command)
        #expect(drains.count == 5 && drains.allSatisfy { $0 == .drain(timeoutSeconds: 900, options: drain) })
    }
}
