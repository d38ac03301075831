import Testing
import UpkeepKube
@testable import UpkeepCLI

/// The pure rules of a safe Longhorn update: which volumes refuse it, which snapshots go, and
/// when a failed update may still be reverted.
@Suite struct LonghornSafetyTests {
    func volume(_ name: String, _ state: String, _ robustness: String, node: String = "n1") -> LonghornVolume {
        LonghornVolume(json: ["metadata": ["name": .string(name)],
                              "status": ["state": .string(state), "robustness": .string(robustness), "currentNodeID": .string(node)]])
    }

    @Test func attachedVolumesMustBeHealthyAndNoneFaulted() {
        let volumes = [volume("pvc-a", "attached", "healthy"), volume("pvc-b", "attached", "degraded", node: "n2"),
                       volume("pvc-c", "detached", "unknown", node: ""), volume("pvc-d", "detached", "faulted", node: "")]
        let blocking = LonghornVolumeHealth.blocking(volumes)
        #expect(blocking.map(\.name) == ["pvc-b", "pvc-d"])
        #expect(LonghornVolumeHealth.attached(volumes) == ["pvc-a", "pvc-b"])
        let message = LonghornRefusal.unhealthyVolumes(blocking).description
        #expect(message.contains("pvc-b (attached, degraded on n2)") && message.contains("pvc-d (detached, faulted)"), "\(message)")
        #expect(message.contains("then run the update again") && message.contains("nothing was committed"))
        #expect(LonghornRefusal.unhealthyVolumes(blocking).exitCode == 5 && LonghornRefusal.unreadable("x").exitCode == 8)
        #expect(LonghornVolumeHealth.blocking([volume("pvc-a", "attached", "healthy"), volume("pvc-c", "detached", "unknown")]).isEmpty)
    }

    @Test func theSnapshotsOfAllButTheNewestUpdatesGo() {
        func snap(_ name: String, _ update: String, _ created: String) -> SnapshotRetention.Snapshot {
            SnapshotRetention.Snapshot(name: name, update: update, created: created)
        }
        let snapshots = [snap("a1", "u1", "2026-12-01T10:00:00Z"), snap("a2", "u1", "2026-12-01T10:00:01Z"),
                         snap("b1", "u2", "2026-12-02T10:00:00Z"), snap("c1", "u3", "2026-12-03T10:00:00Z"),
                         snap("c2", "u3", "2026-12-03T10:00:02Z")]
        #expect(SnapshotRetention.doomed(snapshots, keep: 2) == ["a1", "a2"])
        #expect(SnapshotRetention.doomed(snapshots, keep: 1) == ["a1", "a2", "b1"])
        #expect(SnapshotRetention.doomed(snapshots, keep: 3).isEmpty)
        #expect(SnapshotRetention.doomed(snapshots, keep: 0) == ["a1", "a2", "b1"], "the newest update's snapshots always stay")
    }

    @Test func aRevertIsAllowedOnlyWhileTheManagerRunsTheOldVersion() throws {
        let from = try #require(LonghornVersion("v1.8.2"))
        #expect(LonghornManagerState(reportedVersion: "v1.8.2", managerImageTags: ["v1.8.2"]).moved(from: from) == nil)
        #expect(LonghornManagerState(reportedVersion: "v1.9.1", managerImageTags: ["v1.9.1"]).moved(from: from)?
            .contains("reports v1.9.1") == true)
        #expect(LonghornManagerState(reportedVersion: "v1.8.2", managerImageTags: ["v1.9.1"]).moved(from: from)?
            .contains("DaemonSet runs v1.9.1") == true, "the DaemonSet rolled before the setting changed")
        #expect(LonghornManagerState(reportedVersion: nil, managerImageTags: []).moved(from: from) != nil, "unknown counts as moved")
    }

    @Test func enginesMoveOneVolumeAtATimeUnlessLonghornDoesItAndEndHealthy() {
        let old = "longhornio/longhorn-engine:v1.7.2", new = "longhornio/longhorn-engine:v1.8.2"
        func engine(_ name: String, _ state: String = "attached", _ robustness: String = "healthy", image: String, current: String) -> EngineVolume {
            EngineVolume(name: name, state: state, robustness: robustness, image: image, currentImage: current)
        }
        var volumes = [engine("pvc-b", image: old, current: old), engine("pvc-a", image: old, current: old),
                       engine("pvc-c", "detached", "unknown", image: old, current: old)]
        #expect(EngineUpgradeStep.next(volumes, engine: new, automaticPerNode: 0) == .upgrade("pvc-a"), "by name; detached ones are not waited for")
        if case .waiting(let reason) = EngineUpgradeStep.next(volumes, engine: new, automaticPerNode: 2) {
            #expect(reason.contains("Longhorn upgrades the engines itself") && reason.contains("pvc-a, pvc-b"))
        } else { Issue.record("with the setting above 0 Upkeep only waits") }
        volumes[1].image = new
        #expect(EngineUpgradeStep.next(volumes, engine: new, automaticPerNode: 0) == .waiting("pvc-a is upgrading its engine to \(new) (runs \(old))"),
                "one at a time")
        volumes[1].currentImage = new
        volumes[0].robustness = "degraded"
        #expect(EngineUpgradeStep.next(volumes, engine: new, automaticPerNode: 0) == .waiting("a live engine upgrade needs healthy volumes: pvc-b"))
        volumes[0].robustness = "healthy"
        #expect(EngineUpgradeStep.next(volumes, engine: new, automaticPerNode: 0) == .upgrade("pvc-b"))
        volumes[0].image = new
        volumes[0].currentImage = new
        volumes[0].robustness = "degraded"
        #expect(EngineUpgradeStep.next(volumes, engine: new, automaticPerNode: 0) == .waiting("volumes not healthy after their engine upgrade: pvc-b"))
        volumes[0].robustness = "healthy"
        #expect(EngineUpgradeStep.next(volumes, engine: new, automaticPerNode: 0) == .done)
    }

    @Test func snapshotNamesAreDNSNamesThatNameTheUpdateAndTheVolume() {
        #expect(LonghornSnapshots.name(update: "u20261207-140000", volume: "pvc-840804d8-6f11-49fd-afae-54bc5be639de")
            == "upkeep-u20261207-140000-pvc-840804d8-6f11-49fd-afae-54bc5be639de")
        #expect(LonghornSnapshots.name(update: "u1", volume: String(repeating: "v", count: 300)).count == 253)
    }
}
