import Foundation
import UpkeepKube

/// The Longhorn snapshots an update takes before its commit: one `longhorn.io/v1beta2` Snapshot
/// with `spec.createSnapshot: true` per attached volume, labelled `upkeep.io/update: <id>`,
/// waited for `status.readyToUse` at most `readySeconds`; once they are ready, the snapshots of
/// all but the newest `snapshotsKept` updates are removed. The Snapshot CRD is Longhorn's
/// (https://github.com/longhorn/longhorn-manager/blob/master/k8s/pkg/apis/longhorn/v1beta2/snapshot.go);
/// the volume's engine takes it, so a detached volume's snapshot completes only once it is
/// attached: only attached volumes are snapshotted. It never touches a snapshot without the label.
struct LonghornSnapshots {
    let kube: KubeClient
    var policy: ControllerConfig.Longhorn
    var pollSeconds = 1.0
    static let namespace = "longhorn-system"
    static let updateLabel = "upkeep.io/update"

    /// `upkeep-<update>-<volume>`, a DNS subdomain of at most 253 characters.
    static func name(update: String, volume: String) -> String {
        var name = "upkeep-\(update)-\(volume)".lowercased().prefix(253)
        while name.last == "-" || name.last == "." { name = name.dropLast() }
        return String(name)
    }

    /// Refuses when a volume is unhealthy; else takes and waits for one snapshot per attached
    /// volume and returns their names. Snapshots that do not become ready in time are removed
    /// again and the update refused (`LonghornRefusal.snapshotsNotReady`).
    func take(update: String, say: (String) -> Void) async throws -> [String] {
        let attached = LonghornVolumeHealth.attached(try await Self.healthyVolumes(kube))
        guard !attached.isEmpty else {
            say("no attached Longhorn volume: no snapshot to take")
            return []
        }
        var made: [LonghornSnapshotWait] = []
        for volume in attached {
            let name = Self.name(update: update, volume: volume)
            var snapshot = LonghornSnapshot(name: name, volume: volume, namespace: Self.namespace, labels: [Self.updateLabel: update])
            snapshot.json[path: "metadata", "labels"] = [Self.updateLabel: .string(update)]
            do {
                _ = try await kube.create(snapshot)
            } catch {
                await remove(made.map(\.snapshot), say: say)
                throw LonghornRefusal.unreadable("cannot create the Longhorn snapshot \(name) of \(volume): \(error)").failure
            }
            made.append(LonghornSnapshotWait(snapshot: name, volume: volume, error: ""))
        }
        say("taking \(made.count) Longhorn snapshot(s) labelled \(Self.updateLabel)=\(update); waiting for them (at most \(policy.snapshotReadySeconds) s)")
        let deadline = Date().addingTimeInterval(Double(policy.snapshotReadySeconds))
        var pending = made
        while true {
            var still: [LonghornSnapshotWait] = []
            for wait in pending {
                let snapshot = try? await kube.get(LonghornSnapshot.self, wait.snapshot, namespace: Self.namespace)
                if snapshot?.readyToUse == true { continue }
                still.append(LonghornSnapshotWait(snapshot: wait.snapshot, volume: wait.volume, error: snapshot?.error ?? "not readable"))
            }
            pending = still
            if pending.isEmpty { break }
            guard Date() < deadline else {
                say("Longhorn snapshots not ready within \(policy.snapshotReadySeconds) s: \(pending.map(\.snapshot).joined(separator: ", ")); removing this update's snapshots")
                await remove(made.map(\.snapshot), say: say)
                throw LonghornRefusal.snapshotsNotReady(pending, seconds: policy.snapshotReadySeconds).failure
            }
            try? await Task.sleep(nanoseconds: UInt64(pollSeconds * 1e9))
        }
        say("Longhorn snapshots ready: \(made.map(\.snapshot).joined(separator: ", "))")
        await prune(say: say)
        return made.map(\.snapshot)
    }

    /// Longhorn's volumes, when every attached one is healthy and none faulted; else the refusal
    /// naming them (or that they could not be read).
    static func healthyVolumes(_ kube: KubeClient) async throws -> [LonghornVolume] {
        let volumes: [LonghornVolume]
        do {
            volumes = try await kube.list(LonghornVolume.self, namespace: namespace)
        } catch {
            throw LonghornRefusal.unreadable("cannot list Longhorn volumes: \(error)").failure
        }
        let blocking = LonghornVolumeHealth.blocking(volumes)
        guard blocking.isEmpty else { throw LonghornRefusal.unhealthyVolumes(blocking).failure }
        return volumes
    }

    /// Removes the upkeep-labelled snapshots of all but the newest `snapshotsKept` updates.
    /// A failure is said, not thrown: the update does not depend on it.
    func prune(say: (String) -> Void) async {
        let listed: [LonghornSnapshot]
        do {
            listed = try await kube.list(LonghornSnapshot.self, namespace: Self.namespace, labelSelector: LabelSelector([.exists(Self.updateLabel)]))
        } catch {
            say("warning: cannot list Upkeep's Longhorn snapshots to remove old ones: \(error)")
            return
        }
        let snapshots = listed.map {
            SnapshotRetention.Snapshot(name: $0.name, update: $0.labels[Self.updateLabel] ?? "",
                                       created: $0.json[path: "metadata", "creationTimestamp"]?.string ?? "")
        }
        let doomed = SnapshotRetention.doomed(snapshots, keep: policy.snapshotsKept)
        guard !doomed.isEmpty else { return }
        say("removing \(doomed.count) Longhorn snapshot(s) of earlier updates (longhorn.snapshots.keep: \(policy.snapshotsKept))")
        await remove(doomed, say: say)
    }

    private func remove(_ names: [String], say: (String) -> Void) async {
        for name in names {
            do {
                try await kube.delete(LonghornSnapshot.resource, name, namespace: Self.namespace)
            } catch {
                say("warning: cannot remove the Longhorn snapshot \(name): \(error)")
            }
        }
    }
}
