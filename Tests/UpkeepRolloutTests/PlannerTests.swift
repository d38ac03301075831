import Foundation
import Testing
import UpkeepRollout
import UpkeepCore

@Suite struct PlannerHopTests {
    @Test func crossingTwoMinorsHopsServersThroughEachAndJumpsAgentsOnce() throws {
        let plan = try Planner.plan(inventory: smallCluster("v1.29.9+k3s1"), target: v("v1.31.2+k3s1"), available: offered,
                                    policy: PlanPolicy(agentConcurrency: 2))
        #expect(plan.direction == .upgrade)
        // v1.30.6 is the newest v1.30 release: the build v1.30.7+k3s-… and the rc are not releases.
        #expect(plan.hops.map(\.version) == [v("v1.30.6+k3s1"), v("v1.31.2+k3s1")])
        #expect(plan.script == [
            "1 s1 server-1 v1.29.9+k3s1 → v1.30.6+k3s1",
            "1 s2 server-2 v1.29.9+k3s1 → v1.30.6+k3s1",
            "1 s3 server-3 v1.29.9+k3s1 → v1.30.6+k3s1",
            "2 s1 server-1 v1.30.6+k3s1 → v1.31.2+k3s1",
            "2 s2 server-2 v1.30.6+k3s1 → v1.31.2+k3s1",
            "2 s3 server-3 v1.30.6+k3s1 → v1.31.2+k3s1",
            "2 w1 agent-1 v1.29.9+k3s1 → v1.31.2+k3s1",
            "2 w1 agent-2 v1.29.9+k3s1 → v1.31.2+k3s1",
            "2 w2 agent-3 v1.29.9+k3s1 → v1.31.2+k3s1",
        ])
        let server = try #require(plan.waves.first?.steps.first)
        #expect(server.reason == "server: upgraded alone to keep etcd quorum")
        let agentStep = try #require(plan.waves.last?.steps.first)
        #expect(agentStep.reason.hasPrefix("agent: jumps v1.29 → v1.31 in one step once every server runs v1.31.2+k3s1"))
        #expect(agentStep.reason.hasSuffix("wave 2: agent-3 alone"))
        #expect(plan.artifacts == [Artifact(version: v("v1.30.6+k3s1"), arch: .amd64), Artifact(version: v("v1.31.2+k3s1"), arch: .amd64)])
    }

    @Test func patchUpgradeIsOneHop() throws {
        let plan = try Planner.plan(inventory: smallCluster("v1.31.0+k3s1"), target: v("v1.31.4+k3s1"), available: offered,
                                    policy: PlanPolicy(agentConcurrency: 3))
        #expect(plan.hops.count == 1)
        #expect(plan.waves.map(\.label) == ["s1", "s2", "s3", "w1"])
        #expect(plan.waves.last?.reason == "wave 1: agent-1, agent-2 and agent-3 share no volume")
    }

    @Test func agentThatWouldFallOutOfSkewMovesMidway() throws {
        var inventory = smallCluster("v1.29.9+k3s1")
        inventory.nodes.append(agent("agent-old", "v1.27.16+k3s1"))
        let plan = try Planner.plan(inventory: inventory, target: v("v1.32.1+k3s1"), available: offered, policy: PlanPolicy(agentConcurrency: 5))
        #expect(plan.hops.map(\.version) == [v("v1.30.6+k3s1"), v("v1.31.4+k3s1"), v("v1.32.1+k3s1")])
        let old = plan.script.filter { $0.contains("agent-old") }
        #expect(old == ["1 w1 agent-old v1.27.16+k3s1 → v1.30.6+k3s1", "3 w1 agent-old v1.30.6+k3s1 → v1.32.1+k3s1"])
        let midway = try #require(plan.hops[0].waves.last?.steps.first)
        #expect(midway.reason.hasPrefix("agent: moves in this hop because the next one takes the servers to v1.31, which would leave its kubelet (v1.27) more than 3 minors behind"))
        // The others lag at most 3 minors (v1.29 against v1.32) and jump once.
        #expect(plan.script.filter { $0.contains("agent-1") } == ["3 w1 agent-1 v1.29.9+k3s1 → v1.32.1+k3s1"])
    }

    @Test func kubeletsOlderThanV125MayLagOnlyTwoMinors() throws {
        let inventory = ClusterInventory(nodes: [server("server-1", "v1.24.17+k3s1"), agent("agent-1", "v1.23.17+k3s1")])
        let plan = try Planner.plan(inventory: inventory, target: v("v1.26.15+k3s1"), available: offered, policy: PlanPolicy())
        #expect(plan.script == [
            "1 s1 server-1 v1.24.17+k3s1 → v1.25.16+k3s4",
            "1 w1 agent-1 v1.23.17+k3s1 → v1.25.16+k3s4",
            "2 s1 server-1 v1.25.16+k3s4 → v1.26.15+k3s1",
            "2 w1 agent-1 v1.25.16+k3s4 → v1.26.15+k3s1",
        ])
        #expect(plan.warnings.contains { $0.hasPrefix("one server only") })
    }

    @Test func aHopNeedsARestoreToGoBackExactlyWhenItRaisesTheServersNewestMinor() throws {
        // Lagging agents first (binaries), then v1.30 and v1.31 (each raises the servers' minor).
        let lagging = ClusterInventory(nodes: [server("server-1", "v1.29.9+k3s1"), agent("agent-1", "v1.25.16+k3s4")])
        let across = try Planner.plan(inventory: lagging, target: v("v1.31.4+k3s1"), available: offered, policy: PlanPolicy())
        #expect(across.hops.map(\.rollbackKind) == [.binaries, .restore, .restore])
        #expect(across.table().contains("Hop 1 of 3: to v1.29.9+k3s1 (lagging agents catch up first); rollback: binaries (the k3s binaries go back)"))
        // A patch hop.
        let patch = try Planner.plan(inventory: smallCluster("v1.31.2+k3s1"), target: v("v1.31.4+k3s1"), available: offered, policy: PlanPolicy())
        #expect(patch.hops.map(\.rollbackKind) == [.binaries])
        // One server already at v1.31 wrote the datastore at v1.31 before the rollout: the hop raises nothing.
        let mixed = ClusterInventory(nodes: [server("server-1", "v1.30.6+k3s1"), server("server-2", "v1.31.2+k3s1")])
        let level = try Planner.plan(inventory: mixed, target: v("v1.31.4+k3s1"), available: offered, policy: PlanPolicy())
        #expect(level.hops.map(\.rollbackKind) == [.binaries])
    }

    @Test func aPlanPersistedBeforeRollbackKindsGetsTheRuleFromItsSteps() throws {
        let plan = try Planner.plan(inventory: smallCluster("v1.30.6+k3s1"), target: v("v1.31.4+k3s1"), available: offered, policy: PlanPolicy())
        var json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(plan)) as! [String: Any]
        var hops = json["hops"] as! [[String: Any]]
        #expect(hops[0]["rollbackKind"] as? String == "restore")
        hops[0].removeValue(forKey: "rollbackKind")
        json["hops"] = hops
        let old = try JSONDecoder().decode(Plan.self, from: JSONSerialization.data(withJSONObject: json))
        #expect(old.hops[0].rollbackKind == .restore)
    }

    @Test func agentAlreadyOutOfSkewIsBroughtLevelFirst() throws {
        let inventory = ClusterInventory(nodes: [server("server-1", "v1.29.9+k3s1"), server("server-2", "v1.29.9+k3s1"),
                                                 server("server-3", "v1.29.9+k3s1"), agent("agent-1", "v1.25.16+k3s4")])
        let plan = try Planner.plan(inventory: inventory, target: v("v1.30.6+k3s1"), available: offered, policy: PlanPolicy())
        #expect(plan.script.first == "1 w1 agent-1 v1.25.16+k3s4 → v1.29.9+k3s1")
        #expect(plan.table().contains("Hop 1 of 2: to v1.29.9+k3s1 (lagging agents catch up first)"))
        #expect(plan.warnings.contains { $0.contains("agent-1 (v1.25.16+k3s4) is already too far behind") })
    }

    @Test func serversAlreadyOneMinorApartAreBroughtTogether() throws {
        let inventory = ClusterInventory(nodes: [server("server-1", "v1.30.6+k3s1"), server("server-2", "v1.31.0+k3s1"),
                                                 agent("agent-1", "v1.30.6+k3s1")])
        let plan = try Planner.plan(inventory: inventory, target: v("v1.31.4+k3s1"), available: offered, policy: PlanPolicy())
        #expect(plan.script == [
            "1 s1 server-1 v1.30.6+k3s1 → v1.31.4+k3s1",
            "1 s2 server-2 v1.31.0+k3s1 → v1.31.4+k3s1",
            "1 w1 agent-1 v1.30.6+k3s1 → v1.31.4+k3s1",
        ])
    }

    @Test func preReleaseTargetIsHonouredButNeverAStop() throws {
        let plan = try Planner.plan(inventory: smallCluster("v1.29.10+k3s1"), target: v("v1.31.0-rc1+k3s1"), available: offered,
                                    policy: PlanPolicy(agentConcurrency: 3))
        #expect(plan.hops.map(\.version) == [v("v1.30.6+k3s1"), v("v1.31.0-rc1+k3s1")])
    }

    @Test func nodesAtTheTargetStayPut() throws {
        var inventory = smallCluster("v1.31.0+k3s1")
        inventory.nodes[5].version = v("v1.31.4+k3s1")
        let plan = try Planner.plan(inventory: inventory, target: v("v1.31.4+k3s1"), available: offered, policy: PlanPolicy(agentConcurrency: 3))
        #expect(plan.unchanged == [NodeNote(node: "agent-3", version: v("v1.31.4+k3s1"), reason: "already at the target")])
        #expect(!plan.script.contains { $0.contains("agent-3") })
    }

    @Test func nothingToDo() throws {
        let plan = try Planner.plan(inventory: smallCluster("v1.31.4+k3s1"), target: v("v1.31.4+k3s1"), available: offered, policy: PlanPolicy())
        #expect(plan.direction == .none && plan.hops.isEmpty && plan.unchanged.count == 6)
        #expect(plan.headline() == "Nothing to do: every node already runs v1.31.4+k3s1.")
    }

    @Test func nodesAreOrderedNaturallyByName() throws {
        let inventory = ClusterInventory(nodes: [server("cp-10", "v1.31.0+k3s1"), server("cp-9", "v1.31.0+k3s1"), server("cp-1", "v1.31.0+k3s1")])
        let plan = try Planner.plan(inventory: inventory, target: v("v1.31.4+k3s1"), available: offered, policy: PlanPolicy())
        #expect(plan.waves.flatMap(\.nodes) == ["cp-1", "cp-9", "cp-10"])
    }

    @Test func cordonedNodeIsPlannedAndStaysCordoned() throws {
        var inventory = smallCluster("v1.31.0+k3s1")
        inventory.nodes[4].cordoned = true
        let plan = try Planner.plan(inventory: inventory, target: v("v1.31.4+k3s1"), available: offered, policy: PlanPolicy())
        let step = try #require(plan.waves.flatMap(\.steps).first { $0.node == "agent-2" })
        #expect(step.wasCordoned)
        #expect(step.reason.hasSuffix("cordoned before the rollout, so it stays cordoned afterwards"))
        #expect(plan.warnings.contains("already cordoned: agent-2; Upkeep leaves them cordoned afterwards"))
    }
}

