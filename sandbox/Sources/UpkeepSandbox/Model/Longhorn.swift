import UpkeepKube

/// Longhorn's behaviour: instance managers per node, replicas that stop with their node and
/// rebuild when it returns, volume robustness, the drain policy (through PodDisruptionBudgets
/// on instance-manager pods, as Longhorn does it), replica eviction, and snapshots.
extension ClusterModel {
    static let longhornNamespace = "longhorn-system"
    static let instanceManagerLabel = "longhorn.io/instance-manager-name"

    static func instanceManagerName(_ node: String) -> String {
        "instance-manager-" + StableHash.hex("im/\(node)", length: 16) + StableHash.hex("im2/\(node)", length: 16)
    }

    public func longhornSetting(_ name: String) -> String? {
        store.get(.longhornSettings, Self.longhornNamespace, name)?["value"]?.string
    }

    /// The instance-manager pod of `node` (not terminating), if any.
    func instanceManagerPod(_ node: String) -> Pod? {
        let name = Self.instanceManagerName(node)
        return store.get(.pods, Self.longhornNamespace, name).map(Pod.init).flatMap { $0.isTerminating ? nil : $0 }
    }

    /// Replicas on `node` can run: its instance manager is up and its kubelet alive.
    func replicasCanRun(_ node: String) -> Bool {
        kubeletUp(node) && (instanceManagerPod(node)?.isReady ?? false)
    }

    mutating func reconcileLonghornInstanceManagers() {
        let image = "longhornio/longhorn-instance-manager:\(longhornSetting("current-longhorn-version") ?? spec.longhornVersion)"
        for node in store.list(.nodes).map(Node.init) {
            let name = Self.instanceManagerName(node.name)
            if store.get(.longhornInstanceManagers, Self.longhornNamespace, name) == nil {
                _ = store.create(.longhornInstanceManagers, [
                    "metadata": ["name": .string(name), "namespace": .string(Self.longhornNamespace),
                                 "labels": ["longhorn.io/component": "instance-manager", "longhorn.io/node": .string(node.name),
                                            "longhorn.io/instance-manager-type": "aio"]],
                    "spec": ["nodeID": .string(node.name), "type": "aio", "dataEngine": "v1", "image": .string(image)],
                ], now: now)
            }
            let manager = store.get(.longhornInstanceManagers, Self.longhornNamespace, name)!
            // Longhorn does not bring an instance manager back on a cordoned node.
            if store.get(.pods, Self.longhornNamespace, name) == nil && !node.unschedulable {
                _ = store.create(.pods, [
                    "metadata": ["name": .string(name), "namespace": .string(Self.longhornNamespace),
                                 "labels": ["longhorn.io/component": "instance-manager", "longhorn.io/node": .string(node.name),
                                            "longhorn.io/instance-manager-type": "aio", Self.instanceManagerLabel: .string(name)],
                                 "ownerReferences": [Self.ownerReference(manager)]],
                    "spec": ["nodeName": .string(node.name), "containers": [["name": "instance-manager", "image": .string(image)]],
                             "terminationGracePeriodSeconds": 30, "restartPolicy": "Never"],
                    "status": ["phase": "Pending"],
                ], now: now)
            }
            var updated = manager
            updated[path: "status", "currentState"] = replicasCanRun(node.name) ? "running" : (instanceManagerPod(node.name) == nil ? "stopped" : "starting")
            updated[path: "status", "ownerID"] = .string(node.name)
            store.update(.longhornInstanceManagers, updated)
        }
    }

    mutating func reconcileLonghorn() {
        reconcileReplicas()
        reconcileVolumes()
        reconcileReplicaEviction()
        reconcileLonghornNodes()
        reconcileDrainPolicy()
        reconcileSnapshots()
        reconcileEngineImages()
    }

    /// The engine image of Longhorn `version` (the `default-engine-image` setting's value).
    static func engineImage(_ version: String) -> String { "longhornio/longhorn-engine:\(version)" }

