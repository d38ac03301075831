import Foundation
import Testing
import UpkeepRollout
import UpkeepCore

/// The plan's predicted schedule without wave barriers (docs/planning.md, "Scheduling").
@Suite struct PlanScheduleTests {
    static let estimates = PlanSchedule.Estimates(stepSeconds: 240, rebuildSeconds: 180)

    static func plan(_ inventory: ClusterInventory, concurrency: Int) throws -> Plan {
        try Planner.plan(inventory: inventory, target: v("v1.31.4+k3s1"), available: offered, policy: PlanPolicy(agentConcurrency: concurrency))
    }

    @Test func nodesStartWhenSlotsAndReplicasAllowSoTheScheduleBeatsTheWaveBarrier() throws {
        // agent-1 and agent-2 hold pvc-a's two replicas: each rebuilds 180 s after coming back.
        let inventory = ClusterInventory(nodes: [server("server-1", "v1.30.6+k3s1")] + (1...5).map { agent("agent-\($0)", "v1.30.6+k3s1") },
                                         volumes: [volume("pvc-a", on: ["agent-1", "agent-2"])])
        let plan = try Self.plan(inventory, concurrency: 2)
        #expect(plan.waves.map(\.nodes) == [["server-1"], ["agent-1", "agent-3"], ["agent-2", "agent-4"], ["agent-5"]])
        let schedule = PlanSchedule.predict(plan, inventory: inventory, estimates: Self.estimates)
        // Barrier: 240 + 420 + 420 + 240. Without: agent-2 starts when agent-1's rebuild ends
        // (660 s) and ends at 1080 s; agent-4 and agent-5 take the free slots meanwhile.
        #expect(schedule.waveBarrierSeconds == 1320)
        #expect(schedule.seconds == 1080)
        #expect(schedule.criticalPath == ["server-1", "agent-1", "agent-2"])
        let starts = Dictionary(uniqueKeysWithValues: schedule.entries.map { ($0.node, $0.startSeconds) })
        #expect(starts == ["server-1": 0, "agent-1": 240, "agent-3": 240, "agent-4": 480, "agent-2": 660, "agent-5": 720])
        // The rules hold at every moment the prediction has.
        for moment in Set(schedule.entries.flatMap { [$0.startSeconds, $0.upSeconds, $0.endSeconds] }) {
            let down = schedule.entries.filter { $0.startSeconds <= moment && moment < $0.upSeconds }
            #expect(down.count <= 2)
            let busy = Set(schedule.entries.filter { $0.startSeconds <= moment && moment < $0.endSeconds }.map(\.node))
            #expect(!busy.isSuperset(of: ["agent-1", "agent-2"]))
        }
    }

    @Test func withoutVolumesOrUnevenStepsTheScheduleIsTheWaveBarriersOwn() throws {
        let inventory = ClusterInventory(nodes: [server("server-1", "v1.30.6+k3s1")] + (1...4).map { agent("agent-\($0)", "v1.30.6+k3s1") })
        let plan = try Self.plan(inventory, concurrency: 2)
        let schedule = PlanSchedule.predict(plan, inventory: inventory, estimates: Self.estimates)
        #expect(schedule.seconds == 720 && schedule.waveBarrierSeconds == 720)
        #expect(schedule.criticalPath.count == 3 && schedule.criticalPath.first == "server-1")
    }

    @Test func theCanarySoakAndHopsStayBarriers() throws {
        let inventory = ClusterInventory(nodes: [server("server-1", "v1.30.6+k3s1")] + (1...3).map { agent("agent-\($0)", "v1.30.6+k3s1") })
        let plan = try Planner.plan(inventory: inventory, target: v("v1.31.4+k3s1"), available: offered,
                                    policy: PlanPolicy(agentConcurrency: 2, canaryAgents: 1, canarySoakSeconds: 600))
        let schedule = PlanSchedule.predict(plan, inventory: inventory, estimates: Self.estimates)
        let starts = Dictionary(uniqueKeysWithValues: schedule.entries.map { ($0.node, $0.startSeconds) })
        #expect(starts == ["server-1": 0, "agent-1": 240, "agent-2": 1080, "agent-3": 1080])
        #expect(schedule.seconds == 1320 && schedule.waveBarrierSeconds == 1320)
    }

    @Test func everyMomentOfALargerScheduleKeepsTheRules() throws {
        // 3 servers, 120 agents, a volume per agent with replicas on it and on the next two.
        let agents = (1...120).map { "agent-\($0)" }
        let volumes = agents.indices.map { volume("pvc-\($0)", on: [agents[$0], agents[($0 + 1) % 120], agents[($0 + 2) % 120]]) }
        let inventory = ClusterInventory(nodes: (1...3).map { server("server-\($0)", "v1.30.6+k3s1") } + agents.map { agent($0, "v1.30.6+k3s1") },
                                         volumes: volumes)
        let plan = try Self.plan(inventory, concurrency: 7)
        let schedule = PlanSchedule.predict(plan, inventory: inventory, estimates: Self.estimates)
        #expect(schedule.entries.map(\.node).sorted() == plan.waves.flatMap(\.nodes).sorted())
        #expect(schedule.seconds == schedule.entries.map(\.endSeconds).max())
        let protected = volumes.map { Set($0.protectedNodes) }
        for moment in Set(schedule.entries.flatMap { [$0.startSeconds, $0.upSeconds] }) {
            let down = schedule.entries.filter { $0.startSeconds <= moment && moment < $0.upSeconds }
            #expect(down.count <= 7)
            #expect(down.allSatisfy { $0.node.hasPrefix("agent") } || down.count == 1)
            let busy = Set(schedule.entries.filter { $0.startSeconds <= moment && moment < $0.endSeconds }.map(\.node))
            #expect(!protected.contains { $0.isSubset(of: busy) }, "at \(moment) s every replica of a volume is busy")
        }
        // The critical path is a chain: each starts when the one before it frees its slot or ends.
        let byNode = Dictionary(uniqueKeysWithValues: schedule.entries.map { ($0.node, $0) })
        for (before, after) in zip(schedule.criticalPath, schedule.criticalPath.dropFirst()) {
            let (first, next) = (try #require(byNode[before]), try #require(byNode[after]))
            #expect(next.after == before && [first.upSeconds, first.endSeconds].contains(next.startSeconds))
        }
    }

    @Test func theScheduleIsInThePlansJSONShape() throws {
        let inventory = ClusterInventory(nodes: [server("server-1", "v1.30.6+k3s1"), agent("agent-1", "v1.30.6+k3s1")])
        let schedule = PlanSchedule.predict(try Self.plan(inventory, concurrency: 1), inventory: inventory)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json = String(decoding: try encoder.encode(schedule), as: UTF8.self)
        #expect(json.hasPrefix(#"{"criticalPath":["server-1","agent-1"],"entries":[{"endSeconds":240,"node":"server-1","startSeconds":0,"upSeconds":240,"wave":"hop 1 s1"}"#))
        #expect(json.hasSuffix(#""estimates":{"rebuildSeconds":180,"stepSeconds":240},"seconds":480,"waveBarrierSeconds":480}"#))
        #expect(schedule.summary.contains("critical path: server-1 → agent-1"))
    }
}
