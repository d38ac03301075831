import Foundation
import Testing
@testable import UpkeepRollout
import UpkeepCore

/// What keeps one engine transition proportional to what it changes, not to the cluster
/// (bench/engine-scale): the moves kept in chunks a copy shares, and the observation indexed.
@Suite struct EngineIndexTests {
    /// An element that counts how often it is compared.
    struct Probe: Equatable, Codable {
        final class Count: @unchecked Sendable { var value = 0 }
        var value: Int
        var count: Count

        static func == (lhs: Probe, rhs: Probe) -> Bool {
            lhs.count.value += 1
            return lhs.value == rhs.value
        }

        init(_ value: Int, _ count: Count) {
            self.value = value
            self.count = count
        }

        init(from decoder: any Decoder) throws {
            value = try decoder.singleValueContainer().decode(Int.self)
            count = Count()
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            try container.encode(value)
        }
    }

    @Test func aCopyWrittenOnceDiffersAtThatPositionAndComparesOneChunk() {
        let count = Probe.Count()
        let before = ChunkedArray((0..<10_000).map { Probe($0, count) })
        var after = before
        after[4_321].value = -1
        after.append(Probe(10_000, count))
        count.value = 0
        #expect(after.differingPositions(from: before) == [4_321, 10_000])
        // The chunk written and the last one (appended to); every other chunk is shared and skipped.
        #expect(count.value <= 2 * ChunkedArray<Probe>.chunkLength)
        #expect(before.differingPositions(from: before).isEmpty)
        #expect(after != before)
        after[4_321].value = 4_321
        #expect(Array(after.prefix(10_000)) == Array(before))
    }

    @Test func codedAsThePlainArray() throws {
        let count = Probe.Count()
        let chunked = ChunkedArray((0..<200).map { Probe($0, count) })
        let json = try JSONEncoder().encode(chunked)
        #expect(String(decoding: json, as: UTF8.self) == "[" + (0..<200).map(String.init).joined(separator: ",") + "]")
        let decoded = try JSONDecoder().decode(ChunkedArray<Probe>.self, from: json)
        #expect(decoded.map(\.value) == Array(0..<200))
    }

    static func observation(nodes: Int, volumes: [InventoryVolume]) -> ClusterObservation {
        let version = try! K3sVersion("v1.30.5+k3s1")
        let list = (0..<nodes).map { InventoryNode(name: "n\($0)", role: $0 == 0 ? .server : .agent, version: version) }
        return ClusterObservation(inventory: ClusterInventory(nodes: list, volumes: volumes))
    }

    static func volume(_ name: String, _ nodes: [String], robustness: InventoryVolume.Robustness = .healthy,
                       state: InventoryVolume.State = .attached) -> InventoryVolume {
        InventoryVolume(name: name, replicasWanted: nodes.count, state: state, robustness: robustness,
                        attachedNode: nodes.first, replicas: nodes.map { InventoryReplica(node: $0) })
    }

    @Test func theIndexFindsNodesAndVolumesAsAScanWould() throws {
        let volumes = [Self.volume("a", ["n1", "n2", "n1"]), Self.volume("b", ["n2", "n3"], robustness: .degraded),
                       Self.volume("c", ["n3"], robustness: .faulted, state: .detached), Self.volume("d", ["n4"], robustness: .unknown, state: .detached)]
        var observation = Self.observation(nodes: 6, volumes: volumes)
        var index = ObservationIndex()
        index.refresh(observation)
        #expect(index.node("n4", in: observation)?.name == "n4")
        #expect(index.node("n9", in: observation) == nil)
        #expect(index.volumes(on: ["n2"]) == [0, 1])
        #expect(index.volumes(on: ["n3", "n1"]) == [0, 1, 2])
        #expect(index.unsettledVolumes == [1, 2])
        #expect(GateCheck.longhornProblems(observation, index: index)
                == ["Longhorn volumes faulted: c", "Longhorn volumes not healthy: b"])
        #expect(GateCheck.longhornProblems(observation, index: index, sparing: ["n2", "n3"]) == ["Longhorn volumes faulted: c"])

