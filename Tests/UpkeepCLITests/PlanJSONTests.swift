import Foundation
import Testing
@testable import UpkeepCLI
import UpkeepCore
import UpkeepRollout

/// `upkeep plan -o json` prints the plan through the commands' one JSON writer (`jsonText`):
/// stable key order, so two plans diff cleanly, and it reads back as the same plan.
@Suite struct PlanJSONTests {
    static func version(_ text: String) -> K3sVersion {
        do { return try K3sVersion(text) } catch { preconditionFailure("bad version literal \(text): \(error)") }
    }

    @Test func jsonRoundTripsAndIsStable() throws {
        let from = Self.version("v1.29.9+k3s1")
        let nodes = (1...3).map { InventoryNode(name: "server-\($0)", role: .server, etcd: true, version: from) }
            + (1...3).map { InventoryNode(name: "agent-\($0)", role: .agent, version: from) }
        let volume = InventoryVolume(name: "pvc-a", replicasWanted: 2, state: .attached, robustness: .healthy, attachedNode: "agent-1",
                                     replicas: [InventoryReplica(node: "agent-1"), InventoryReplica(node: "agent-2")])
        let offered = ["v1.29.9+k3s1", "v1.30.6+k3s1", "v1.31.2+k3s1"].map(Self.version)
        let plan = try Planner.plan(inventory: ClusterInventory(nodes: nodes, volumes: [volume]), target: Self.version("v1.31.2+k3s1"),
                                    available: offered, policy: PlanPolicy(agentConcurrency: 2))
        let text = try jsonText(plan)
        #expect(try JSONDecoder().decode(Plan.self, from: Data(text.utf8)) == plan)
        #expect(try jsonText(plan) == text)
        #expect(text.contains(#""target" : "v1.31.2+k3s1""#))
    }
}
