import Foundation
import Testing
import UpkeepRollout
import UpkeepCore

/// Snapshots per hop, the rollback rule (one hop at most; a hop that raised the servers' minor
/// goes back only by a restore) and the restore procedure, driven event by event.
@Suite struct RestoreEngineTests {
    static let old = "v1.30.6+k3s1"
    static let new = "v1.31.4+k3s1"
    static let inventory = ClusterInventory(nodes: [server("server-1", old), server("server-2", old), server("server-3", old),
                                                    agent("agent-1", old), agent("agent-2", old)])

    static func plan(_ inventory: ClusterInventory = inventory, to target: String = new) throws -> Plan {
        try Planner.plan(inventory: inventory, target: v(target), available: offered, policy: PlanPolicy(agentConcurrency: 1))
    }

    static func policy(_ autoRollback: AutoRollback = .binaries, snapshots: Bool = true, verifyTimeoutSeconds: Int = 300) -> RolloutPolicy {
        RolloutPolicy(verifyTimeoutSeconds: verifyTimeoutSeconds, pollIntervalMilliseconds: 1000, autoRollback: autoRollback,
                      takesHopSnapshots: snapshots)
    }

    static func blocked(_ harness: EngineHarness) -> Bool { harness.isBlocked }

    /// The cause of a rolled-back outcome; records an issue for any other.
    static func rolledBackCause(_ harness: EngineHarness, sourceLocation: SourceLocation = #_sourceLocation) -> String? {
        guard case .rolledBack(let cause) = harness.outcome else {
            Issue.record("expected rolledBack, got \(String(describing: harness.outcome))", sourceLocation: sourceLocation)
            return nil
        }
        return cause
    }

    /// The reason of a block; records an issue for any other status.
    static func blockReason(_ harness: EngineHarness, sourceLocation: SourceLocation = #_sourceLocation) -> String? {
        guard case .blocked(let reason) = harness.engine.status else {
            Issue.record("expected blocked, got \(harness.engine.status)", sourceLocation: sourceLocation)
            return nil
        }
        return reason
    }

    /// server-2's new k3s fails after server-1 was healthy at v1.31: the default policy blocks.
    static func blockedAfterServer1WasHealthy() throws -> EngineHarness {
        var harness = try EngineHarness(plan: plan(), inventory: inventory, policy: policy())
        harness.handle(.start)
        harness.observe()
        harness.runHealthy(failInstallOn: ["server-2"], until: blocked)
        return harness
    }

    static func commands(_ requests: [AgentRequest]) -> [String] { requests.map { "\($0.command.name) \($0.node)" } }