@Suite struct PlannerDowngradeTests {
    @Test func downgradeIsRefusedWithoutPermission() {
        #expect(throws: PlanError([.downgradeRefused(nodes: ["server-1", "server-2", "server-3", "agent-1", "agent-2", "agent-3"],
                                                     target: v("v1.30.6+k3s1")),
                                   .serversDownAMinor(from: MinorLine(major: 1, minor: 31), to: MinorLine(major: 1, minor: 30))])) {
            try Planner.plan(inventory: smallCluster("v1.31.4+k3s1"), target: v("v1.30.6+k3s1"), available: offered, policy: PlanPolicy())
        }
    }

    @Test func aDowngradeThatTakesServersDownAMinorIsRefusedAndSaysToRestore() {
        #expect(throws: PlanError([.serversDownAMinor(from: MinorLine(major: 1, minor: 32), to: MinorLine(major: 1, minor: 30))])) {
            try Planner.plan(inventory: smallCluster("v1.32.1+k3s1"), target: v("v1.30.6+k3s1"), available: offered,
                             policy: PlanPolicy(agentConcurrency: 3, allowDowngrade: true))
        }
        let text = PlanProblem.serversDownAMinor(from: MinorLine(major: 1, minor: 31), to: MinorLine(major: 1, minor: 30)).description
        #expect(text.contains("`upkeep rollback --restore`") && text.contains("https://docs.k3s.io/upgrades/roll-back"))
    }

    @Test func anAllowedDowngradeWithinAMinorMovesAgentsBeforeServers() throws {
        let plan = try Planner.plan(inventory: smallCluster("v1.31.4+k3s1"), target: v("v1.31.2+k3s1"), available: offered,
                                    policy: PlanPolicy(agentConcurrency: 3, allowDowngrade: true))
        #expect(plan.direction == .downgrade)
        #expect(plan.script == [
            "1 w1 agent-1 v1.31.4+k3s1 → v1.31.2+k3s1", "1 w1 agent-2 v1.31.4+k3s1 → v1.31.2+k3s1", "1 w1 agent-3 v1.31.4+k3s1 → v1.31.2+k3s1",
            "1 s1 server-1 v1.31.4+k3s1 → v1.31.2+k3s1", "1 s2 server-2 v1.31.4+k3s1 → v1.31.2+k3s1", "1 s3 server-3 v1.31.4+k3s1 → v1.31.2+k3s1",
        ])
        #expect(plan.hops.map(\.rollbackKind) == [.binaries])
        #expect(plan.table().contains("caveat: Upkeep swaps k3s binaries only"))
    }

    @Test func patchDowngradeHasOnlyTheGeneralCaveat() throws {
        let plan = try Planner.plan(inventory: smallCluster("v1.31.4+k3s1"), target: v("v1.31.2+k3s1"), available: offered,
                                    policy: PlanPolicy(allowDowngrade: true))
        #expect(plan.caveats.count == 1)
        #expect(plan.waves.first?.role == .agent && plan.waves.last?.role == .server)
    }

    @Test func mixedDirectionsAreRefused() {
        let inventory = ClusterInventory(nodes: [server("server-1", "v1.31.4+k3s1"), agent("agent-1", "v1.30.6+k3s1")])
        #expect(throws: PlanError([.mixedDirection(newer: ["server-1"], older: ["agent-1"], target: v("v1.31.2+k3s1"))])) {
            try Planner.plan(inventory: inventory, target: v("v1.31.2+k3s1"), available: offered, policy: PlanPolicy(allowDowngrade: true))
        }
    }
}