    /// A live engine upgrade takes this long.
    static let engineUpgradeSeconds = 1.0

    /// Engine upgrades. A volume whose `spec.image` is not its `status.currentImage` runs the new
    /// engine at once when detached, and `engineUpgradeSeconds` later when attached and healthy
    /// (a live upgrade: https://longhorn.io/docs/1.12.2/deploy/upgrade/upgrade-engine/). With
    /// `concurrent-automatic-engine-upgrade-per-node-limit` above 0 Longhorn sets `spec.image` to
    /// the default engine image itself, at most that many attached volumes per node at once
    /// (https://longhorn.io/docs/latest/references/settings/#concurrent-automatic-engine-upgrade-per-node-limit);
    /// at 0 (the sandbox's seed) nothing moves until someone sets `spec.image`.
    private mutating func reconcileEngineImages() {
        let defaultImage = longhornSetting("default-engine-image") ?? ""
        let limit = Int(longhornSetting("concurrent-automatic-engine-upgrade-per-node-limit") ?? "0") ?? 0
        var upgrading: [String: Int] = [:]
        for volume in store.list(.longhornVolumes).map(LonghornVolume.init) where volume.state == "attached" && volume.image != volume.currentImage {
            upgrading[volume.currentNodeID, default: 0] += 1
        }
        for object in store.list(.longhornVolumes) {
            let volume = LonghornVolume(json: object)
            var updated = object
            var wanted = volume.image
            if limit > 0, !defaultImage.isEmpty, wanted == volume.currentImage, volume.currentImage != defaultImage,
               volume.state != "attached" || (volume.robustness == "healthy" && upgrading[volume.currentNodeID, default: 0] < limit) {
                wanted = defaultImage
                updated[path: "spec", "image"] = .string(wanted)
                if volume.state == "attached" { upgrading[volume.currentNodeID, default: 0] += 1 }
            }
            if wanted.isEmpty || wanted == volume.currentImage {
                engineUpgradeStartedAt[volume.name] = nil
            } else if volume.state != "attached" {
                updated[path: "status", "currentImage"] = .string(wanted)
            } else if volume.robustness == "healthy" || engineUpgradeStartedAt[volume.name] != nil {
                let start = engineUpgradeStartedAt[volume.name] ?? now
                engineUpgradeStartedAt[volume.name] = start
                if now - start >= Self.engineUpgradeSeconds {
                    updated[path: "status", "currentImage"] = .string(wanted)
                    engineUpgradeStartedAt[volume.name] = nil
                    record("EngineUpgraded", volume.name, "engine of \(volume.name) now runs \(wanted)")
                }
            }
            if updated != object { store.update(.longhornVolumes, updated) }
        }
    }

    private mutating func reconcileReplicas() {
        for replica in store.list(.longhornReplicas) {
            let view = LonghornReplica(json: replica)
            let volume = store.get(.longhornVolumes, Self.longhornNamespace, view.volumeName).map(LonghornVolume.init)
            let attached = volume?.state == "attached"
            var updated = replica
            if attached && replicasCanRun(view.nodeID) {
                if !view.failedAt.isEmpty || view.healthyAt.isEmpty {
                    let start = rebuildStartedAt[view.uid] ?? now
                    rebuildStartedAt[view.uid] = start
                    if now - start >= rebuildSecondsByNode[view.nodeID] ?? timings.rebuildSeconds {
                        updated[path: "spec", "healthyAt"] = .string(KubeTime.format(now))
                        updated[path: "spec", "failedAt"] = ""
                        rebuildStartedAt[view.uid] = nil
                        record("ReplicaRebuilt", view.name, "replica of \(view.volumeName) on \(view.nodeID) is healthy again")
                    }
                }
                updated[path: "status", "currentState"] = "running"
            } else {
                if attached && view.currentState == "running" && view.failedAt.isEmpty && !view.healthyAt.isEmpty {
                    updated[path: "spec", "failedAt"] = .string(KubeTime.format(now))
                    record("ReplicaFailed", view.name, "replica of \(view.volumeName) on \(view.nodeID) stopped")
                }
                rebuildStartedAt[view.uid] = nil
                updated[path: "status", "currentState"] = "stopped"
            }
            updated[path: "status", "instanceManagerName"] = .string(Self.instanceManagerName(view.nodeID))
            updated[path: "status", "ownerID"] = .string(view.nodeID)
            store.update(.longhornReplicas, updated)
        }
    }