    @Test func aBackupIsTakenBeforeTheFirstServerOfEveryHop() throws {
        let inventory = ClusterInventory(nodes: [server("server-1", "v1.29.9+k3s1"), server("server-2", "v1.29.9+k3s1"),
                                                 agent("agent-1", "v1.29.9+k3s1")])
        let plan = try Self.plan(inventory)
        #expect(plan.hops.map(\.rollbackKind) == [.restore, .restore])
        var harness = try EngineHarness(plan: plan, inventory: inventory, policy: Self.policy())
        harness.handle(.start)
        harness.observe()
        harness.runHealthy()
        #expect(harness.outcome == .completed)
        let sent = harness.sentRequests
        let backups = sent.filter { $0.command.name == "backup" }
        #expect(backups.map(\.operationID) == ["r1:h1:backup:1", "r1:h2:backup:1"])
        #expect(backups.map(\.command) == [.backup(backupID: "r1-h1", hop: 1, version: v("v1.29.9+k3s1")),
                                           .backup(backupID: "r1-h2", hop: 2, version: plan.hops[0].version)])
        // Each before its hop's first cordon, and after the previous hop's last commit.
        let names = Self.commands(sent)
        let firstCordon = try #require(names.firstIndex(of: "cordon server-1"))
        #expect(try #require(names.firstIndex(of: "backup server-1")) < firstCordon)
        let second = try #require(names.lastIndex(of: "backup server-1"))
        #expect(names[..<second].filter { $0.hasPrefix("commit") } == ["commit server-1", "commit server-2"])
        #expect(harness.notices.contains("server-1: hop 1: datastore backup r1-h1 taken at v1.29.9+k3s1"))
    }

    @Test func aBackupThatFailsBlocksBeforeTheHopTouchesAnythingAndResumeAsksAgain() throws {
        var harness = try EngineHarness(plan: Self.plan(), inventory: Self.inventory, policy: Self.policy())
        harness.handle(.start)
        harness.observe()
        let backup = try #require(harness.engine.unansweredRequests.first { $0.command.name == "backup" })
        harness.handle(.replied(operationID: backup.operationID, .refused(code: "insufficientSpace", message: "no room for the snapshot")))
        guard let reason = Self.blockReason(harness) else { return }
        #expect(reason.contains("hop 1: the datastore backup before its first server failed on server-1: insufficientSpace: no room"))
        #expect(!harness.sentRequests.contains { $0.command == .cordon })
        let resumed = harness.handle(.resume)
        #expect(EngineHarness.sent(resumed).map(\.operationID).contains("r1:h1:backup:2"))
        harness.runHealthy()
        #expect(harness.outcome == .completed)
    }

    @Test func theDefaultPolicyStopsBlockedNamingBothWaysOutOnceAServerRanTheNewMinor() throws {
        let harness = try Self.blockedAfterServer1WasHealthy()
        guard let reason = Self.blockReason(harness) else { return }
        #expect(reason.hasPrefix("hop 1 failed: v1.31.4+k3s1 did not become healthy on server-2"))
        #expect(reason.contains("server-1 ran v1.31 healthy, so the datastore is written at that minor"))
        #expect(reason.contains("`upkeep rollback --restore` to restore backup r1-h1, taken Thu 1970-01-01 00:00 UTC on server-1 at v1.30.6+k3s1"))
        #expect(reason.contains("every object written to the cluster since then is lost"))
        #expect(reason.hasSuffix("or fix the cause and run `upkeep resume` to carry the upgrade forward"))
        // No binary went back: server-1 still runs v1.31.
        #expect(!harness.sentRequests.contains { $0.command.name == "rollback" || $0.command == .install(version: v(Self.old), healthTimeoutSeconds: 300, watchdogTimeoutSeconds: 3600) })
        #expect(harness.runningVersion("server-1") == v(Self.new))
        #expect(harness.engine.restoreChoice == .ready(hop: 1, snapshot: RestoreSnapshot(backupID: "r1-h1", version: v(Self.old),
                                                                                          takenAt: Instant(milliseconds: 1000), node: "server-1")))
    }

    @Test func resumeFromThatBlockCarriesTheUpgradeForward() throws {
        var harness = try Self.blockedAfterServer1WasHealthy()
        harness.handle(.resume)
        harness.observe()
        harness.runHealthy()
        #expect(harness.outcome == .completed)
        #expect(harness.sentRequests.contains { $0.operationID == "r1:f1:install:2" })
    }

    /// An agent fails after the only server ran the new minor: blocked; once fixed, `resume`
    /// installs it again and the rollout completes (the servers never went back).
    @Test func anAgentFailingAfterTheServerRanTheNewMinorIsRetriedByResume() throws {
        let small = ClusterInventory(nodes: [server("server-1", Self.old), agent("agent-1", Self.old), agent("agent-2", Self.old)])
        var harness = try EngineHarness(plan: Self.plan(small), inventory: small, policy: Self.policy())
        harness.handle(.start)
        harness.observe()
        harness.runHealthy(failInstallOn: ["agent-1"], until: Self.blocked)
        guard Self.blockReason(harness) != nil else { return }
        harness.handle(.resume)
        harness.observe()
        harness.runHealthy()
        #expect(harness.outcome == .completed, "\(harness.engine.status) \(harness.notices.suffix(5))")
        #expect(harness.runningVersion("agent-1") == v(Self.new))
    }

    @Test func rollbackRestoreRunsTheDocumentedProcedureInOrder() throws {
        var harness = try Self.blockedAfterServer1WasHealthy()
        let before = harness.sentRequests.count
        harness.handle(.restore)
        harness.observe()
        harness.runHealthy()
        guard let cause = Self.rolledBackCause(harness) else { return }
        #expect(cause.contains("hop 1 undone by restoring datastore backup r1-h1"))
        #expect(harness.engine.restoreWasRequested, "the operator asked for this restore: its end is the command's success")
        for node in Self.inventory.nodes { #expect(harness.runningVersion(node.name) == v(Self.old), "\(node.name)") }
        let steps = Self.commands(Array(harness.sentRequests.dropFirst(before)))
        let index = { (step: String) in steps.firstIndex(of: step) ?? -1 }
        let lastIndex = { (step: String) in steps.lastIndex(of: step) ?? -1 }
        // Everything staged and the backup received before anything stops.
        let firstStop = steps.firstIndex { $0.hasPrefix("stopK3s") } ?? -1
        #expect(firstStop > 0)
        for step in ["stage server-1", "stage server-2", "stage server-3", "restoreBackup server-1", "drain agent-2"] {
            #expect((0..<firstStop).contains(index(step)), "\(step) before the first stop: \(steps)")
        }
        #expect(!steps.contains("restoreBackup server-2"))
        for server in ["server-1", "server-2", "server-3"] { #expect(index("stopK3s \(server)") < index("restore server-1")) }
        #expect(index("restore server-1") < index("rejoin server-2") && index("rejoin server-2") < index("rejoin server-3"))
        #expect(!steps.contains("rejoin server-1"))
        #expect(lastIndex("uncordon agent-2") > index("rejoin server-3"))
        #expect(steps.filter { $0.hasPrefix("uncordon") }.count == 5)
        #expect(harness.engine.cordonedByUpkeep.isEmpty && harness.engine.openWatches.isEmpty)
        // Every node's drain is bounded by the restore's own short limit, not the rollout's.
        let drains = harness.sentRequests.dropFirst(before).filter { $0.command.name == "drain" }.map(\.command)
        #expect(!drains.isEmpty && drains.allSatisfy { $0 == .drain(timeoutSeconds: RolloutPolicy.restoreDrainTimeoutDefault) }
                && RolloutPolicy.restoreDrainTimeoutDefault < harness.engine.policy.drainTimeoutSeconds, "\(drains)")
        // Restore ids name the restore and the member.
        #expect(harness.sentRequests.contains { $0.operationID == "r1:x1.0:restore:1" })
        // The hop is undone: nothing further back has a snapshot.
        #expect(harness.engine.restoreChoice == .refused("rollout r1 has no hop left to undo: no node of it runs a version it installed"))
    }

    @Test func underTheRestorePolicyAFailedAgentLeadsToARestoreThatReturnsTheHopsAgents() throws {
        var harness = try EngineHarness(plan: Self.plan(), inventory: Self.inventory, policy: Self.policy(.restore))
        harness.handle(.start)
        harness.observe()
        harness.runHealthy(failInstallOn: ["agent-2"])
        guard let cause = Self.rolledBackCause(harness) else { return }
        #expect(cause.hasPrefix("hop 1 failed: v1.31.4+k3s1 did not become healthy on agent-2"))
        #expect(cause.contains("undone by restoring datastore backup r1-h1"))
        #expect(!harness.engine.restoreWasRequested, "a restore after a failure is the rollout failing")
        for node in Self.inventory.nodes { #expect(harness.runningVersion(node.name) == v(Self.old), "\(node.name)") }
        // agent-1 (installed) gets its kept binary back; agent-2 (reverted by its agent) is only drained.
        let rollbacks = harness.sentRequests.filter { $0.command.name == "rollback" }.map(\.node)
        #expect(rollbacks == ["agent-1"])
        #expect(harness.notices.contains { $0.hasPrefix("restoring datastore backup r1-h1") && $0.hasSuffix("every object written to the cluster since then is lost") })
    }

    @Test(arguments: [2, 5, 9, 13, 17])
    func aRestoreResumesWhereItWasAfterTheControllerDies(answered: Int) throws {
        var harness = try Self.blockedAfterServer1WasHealthy()
        harness.handle(.restore)
        harness.observe()
        var count = 0
        while count < answered, let request = harness.engine.unansweredRequests.first {
            harness.answer(request)
            count += 1
        }
        let unanswered = harness.engine.unansweredRequests
        #expect(!unanswered.isEmpty)
        harness.engine = try JSONDecoder().decode(RolloutEngine.self, from: JSONEncoder().encode(harness.engine))
        let resumed = harness.handle(.resume)
        #expect(EngineHarness.sent(resumed) == unanswered, "the same operation ids again")
        harness.runHealthy()
        guard Self.rolledBackCause(harness) != nil else { return }
        for node in Self.inventory.nodes { #expect(harness.runningVersion(node.name) == v(Self.old), "\(node.name)") }
    }

    @Test func aRestoreStepInterruptedByAnAgentRestartIsSentAgainUnderTheNextAttempt() throws {
        var harness = try Self.blockedAfterServer1WasHealthy()
        harness.handle(.restore)
        harness.observe()
        harness.runHealthy(until: { $0.engine.unansweredRequests.contains { $0.command.name == "restore" } })
        let restore = try #require(harness.engine.unansweredRequests.first { $0.command.name == "restore" })
        #expect(restore.operationID == "r1:x1.0:restore:1")
        harness.handle(.replied(operationID: restore.operationID, .refused(code: AgentReply.interruptedCode, message: "the agent restarted during this restore")))
        #expect(harness.engine.unansweredRequests.map(\.operationID) == ["r1:x1.0:restore:2"])
        harness.runHealthy()
        guard Self.rolledBackCause(harness) != nil else { return }
    }

    @Test func aRestoreStepThatFailsBlocksAndResumeRedoesItAfterStreamingTheBackupAgain() throws {
        var harness = try Self.blockedAfterServer1WasHealthy()
        harness.handle(.restore)
        harness.observe()
        harness.runHealthy(until: { $0.engine.unansweredRequests.contains { $0.command.name == "restore" } })
        let restore = try #require(harness.engine.unansweredRequests.first { $0.command.name == "restore" })
        harness.handle(.replied(operationID: restore.operationID, .restored(version: v(Self.old), healthy: false, message: "apiserver: connection refused")))
        guard let reason = Self.blockReason(harness) else { return }
        #expect(reason.contains("restored backup r1-h1, but k3s v1.30.6+k3s1 is not healthy: apiserver: connection refused"))
        #expect(reason.contains("`upkeep resume` to carry the restore on"))
        #expect(harness.engine.restoreChoice == .refused("a restore of rollout r1 is under way; `upkeep resume` carries it on"))
        let resumed = EngineHarness.sent(harness.handle(.resume)).map(\.operationID)
        #expect(resumed == ["r1:x1.0:restoreBackup:2"])
        harness.runHealthy()
        #expect(harness.sentRequests.contains { $0.operationID == "r1:x1.0:restore:2" })
        guard Self.rolledBackCause(harness) != nil else { return }
    }

    @Test func aServerNotReadyAtANewMinorInTimeIsLeftThereNotSwappedBack() throws {
        var harness = try EngineHarness(plan: Self.plan(), inventory: Self.inventory, policy: Self.policy(verifyTimeoutSeconds: 30))
        harness.handle(.start)
        harness.observe()
        harness.runHealthy(until: { $0.engine.unansweredRequests.contains { $0.command.name == "install" } })
        let install = try #require(harness.engine.unansweredRequests.first { $0.command.name == "install" })
        // Healthy by its agent, but the API keeps showing the old version.
        harness.handle(.replied(operationID: install.operationID, .installed(version: v(Self.new))))
        for _ in 0..<40 {
            harness.advance(seconds: 1)
            harness.observe()
        }
        #expect(!harness.sentRequests.contains { $0.command.name == "rollback" })
        guard let reason = Self.blockReason(harness) else { return }
        #expect(reason.contains("server-1 was not Ready at v1.31.4+k3s1 within 30 s") && reason.contains("`upkeep rollback --restore`"))
        #expect(harness.engine.progress.first?.phase == "unverified")
        #expect(harness.engine.openWatches == [install.operationID])
    }

    @Test func aHopThatKeepsTheServersMinorGoesBackByBinariesEvenAfterAServerWasHealthy() throws {
        let inventory = ClusterInventory(nodes: [server("server-1", "v1.31.2+k3s1"), server("server-2", "v1.31.2+k3s1")])
        var harness = try EngineHarness(plan: Self.plan(inventory), inventory: inventory, policy: Self.policy())
        harness.handle(.start)
        harness.observe()
        harness.runHealthy(failInstallOn: ["server-2"])
        guard let cause = Self.rolledBackCause(harness) else { return }
        #expect(cause.hasSuffix("hop 1 undone: its nodes are back where it found them (v1.31.2+k3s1)"))
        #expect(harness.runningVersion("server-1") == v("v1.31.2+k3s1"))
    }

    @Test func aFailureInTheSecondHopGoesBackOneHopOnly() throws {
        let start = "v1.29.9+k3s1"
        let inventory = ClusterInventory(nodes: [server("server-1", start), server("server-2", start), agent("agent-1", start)])
        let plan = try Self.plan(inventory)
        let middle = plan.hops[0].version
        var harness = try EngineHarness(plan: plan, inventory: inventory, policy: Self.policy())
        harness.handle(.start)
        harness.observe()
        // server-1, the first server of hop 2, never comes up at v1.31: nothing ran v1.31 healthy.
        harness.runHealthy(failingAt: ["server-1": v(Self.new)])
        guard let cause = Self.rolledBackCause(harness) else { return }
        #expect(cause.hasSuffix("hop 2 undone: its nodes are back where it found them (\(v(start)), \(middle))"))
        // Where hop 2 found them: the servers at v1.30, the agent (which jumps in hop 2) at v1.29.
        for name in ["server-1", "server-2"] { #expect(harness.runningVersion(name) == middle, "\(name)") }
        #expect(harness.runningVersion("agent-1") == v(start))
        #expect(!harness.sentRequests.contains { if case .install(let version, _, _) = $0.command { version == v(start) } else { false } })
        // A further step back is a restore of hop 1's snapshot.
        guard case .ready(let hop, let snapshot) = harness.engine.restoreChoice else {
            Issue.record("expected a restore choice, got \(harness.engine.restoreChoice)")
            return
        }
        #expect(hop == 1 && snapshot.backupID == "r1-h1" && snapshot.version == v(start))
    }

    @Test func withoutSnapshotsTheRestoreIsRefusedAndPointsAtRecover() throws {
        var harness = try EngineHarness(plan: Self.plan(), inventory: Self.inventory, policy: Self.policy(.restore, snapshots: false))
        harness.handle(.start)
        harness.observe()
        #expect(harness.engine.restoreChoice == .refused("rollout r1 is still running; wait until it finishes or blocks (`upkeep status`)"))
        harness.runHealthy(failInstallOn: ["server-2"], until: Self.blocked)
        guard let reason = Self.blockReason(harness) else { return }
        #expect(reason.contains("`upkeep recover --from-backup ID` (this rollout took none: backups were skipped"))
        #expect(harness.engine.restoreChoice == .refused("hop 1 of rollout r1 has no datastore snapshot (backups were skipped or failed); "
                                                         + "restore a backup taken before it with `upkeep recover --from-backup ID`"))
        let actions = harness.handle(.restore)
        #expect(EngineHarness.sent(actions).isEmpty)
        #expect(harness.isBlocked)
    }

    @Test func aRecoveryRestoresThroughTheAgentsAloneAndBringsNewerAgentsDown() throws {
        let snapshot = RestoreSnapshot(backupID: "b1", version: v(Self.old), takenAt: Instant(milliseconds: 0), node: "server-2")
        let servers = ["server-1", "server-2", "server-3"].map { RecoveryNode(name: $0, role: .server, arch: .amd64, version: v(Self.new)) }
        let agents = [RecoveryNode(name: "agent-1", role: .agent, arch: .arm64, version: v(Self.new)),
                      RecoveryNode(name: "agent-2", role: .agent, arch: .amd64, version: v("v1.29.9+k3s1"))]
        let engine = try RolloutEngine(recoveryID: "v1", snapshot: snapshot, servers: servers, agents: agents,
                                       policy: Self.policy(), agentConcurrency: 1)
        // Its start line tells the restore, not the hop-less plan inside ("0 nodes in 0 hops").
        #expect(engine.headline == "restore datastore backup b1 (at \(Self.old)) through the agents: stop k3s on 3 servers, "
                + "restore on server-1; clear and rejoin server-2, server-3; bring agent agent-1 to \(Self.old)")
        var harness = try EngineHarness(plan: Self.plan(), inventory: Self.inventory)
        harness.engine = engine
        for name in ["server-1", "server-2", "server-3", "agent-1"] { harness.setNode(name, version: v(Self.new)) }
        harness.handle(.start)
        for _ in 0..<40 {
            guard harness.outcome == nil, let request = harness.engine.unansweredRequests.first else { break }
            harness.answer(request)
        }
        #expect(harness.outcome == .rolledBack(cause: "recovered from datastore backup b1 (taken Thu 1970-01-01 00:00 UTC at v1.30.6+k3s1)"))
        #expect(!harness.log.contains(.observeCluster))
        #expect(harness.engine.restoreWasRequested)
        let steps = Self.commands(harness.sentRequests)
        #expect(steps == ["stage server-1", "stage server-2", "stage server-3", "stage agent-1", "restoreBackup server-1",
                          "stopK3s server-1", "stopK3s server-2", "stopK3s server-3", "restore server-1", "rejoin server-2",
                          "rejoin server-3", "install agent-1", "commit agent-1"])
        #expect(harness.sentRequests.first { $0.node == "agent-1" }?.command == .stage(version: v(Self.old), arch: .arm64))
        #expect(harness.engine.progress.allSatisfy { $0.stage == .done })
    }

    @Test func aRecoveryOfOneServerWithNoNewerAgentSaysSo() throws {
        let snapshot = RestoreSnapshot(backupID: "b2", version: v(Self.old), takenAt: Instant(milliseconds: 0), node: "server-1")
        let engine = try RolloutEngine(recoveryID: "v2", snapshot: snapshot,
                                       servers: [RecoveryNode(name: "server-1", role: .server, arch: .amd64, version: v(Self.new))],
                                       agents: [RecoveryNode(name: "agent-1", role: .agent, arch: .amd64, version: v(Self.old))],
                                       policy: Self.policy(), agentConcurrency: 1)
        #expect(engine.headline == "restore datastore backup b2 (at \(Self.old)) through the agents: stop k3s on 1 server, "
                + "restore on server-1; no agent to bring back")
    }
}