@Suite struct PlannerRefusalTests {
    @Test func unreachableWhenAMinorHasNoRelease() {
        let available = offered.filter { $0.minorLine != MinorLine(major: 1, minor: 30) }
        #expect(throws: PlanError([.noReleaseInLine(MinorLine(major: 1, minor: 30), target: v("v1.31.4+k3s1"))])) {
            try Planner.plan(inventory: smallCluster("v1.29.9+k3s1"), target: v("v1.31.4+k3s1"), available: available, policy: PlanPolicy())
        }
    }

    @Test func targetMustBeOffered() {
        let error = PlanError([.targetNotAvailable(target: v("v1.31.3+k3s1"), newestInLine: v("v1.31.4+k3s1"))])
        #expect(error.description == "target v1.31.3+k3s1 is not among the versions the release source offers; the newest v1.31 release offered is v1.31.4+k3s1")
        #expect(throws: error) {
            try Planner.plan(inventory: smallCluster("v1.31.0+k3s1"), target: v("v1.31.3+k3s1"), available: offered, policy: PlanPolicy())
        }
    }

    @Test func everyProblemIsReportedAtOnce() {
        var inventory = smallCluster("v1.31.0+k3s1", volumes: [volume("pvc-bad", on: ["agent-1", "agent-2"], robustness: .faulted)])
        inventory.nodes[1].ready = false
        inventory.nodes[3].ready = false
        #expect {
            try Planner.plan(inventory: inventory, target: v("v1.31.4+k3s1"), available: offered, policy: PlanPolicy())
        } throws: { error in
            guard let error = error as? PlanError else { return false }
            return error.problems == [.nodesNotReady(["server-2", "agent-1"]), .faultedVolume("pvc-bad")]
                && error.description.hasPrefix("no plan (2 problems):\n- nodes server-2, agent-1 are not Ready")
        }
    }

    @Test func skewAlreadyBrokenIsRefused() {
        let inventory = ClusterInventory(nodes: [server("server-1", "v1.29.9+k3s1"), server("server-2", "v1.31.0+k3s1"),
                                                 agent("agent-1", "v1.31.0+k3s1")])
        #expect(throws: PlanError([
            .serversOutOfSkew(oldest: v("v1.29.9+k3s1"), newest: v("v1.31.0+k3s1")),
            .kubeletNewerThanServer(node: "agent-1", version: v("v1.31.0+k3s1"), server: v("v1.29.9+k3s1")),
        ])) {
            try Planner.plan(inventory: inventory, target: v("v1.31.4+k3s1"), available: offered, policy: PlanPolicy())
        }
    }

    @Test func structuralProblems() {
        #expect(throws: PlanError([.noNodes])) {
            try Planner.plan(inventory: ClusterInventory(nodes: []), target: v("v1.31.4+k3s1"), available: offered, policy: PlanPolicy())
        }
        #expect(throws: PlanError([.invalidConcurrency(0), .duplicateNode("a"), .noServers])) {
            try Planner.plan(inventory: ClusterInventory(nodes: [agent("a", "v1.31.0+k3s1"), agent("a", "v1.31.0+k3s1")]),
                             target: v("v1.31.4+k3s1"), available: offered, policy: PlanPolicy(agentConcurrency: 0))
        }
        #expect(throws: PlanError([.acrossMajor(from: MinorLine(major: 1, minor: 31), to: MinorLine(major: 2, minor: 0))])) {
            try Planner.plan(inventory: smallCluster("v1.31.0+k3s1"), target: v("v2.0.0+k3s1"), available: offered + [v("v2.0.0+k3s1")],
                             policy: PlanPolicy())
        }
    }
}