    func replicas(of volume: String) -> [LonghornReplica] {
        store.list(.longhornReplicas, namespace: Self.longhornNamespace).map(LonghornReplica.init).filter { $0.volumeName == volume }
    }

    private mutating func reconcileVolumes() {
        let nodes = store.list(.nodes).map(Node.init)
        var attachedPerNode: [String: Int] = [:]
        for volume in store.list(.longhornVolumes).map(LonghornVolume.init) where !volume.currentNodeID.isEmpty {
            attachedPerNode[volume.currentNodeID, default: 0] += 1
        }
        for object in store.list(.longhornVolumes) {
            let volume = LonghornVolume(json: object)
            var updated = object
            let replicas = replicas(of: volume.name)
            let wanted = object[path: "spec", "nodeID"]?.string ?? ""
            if wanted.isEmpty {
                updated[path: "status", "state"] = "detached"
                updated[path: "status", "robustness"] = "unknown"
                updated[path: "status", "currentNodeID"] = ""
            } else {
                var node = volume.currentNodeID.isEmpty ? wanted : volume.currentNodeID
                // The engine follows its workload off a drained node.
                if instanceManagerPod(node) == nil, nodeObject(node)?.unschedulable ?? true {
                    let candidates = nodes.filter { !$0.unschedulable && replicasCanRun($0.name) }
                    let holders = Set(replicas.filter { $0.isHealthy }.map(\.nodeID))
                    if let target = candidates.min(by: {
                        (holders.contains($0.name) ? 0 : 1, attachedPerNode[$0.name] ?? 0, $0.name)
                            < (holders.contains($1.name) ? 0 : 1, attachedPerNode[$1.name] ?? 0, $1.name)
                    }) {
                        attachedPerNode[node, default: 1] -= 1
                        attachedPerNode[target.name, default: 0] += 1
                        record("VolumeMoved", volume.name, "engine moved from \(node) to \(target.name)")
                        node = target.name
                        updated[path: "spec", "nodeID"] = .string(node)
                    }
                }
                updated[path: "status", "currentNodeID"] = .string(node)
                // Until the engine's node has come up once, the volume is still attaching.
                if runtimes[node]?.lastHeartbeat == nil {
                    updated[path: "status", "state"] = "attaching"
                    updated[path: "status", "robustness"] = "unknown"
                    store.update(.longhornVolumes, updated)
                    continue
                }
                updated[path: "status", "state"] = "attached"
                let running = replicas.filter { $0.isHealthy && store.get(.longhornReplicas, Self.longhornNamespace, $0.name)?[path: "status", "currentState"]?.string == "running" }
                let robustness = running.isEmpty ? "faulted" : (running.count >= Int(volume.numberOfReplicas) ? "healthy" : "degraded")
                if robustness == "degraded" && volume.robustness != "degraded" {
                    updated[path: "status", "lastDegradedAt"] = .string(KubeTime.format(now))
                }
                if robustness != volume.robustness {
                    record("VolumeRobustness", volume.name, "\(volume.robustness) -> \(robustness)")
                }
                updated[path: "status", "robustness"] = .string(robustness)
            }
            store.update(.longhornVolumes, updated)
        }
    }