        // The same names in another order: an index of the old order is only slower, never wrong.
        observation.inventory.nodes.reverse()
        #expect(GateCheck.nodeReady("n4", at: try K3sVersion("v1.30.5+k3s1"), in: observation, index: index))
        #expect(!GateCheck.nodeReady("n4", at: try K3sVersion("v1.30.6+k3s1"), in: observation, index: index))

        // A new volume list is indexed afresh; one kept as it was is not looked at again.
        observation.inventory.volumes[1].robustness = .healthy
        index.refresh(observation)
        #expect(index.unsettledVolumes == [2])
        #expect(GateCheck.longhornProblems(observation, index: index) == ["Longhorn volumes faulted: c"])
    }

    @Test func stageRunsAreFoundAsAScanFindsThemThroughAppendsRenamesAndRemovals() throws {
        let v1 = try K3sVersion("v1.30.5+k3s1")
        let v2 = try K3sVersion("v1.30.6+k3s1")
        var stages: [StageRun] = []
        var index = StageIndex()
        func agrees() -> Bool {
            for node in ["n0", "n1", "n2", "n3"] {
                for version in [v1, v2] where index.position(node: node, version: version, in: stages)
                    != stages.firstIndex(where: { $0.node == node && $0.version == version }) { return false }
            }
            return stages.map(\.operationID).allSatisfy { id in index.position(operationID: id, in: stages) == stages.firstIndex { $0.operationID == id } }
                && index.position(operationID: "gone", in: stages) == nil
        }
        for (number, (node, version)) in [("n0", v2), ("n1", v2), ("n0", v1), ("n1", v2), ("n2", v2)].enumerated() {
            stages.append(StageRun(node: node, version: version, operationID: "r:f\(number):stage:\(number)"))
            index.appended(stages)
            #expect(agrees())
        }
        // The second stage of n1 at v2 is not the first: the first is what is found.
        #expect(index.position(node: "n1", version: v2, in: stages) == 1)
        stages[2].operationID = "r:f2:stage:9"
        index.renamed("r:f2:stage:2", at: 2, in: stages)
        #expect(agrees() && index.position(operationID: "r:f2:stage:2", in: stages) == nil)
        // A removal then an append leaves the length as indexed: the index is built again all the same.
        stages.removeAll { $0.node == "n0" && $0.version == v2 }
        index.removed()
        stages.append(StageRun(node: "n3", version: v1, operationID: "r:f5:stage:10"))
        index.appended(stages)
        #expect(agrees() && index.position(node: "n0", version: v2, in: stages) == nil)
        // Decoded, an engine holds no index: the first look-up builds it.
        var fresh = StageIndex()
        #expect(fresh.position(node: "n3", version: v1, in: stages) == stages.count - 1)
    }

    @Test func theIndexIsNeitherCodedNorCompared() throws {
        let plan = try Planner.plan(inventory: Self.observation(nodes: 3, volumes: []).inventory, target: try K3sVersion("v1.30.6+k3s1"),
                                    available: [try K3sVersion("v1.30.5+k3s1"), try K3sVersion("v1.30.6+k3s1")], policy: PlanPolicy())
        var engine = try RolloutEngine(rolloutID: "r1", plan: plan, policy: RolloutPolicy())
        _ = engine.handle(.start, now: Instant(milliseconds: 1_000))
        _ = engine.handle(.observed(Self.observation(nodes: 3, volumes: [Self.volume("a", ["n1"])])), now: Instant(milliseconds: 1_001))
        let json = try JSONEncoder().encode(engine)
        let object = try JSONSerialization.jsonObject(with: json) as? [String: Any]
        #expect(object?["observationIndex"] == nil && object?["observation"] != nil)
        // Decoded, it holds no index yet (it builds one when it next handles an event): still the same engine.
        let decoded = try JSONDecoder().decode(RolloutEngine.self, from: json)
        #expect(decoded == engine)
    }
}