@Suite struct PlannerLonghornTests {
    let version = "v1.31.0+k3s1"
    let target = v("v1.31.4+k3s1")

    func cluster(agents count: Int, volumes: [InventoryVolume]) -> ClusterInventory {
        ClusterInventory(nodes: [server("server-1", version)] + (1...count).map { agent("agent-\($0)", version) }, volumes: volumes)
    }

    @Test func twoReplicasAreNeverInOneWave() throws {
        let plan = try Planner.plan(inventory: cluster(agents: 4, volumes: [volume("pvc-a", on: ["agent-1", "agent-2"])]),
                                    target: target, available: offered, policy: PlanPolicy(agentConcurrency: 2))
        #expect(plan.waves.filter { $0.role == .agent }.map(\.nodes) == [["agent-1", "agent-3"], ["agent-2", "agent-4"]])
        let bumped = try #require(plan.waves.last?.steps.first)
        #expect(bumped.reason.hasSuffix("wave 2: agent-2 and agent-4 share no volume; not in wave 1: with agent-1 it would take down every running healthy replica of volume pvc-a"))
        #expect(plan.longhorn == LonghornSummary(volumes: 1, attached: 1, detached: 0, constraining: 1, separations: 1))
    }

    @Test func threeReplicasMayShareAWaveTwoAtATime() throws {
        let plan = try Planner.plan(inventory: cluster(agents: 4, volumes: [volume("pvc-b", on: ["agent-1", "agent-2", "agent-3"])]),
                                    target: target, available: offered, policy: PlanPolicy(agentConcurrency: 3))
        #expect(plan.waves.filter { $0.role == .agent }.map(\.nodes) == [["agent-1", "agent-2", "agent-4"], ["agent-3"]])
        #expect(plan.waves[1].reason == "wave 1: agent-1, agent-2 and agent-4 share volumes, but every volume keeps a healthy replica outside this wave")
    }