    /// With a `block-for-eviction*` policy, replicas on a cordoned node get a new copy elsewhere;
    /// the old one goes once the copy is healthy.
    private mutating func reconcileReplicaEviction() {
        let policy = longhornSetting("node-drain-policy") ?? "block-if-contains-last-replica"
        guard policy == "block-for-eviction" || policy == "block-for-eviction-if-contains-last-replica" else { return }
        let nodes = store.list(.nodes).map(Node.init)
        for node in nodes where node.unschedulable {
            for replica in store.list(.longhornReplicas).map(LonghornReplica.init) where replica.nodeID == node.name {
                let siblings = replicas(of: replica.volumeName).filter { $0.name != replica.name }
                let healthySiblings = siblings.filter(\.isHealthy)
                if policy == "block-for-eviction-if-contains-last-replica" && !healthySiblings.isEmpty && replica.isHealthy { continue }
                let replacement = siblings.first { $0.labels["longhorn.io/evicted-from"] == replica.name }
                if let replacement {
                    if replacement.isHealthy {
                        store.delete(.longhornReplicas, Self.longhornNamespace, replica.name)
                        record("ReplicaEvicted", replica.name, "replica of \(replica.volumeName) moved from \(node.name) to \(replacement.nodeID)")
                    }
                    continue
                }
                let used = Set(siblings.map(\.nodeID) + [node.name])
                let target = nodes.filter { !$0.unschedulable && !used.contains($0.name) && replicasCanRun($0.name) }.map(\.name).sorted().first
                if let target {
                    createReplica(volume: replica.volumeName, node: target, healthy: false, evictedFrom: replica.name)
                }
            }
        }
    }

    @discardableResult
    mutating func createReplica(volume: String, node: String, healthy: Bool, evictedFrom: String? = nil) -> JSON? {
        let name = nextName("\(volume)-r")
        var labels: JSON = ["longhornvolume": .string(volume), "longhornnode": .string(node)]
        if let evictedFrom { labels["longhorn.io/evicted-from"] = .string(evictedFrom) }
        let owner = store.get(.longhornVolumes, Self.longhornNamespace, volume).map { Self.ownerReference($0) }
        var metadata: JSON = ["name": .string(name), "namespace": .string(Self.longhornNamespace), "labels": labels]
        if let owner { metadata["ownerReferences"] = [owner] }
        return store.create(.longhornReplicas, [
            "metadata": metadata,
            "spec": ["volumeName": .string(volume), "nodeID": .string(node), "diskID": .string(StableHash.hex("disk/\(node)", length: 32)),
                     "dataEngine": "v1", "healthyAt": healthy ? .string(KubeTime.format(now)) : "", "failedAt": "",
                     "evictionRequested": false, "active": true],
            "status": ["currentState": "stopped"],
        ], now: now)
    }

    private mutating func reconcileLonghornNodes() {
        for node in store.list(.nodes).map(Node.init) {
            var object = store.get(.longhornNodes, Self.longhornNamespace, node.name) ?? {
                store.create(.longhornNodes, [
                    "metadata": ["name": .string(node.name), "namespace": .string(Self.longhornNamespace)],
                    "spec": ["allowScheduling": true, "evictionRequested": false, "name": .string(node.name),
                             "disks": ["default-disk-\(StableHash.hex("disk/\(node.name)", length: 12))":
                                ["path": "/var/lib/longhorn/", "allowScheduling": true, "storageReserved": 0, "diskType": "filesystem"]]],
                ], now: now)!
            }()
            let ready = kubeletUp(node.name)
            object[path: "status", "conditions"] = [
                Self.condition(object, "Ready", ready, reason: ready ? "" : "KubernetesNodeNotReady", now: now),
                Self.condition(object, "Schedulable", !node.unschedulable, reason: node.unschedulable ? "KubernetesNodeCordoned" : "", now: now),
                Self.condition(object, "MountPropagation", true, reason: "", now: now),
            ]
            store.update(.longhornNodes, object)
        }
    }