    @Test func onlyRunningHealthyReplicasProtectAnAttachedVolume() throws {
        // Three wanted, one rebuilding on agent-3: agent-1 and agent-2 hold the data and must be apart.
        let degraded = InventoryVolume(name: "pvc-c", replicasWanted: 3, state: .attached, robustness: .degraded, attachedNode: "agent-1",
                                       replicas: [InventoryReplica(node: "agent-1"), InventoryReplica(node: "agent-2"),
                                                  InventoryReplica(node: "agent-3", running: true, healthy: false)])
        let plan = try Planner.plan(inventory: cluster(agents: 3, volumes: [degraded]), target: target, available: offered,
                                    policy: PlanPolicy(agentConcurrency: 3))
        #expect(plan.waves.filter { $0.role == .agent }.map(\.nodes) == [["agent-1", "agent-3"], ["agent-2"]])
        #expect(plan.warnings.contains("degraded Longhorn volumes (pvc-c): each node's gate waits for them to be healthy again"))
    }

    @Test func detachedVolumeKeepsOneCopyUp() throws {
        let plan = try Planner.plan(inventory: cluster(agents: 2, volumes: [volume("pvc-d", on: ["agent-1", "agent-2"], state: .detached, robustness: .unknown)]),
                                    target: target, available: offered, policy: PlanPolicy(agentConcurrency: 2))
        #expect(plan.waves.filter { $0.role == .agent }.map(\.nodes) == [["agent-1"], ["agent-2"]])
        #expect(plan.waves.last?.steps.first?.reason.contains("every complete copy of volume pvc-d") == true)
    }