    /// A condition entry keeping its transition time while its status is unchanged.
    static func condition(_ object: JSON, _ type: String, _ value: Bool, reason: String, message: String = "", now: Double) -> JSON {
        let status = value ? "True" : "False"
        let previous = object[path: "status", "conditions"]?.array?.first { $0["type"]?.string == type }
        let time = previous?["status"]?.string == status ? (previous?["lastTransitionTime"] ?? .string(KubeTime.format(now)))
            : .string(KubeTime.format(now))
        return ["type": .string(type), "status": .string(status), "reason": .string(reason), "message": .string(message),
                "lastTransitionTime": time]
    }

    /// Whether Longhorn's `node-drain-policy` blocks draining `node` now.
    public func longhornBlocksDrain(of node: String) -> Bool {
        let policy = longhornSetting("node-drain-policy") ?? "block-if-contains-last-replica"
        let onNode = store.list(.longhornReplicas, namespace: Self.longhornNamespace).map(LonghornReplica.init).filter { $0.nodeID == node }
        switch policy {
        case "always-allow":
            return false
        case "block-for-eviction":
            return !onNode.isEmpty
        case "block-if-contains-last-replica", "block-for-eviction-if-contains-last-replica", "allow-if-replica-is-stopped":
            let requireRunning = policy == "allow-if-replica-is-stopped"
            return onNode.contains { replica in
                guard replica.isHealthy, !requireRunning || replica.currentState == "running" else { return false }
                return replicas(of: replica.volumeName).filter(\.isHealthy).count == 1
            }
        default:
            return true
        }
    }

    /// Longhorn keeps a PodDisruptionBudget on the instance-manager pod of every node it must
    /// not let go; `kubectl drain` then gets 429 for that pod until the budget is removed.
    private mutating func reconcileDrainPolicy() {
        for node in store.list(.nodes).map(Node.init) {
            let name = Self.instanceManagerName(node.name)
            let exists = store.get(.podDisruptionBudgets, Self.longhornNamespace, name) != nil
            let block = longhornBlocksDrain(of: node.name)
            if block && !exists {
                _ = store.create(.podDisruptionBudgets, [
                    "metadata": ["name": .string(name), "namespace": .string(Self.longhornNamespace),
                                 "labels": ["longhorn.io/component": "instance-manager"]],
                    "spec": ["minAvailable": 1, "selector": ["matchLabels": [Self.instanceManagerLabel: .string(name)]]],
                ], now: now)
            } else if !block && exists {
                store.delete(.podDisruptionBudgets, Self.longhornNamespace, name)
            }
        }
    }

    private mutating func reconcileSnapshots() {
        for object in store.list(.longhornSnapshots) {
            let snapshot = LonghornSnapshot(json: object)
            guard !snapshot.readyToUse else { continue }
            var updated = object
            guard let volume = store.get(.longhornVolumes, Self.longhornNamespace, snapshot.volume).map(LonghornVolume.init) else {
                updated[path: "status", "error"] = .string("volume \(snapshot.volume) not found")
                updated[path: "status", "readyToUse"] = false
                store.update(.longhornSnapshots, updated)
                continue
            }
            let created = snapshot.creationTimestamp ?? now
            // A snapshot is taken by the engine: only an attached volume with a running engine completes one.
            if volume.state == "attached", replicasCanRun(volume.currentNodeID), now - created >= timings.snapshotSeconds,
               !longhornFaults.snapshotStuck(of: snapshot.volume) {
                updated[path: "status", "readyToUse"] = true
                updated[path: "status", "creationTime"] = .string(KubeTime.format(now))
                updated[path: "status", "size"] = .string(String(StableHash.fnv1a(snapshot.name) % 500_000_000))
                updated[path: "status", "userCreated"] = true
                updated[path: "status", "markRemoved"] = false
                updated[path: "status", "error"] = ""
                updated[path: "status", "labels"] = object[path: "spec", "labels"] ?? [:]
                record("SnapshotReady", snapshot.name, "snapshot of \(snapshot.volume) is ready")
            } else {
                updated[path: "status", "readyToUse"] = false
            }
            store.update(.longhornSnapshots, updated)
        }
    }
}