    @Test func lastHealthyReplicaOnAMovingNodeIsRefused() {
        let single = [volume("pvc-e", on: ["agent-2"]), volume("pvc-f", on: ["agent-1"], state: .detached, robustness: .unknown)]
        #expect(throws: PlanError([.singleHealthyReplica(volume: "pvc-e", node: "agent-2", running: true),
                                   .singleHealthyReplica(volume: "pvc-f", node: "agent-1", running: false)])) {
            try Planner.plan(inventory: cluster(agents: 2, volumes: single), target: target, available: offered, policy: PlanPolicy())
        }
    }

    @Test func lastHealthyReplicaOnANodeThatStaysIsFine() throws {
        var inventory = cluster(agents: 2, volumes: [volume("pvc-e", on: ["agent-2"])])
        inventory.nodes[2].version = target
        let plan = try Planner.plan(inventory: inventory, target: target, available: offered, policy: PlanPolicy())
        #expect(plan.waves.flatMap(\.nodes) == ["server-1", "agent-1"])
    }

    @Test func replicasOnServersNeverBlockServerSteps() throws {
        let plan = try Planner.plan(inventory: cluster(agents: 1, volumes: [volume("pvc-g", on: ["server-1", "agent-1"])]),
                                    target: target, available: offered, policy: PlanPolicy())
        #expect(plan.waves.map(\.label) == ["s1", "w1"])
    }
}

@Suite struct PlanRenderingTests {
    // The plan's JSON is written by the CLI's one JSON writer: PlanJSONTests in UpkeepCLITests.

    @Test func tableShowsHopsWavesAndReasons() throws {
        let plan = try Planner.plan(inventory: smallCluster("v1.30.6+k3s1", volumes: [volume("pvc-a", on: ["agent-1", "agent-2"])]),
                                    target: v("v1.31.4+k3s1"), available: offered, policy: PlanPolicy(agentConcurrency: 2))
        let lines = plan.table().split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(lines[0] == "Upgrade to v1.31.4+k3s1: 6 nodes in 1 hop (v1.31); 3 server steps one at a time, 2 agent waves of at most 2")
        #expect(lines[2] == "Hop 1 of 1: to v1.31.4+k3s1; rollback: restore (servers go back a minor only with the datastore snapshot taken before this hop restored)")
        #expect(lines[3] == "  WAVE  NODE      ROLE         ARCH   FROM             TO            WHY")
        #expect(lines[4] == "  s1    server-1  server+etcd  amd64  v1.30.6+k3s1  →  v1.31.4+k3s1  server: upgraded alone to keep etcd quorum")
        #expect(lines[7].hasPrefix("  w1    agent-1   agent        amd64  v1.30.6+k3s1  →  v1.31.4+k3s1  agent: follows the servers"))
        #expect(lines.contains("Longhorn: 1 volume (1 attached, 0 detached); 1 constrain waves (no wave holds all of a volume's healthy replicas); 1 agent moved to a later wave for that"))
    }
}
