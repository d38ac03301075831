import UpkeepKube

/// The deterministic behaviour model of a sandbox k3s cluster with Longhorn and Flux.
///
/// It holds every API object and the controllers' behaviour (node lifecycle, scheduling,
/// deployments, daemon sets, disruption budgets, Longhorn replicas and volumes, Flux readiness).
/// Time is whatever the caller passes: tests drive it, the real-time driver passes the wall
/// clock. It never reads a clock, the network or the disk, and never draws random numbers.
public struct ClusterModel: Sendable {
    public var store = ObjectStore()
    public let spec: ClusterSpec
    public var timings: ModelTimings
    public internal(set) var now: Double
    public private(set) var runtimes: [String: NodeRuntime] = [:]
    public private(set) var events: [ModelEvent] = []
    /// Flux objects (`<kind>/<namespace>/<name>`) held not Ready by a fault.
    public var fluxFaults: [String: FluxFault] = [:]
    /// Applying new Flux components fails (the flux-system Kustomization turns not Ready).
    public var fluxUpgradeFails = false
    /// Longhorn faults the sandbox sets (`upkeep sandbox fault longhorn …`).
    public var longhornFaults = LonghornFaults()
    /// Why the Longhorn HelmRelease's last install failed after Helm started it (the new manager
    /// already running, or a downgrade Longhorn blocked); nil once one succeeds.
    public internal(set) var longhornHelmFailure: FluxFault?
    /// The revision Flux's source last fetched (`main@sha1:…`) when a real repository is watched.
    public internal(set) var gitRevision: String?
    /// A commit of the watched branch not fetched yet (the GitRepository is suspended).
    var gitPending: GitCommit?
    /// The commit last fetched, and the one the `flux-system` Kustomization last applied.
    var gitFetched: GitCommit?
    var gitAppliedSHA: String?
    /// A chart version the Longhorn HelmRelease has not tried to install yet (it is suspended).
    var helmPendingChart: String?
    /// Writes to these resources (plural names) stall this many seconds and then fail with 504,
    /// unapplied (a sandbox fault: an API server that times out; a client caught between two writes).
    public var apiWriteStallSeconds: [String: Double] = [:]
    /// Nodes whose path to the cluster DNS Service is broken (`upkeep sandbox fault NODE dns-down`).
    public var clusterDNSBroken: Set<String> = []
    /// What the cluster DNS model answered, by outcome (`ClusterDNSOutcome`).
    public internal(set) var clusterDNSCounts: [String: Int] = [:]

    // Controller memory that is not part of any object.
    var podScheduledAt: [String: Double] = [:]
    /// When each terminating pod may go: `deletionTimestamp` has whole seconds only, so alone it
    /// would let a pod go up to a second before its grace period ends.
    var podDeletionDueAt: [String: Double] = [:]
    var rebuildStartedAt: [String: Double] = [:]
    /// When each attached volume's live engine upgrade began (volume name).
    var engineUpgradeStartedAt: [String: Double] = [:]
    /// Replicas on these nodes rebuild this long instead of `timings.rebuildSeconds` (a sandbox fault).
    public var rebuildSecondsByNode: [String: Double] = [:]
    var fluxSuspended: [String: Bool] = [:]
    var nameCounter: UInt64 = 0

    static let eventsMax = 1000

    public init(spec: ClusterSpec, timings: ModelTimings = ModelTimings(), now: Double) {
        self.spec = spec
        self.timings = timings
        self.now = now
        seed()
        reconcile()
    }

    // MARK: - Inputs from node processes

    /// The kubelet of `node` reported its status (ready or not) and the version it runs.
    public mutating func kubeletStatus(node: String, ready: Bool, version: String?, now: Double) {
        kubeletStatuses(nodes: [node], ready: ready, version: version, now: now)
    }

    /// Several kubelets reported at the same moment: controllers act once, after all of them.
    public mutating func kubeletStatuses(nodes: [String], ready: Bool, version: String?, now: Double) {
        self.now = max(self.now, now)
        for node in nodes { applyKubeletStatus(node: node, ready: ready, version: version, now: now) }
        reconcile()
    }

    private mutating func applyKubeletStatus(node: String, ready: Bool, version: String?, now: Double) {
        var runtime = runtimes[node] ?? NodeRuntime()
        runtime.kubeletReady = ready
        runtime.lastHeartbeat = now
        if let version { runtime.version = version }
        runtimes[node] = runtime
        if let version {
            store.modify(.nodes, nil, node) { object in
                object[path: "status", "nodeInfo", "kubeletVersion"] = .string(version)
                object[path: "status", "nodeInfo", "kubeProxyVersion"] = .string(version)
                object[path: "status", "nodeInfo", "containerRuntimeVersion"] = .string(Seed.containerdVersion(for: version))
            }
        }
    }

    /// The kubelet of `node` renewed its lease.
    public mutating func kubeletHeartbeat(node: String, now: Double) {
        self.now = max(self.now, now)
        runtimes[node, default: NodeRuntime()].lastHeartbeat = now
    }

    /// Nodes whose kubelet the model plays itself (no fake k3s process): each `advance` counts
    /// as a ready heartbeat at the spec's version. For API-only tests and benchmarks.
    public var virtualKubelets: Set<String> = []

    /// Moves the model's clock forward and lets every controller act.
    public mutating func advance(to now: Double) {
        self.now = max(self.now, now)
        for node in virtualKubelets.sorted() {
            var runtime = runtimes[node] ?? NodeRuntime()
            if runtime.version == nil { runtime.version = nodeObject(node)?.kubeletVersion ?? spec.k3sVersion }
            runtime.kubeletReady = true
            runtime.lastHeartbeat = self.now
            runtimes[node] = runtime
        }
        reconcile()
    }

    /// The cluster installed anew, its objects as first seeded (its datastore was wiped, and a
    /// new k3s cluster starts empty); its kubelets, faults, events and clock carry on.
    public mutating func reinstall(now: Double) {
        var fresh = ClusterModel(spec: spec, timings: timings, now: max(self.now, now))
        fresh.runtimes = runtimes
        fresh.events = events
        fresh.fluxFaults = fluxFaults
        fresh.fluxUpgradeFails = fluxUpgradeFails
        fresh.longhornFaults = longhornFaults
        fresh.rebuildSecondsByNode = rebuildSecondsByNode
        fresh.virtualKubelets = virtualKubelets
        // Flux is installed anew following the repository the sandbox serves, not the seed's default.
        if let source = store.get(.fluxGitRepositories, "flux-system", "flux-system")?["spec"] {
            fresh.store.modify(.fluxGitRepositories, "flux-system", "flux-system") { $0["spec"] = source }
        }
        fresh.store = fresh.store.renumbered(after: store)
        fresh.record("Reinstalled", "cluster", "the datastore was empty: the cluster starts anew")
        self = fresh
    }

    mutating func record(_ kind: String, _ object: String, _ message: String) {
        events.append(ModelEvent(time: now, kind: kind, object: object, message: message))
        if events.count > Self.eventsMax { events.removeFirst(events.count - Self.eventsMax) }
    }

    // MARK: - Derived state

    /// The node's kubelet is up: said ready, and its last heartbeat is within the grace period.
    public func kubeletUp(_ node: String) -> Bool {
        guard let runtime = runtimes[node], runtime.kubeletReady, let last = runtime.lastHeartbeat else { return false }
        return now - last <= timings.nodeGraceSeconds
    }

    func nodeObject(_ name: String) -> Node? { store.get(.nodes, nil, name).map(Node.init) }

    mutating func nextName(_ base: String) -> String {
        nameCounter += 1
        return "\(base)-\(StableHash.suffix("\(base)#\(nameCounter)"))"
    }

    // MARK: - Controllers

    /// Every controller once, in a fixed order. Idempotent at a fixed `now`.
    mutating func reconcile() {
        reconcileGarbage()
        reconcileNodes()
        reconcileLonghornInstanceManagers()
        reconcileDeployments()
        reconcileDaemonSets()
        reconcileStatefulSets()
        reconcilePods()
        reconcileWorkloadStatus()
        reconcileLonghorn()
        reconcileDisruptionBudgets()
        reconcileGit()
        reconcileFlux()
    }

    /// The garbage collector: objects whose controlling owner is gone go too.
    mutating func reconcileGarbage() {
        var uids = Set<String>()
        for type in [ResourceType.deployments, .replicaSets, .daemonSets, .statefulSets, .longhornInstanceManagers, .longhornVolumes] {
            for object in store.list(type) { uids.insert(object[path: "metadata", "uid"]?.string ?? "") }
        }
        for type in [ResourceType.replicaSets, .pods, .longhornReplicas] {
            for object in store.list(type) {
                guard let owner = (object[path: "metadata", "ownerReferences"]?.array ?? []).first(where: { $0["controller"]?.bool == true }),
                      let uid = owner["uid"]?.string, !uids.contains(uid)
                else { continue }
                if type == .pods {
                    terminate(object, graceSeconds: nil)
                } else {
                    store.delete(type, object[path: "metadata", "namespace"]?.string, object[path: "metadata", "name"]?.string ?? "")
                }
            }
        }
    }

    mutating func reconcileNodes() {
        for object in store.list(.nodes) {
            let name = Node(json: object).name
            let up = kubeletUp(name)
            var updated = object
            var conditions = object[path: "status", "conditions"]?.array ?? []
            let index = conditions.firstIndex { $0["type"]?.string == "Ready" }
            let old = index.map { conditions[$0] }
            let everReported = runtimes[name]?.lastHeartbeat != nil
            let status: String, reason: String, message: String
            if up {
                (status, reason, message) = ("True", "KubeletReady", "kubelet is posting ready status")
            } else if everReported, runtimes[name]?.kubeletReady == false, let last = runtimes[name]?.lastHeartbeat,
                      now - last <= timings.nodeGraceSeconds
            {
                (status, reason, message) = ("False", "KubeletNotReady", "container runtime status check may not have completed yet")
            } else {
                (status, reason, message) = ("Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.")
            }
            var ready: JSON = old ?? ["type": "Ready"]
            if ready["status"]?.string != status {
                ready["lastTransitionTime"] = .string(KubeTime.format(now))
                if old != nil { record("NodeReady", name, "Ready became \(status)") }
            }
            ready["status"] = .string(status)
            ready["reason"] = .string(reason)
            ready["message"] = .string(message)
            if let last = runtimes[name]?.lastHeartbeat { ready["lastHeartbeatTime"] = .string(KubeTime.format(last)) }
            if let index { conditions[index] = ready } else { conditions.append(ready) }
            updated[path: "status", "conditions"] = .array(conditions)

            // Taints the node lifecycle controller manages.
            var taints = (object[path: "spec", "taints"]?.array ?? []).filter {
                !["node.kubernetes.io/unschedulable", "node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"]
                    .contains($0["key"]?.string ?? "")
            }
            if Node(json: object).unschedulable {
                taints.append(["key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule",
                               "timeAdded": .string(Self.taintTime(object, "node.kubernetes.io/unschedulable", now))])
            }
            if status == "Unknown" && everReported {
                taints.append(["key": "node.kubernetes.io/unreachable", "effect": "NoSchedule",
                               "timeAdded": .string(Self.taintTime(object, "node.kubernetes.io/unreachable", now))])
            }
            updated[path: "spec", "taints"] = taints.isEmpty ? nil : .array(taints)
            store.update(.nodes, updated)
        }
    }

    static func taintTime(_ node: JSON, _ key: String, _ now: Double) -> String {
        (node[path: "spec", "taints"]?.array ?? []).first { $0["key"]?.string == key }?["timeAdded"]?.string ?? KubeTime.format(now)
    }

    /// Pods: scheduling, start-up, readiness, and removal after graceful termination.
    mutating func reconcilePods() {
        let nodes = store.list(.nodes).map(Node.init)
        var podsPerNode: [String: Int] = [:]
        for pod in store.list(.pods).map(Pod.init) where !pod.isTerminating {
            if let node = pod.nodeName { podsPerNode[node, default: 0] += 1 }
        }
        for object in store.list(.pods) {
            let pod = Pod(json: object)
            let namespace = pod.namespace ?? "default"
            if let deletion = pod.deletionTimestamp {
                // A pod on a node whose kubelet is down stays Terminating, as on a real cluster.
                let canFinish = pod.nodeName.map { kubeletUp($0) || nodeObject($0) == nil } ?? true
                if now >= podDeletionDueAt[pod.uid] ?? deletion, canFinish {
                    store.delete(.pods, namespace, pod.name)
                    podScheduledAt[pod.uid] = nil
                    podDeletionDueAt[pod.uid] = nil
                    continue
                }
                markPod(object, ready: false, phase: pod.phase)
                continue
            }
            guard let nodeName = pod.nodeName else {
                let candidates = nodes.filter { node in
                    !node.unschedulable && kubeletUp(node.name) && Self.selects(object[path: "spec", "nodeSelector"], node.labels)
                }
                if let target = candidates.min(by: { (podsPerNode[$0.name] ?? 0, $0.name) < (podsPerNode[$1.name] ?? 0, $1.name) }) {
                    bind(object, to: target.name)
                    podsPerNode[target.name, default: 0] += 1
                } else {
                    var updated = object
                    updated[path: "status", "phase"] = "Pending"
                    let unschedulable: JSON = [["type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                                "message": .string("0/\(nodes.count) nodes are available.")]]
                    updated[path: "status", "conditions"] = unschedulable
                    store.update(.pods, updated)
                }
                continue
            }
            if podScheduledAt[pod.uid] == nil { podScheduledAt[pod.uid] = now }
            let started = now - podScheduledAt[pod.uid]! >= timings.podStartSeconds
            let up = kubeletUp(nodeName)
            if up && started {
                markPod(object, ready: true, phase: "Running")
            } else if !up {
                // Pods keep their phase on an unreachable node; the node controller marks them not ready.
                markPod(object, ready: false, phase: pod.phase == "Running" ? "Running" : "Pending")
            } else {
                markPod(object, ready: false, phase: "Pending")
            }
        }
    }

    static func selects(_ nodeSelector: JSON?, _ labels: [String: String]) -> Bool {
        guard let selector = nodeSelector?.stringMap else { return true }
        return selector.allSatisfy { labels[$0.key] == $0.value }
    }

    mutating func bind(_ pod: JSON, to node: String) {
        var updated = pod
        updated[path: "spec", "nodeName"] = .string(node)
        store.update(.pods, updated)
        podScheduledAt[Pod(json: pod).uid] = now
    }

    mutating func markPod(_ object: JSON, ready: Bool, phase: String) {
        var updated = object
        let pod = Pod(json: object)
        let transition = KubeTime.format(now)
        let nodeIP = pod.nodeName.map { spec.address(of: $0) }
        func condition(_ type: String, _ value: Bool) -> JSON {
            let previous = pod.condition(type)
            let status = value ? "True" : "False"
            let time = previous?.status == status ? (object[path: "status", "conditions"]?.array?
                .first { $0["type"]?.string == type }?["lastTransitionTime"] ?? .string(transition)) : .string(transition)
            return ["type": .string(type), "status": .string(status), "lastTransitionTime": time]
        }
        updated[path: "status", "phase"] = .string(phase)
        updated[path: "status", "conditions"] = [
            condition("PodReadyToStartContainers", phase == "Running"), condition("Initialized", true),
            condition("Ready", ready), condition("ContainersReady", ready), condition("PodScheduled", true),
        ]
        if let nodeIP {
            updated[path: "status", "hostIP"] = .string(nodeIP)
            updated[path: "status", "hostIPs"] = [["ip": .string(nodeIP)]]
        }
        if phase == "Running", object[path: "status", "podIP"] == nil {
            let ip: String
            if object[path: "spec", "hostNetwork"]?.bool == true, let nodeIP {
                ip = nodeIP
            } else {
                let h = StableHash.fnv1a(pod.uid)
                ip = "10.42.\(h % 200).\(2 + (h >> 8) % 250)"
            }
            updated[path: "status", "podIP"] = .string(ip)
            updated[path: "status", "podIPs"] = [["ip": .string(ip)]]
            updated[path: "status", "startTime"] = .string(transition)
        }
        let containers = object[path: "spec", "containers"]?.array ?? []
        updated[path: "status", "containerStatuses"] = .array(containers.map { container in
            let previous = (object[path: "status", "containerStatuses"]?.array ?? []).first { $0["name"] == container["name"] }
            var status: JSON = ["name": container["name"] ?? "", "image": container["image"] ?? "",
                                "ready": .bool(ready), "restartCount": 0, "started": .bool(phase == "Running")]
            if phase == "Running" {
                status["state"] = previous?["state"]?["running"] != nil ? previous!["state"]! : ["running": ["startedAt": .string(transition)]]
            } else {
                status["state"] = ["waiting": ["reason": "ContainerCreating"]]
            }
            return status
        })
        store.update(.pods, updated)
    }

    /// Creates a pod from a template, owned by `owner`.
    @discardableResult
    /// A pod from `template`, named `name` or else `baseName` and a generated suffix.
    mutating func createPod(namespace: String, baseName: String, name: String? = nil, template: JSON, owner: JSON, nodeName: String? = nil,
                            extraLabels: [String: String] = [:]) -> JSON?
    {
        let name = name ?? nextName(baseName)
        var labels = template[path: "metadata", "labels"] ?? [:]
        for (key, value) in extraLabels { labels[key] = .string(value) }
        var podSpec = template["spec"] ?? [:]
        if let nodeName { podSpec["nodeName"] = .string(nodeName) }
        if podSpec["terminationGracePeriodSeconds"] == nil { podSpec["terminationGracePeriodSeconds"] = 30 }
        if podSpec["restartPolicy"] == nil { podSpec["restartPolicy"] = "Always" }
        let pod: JSON = [
            "metadata": ["name": .string(name), "namespace": .string(namespace), "labels": labels,
                         "annotations": template[path: "metadata", "annotations"] ?? [:],
                         "ownerReferences": [owner]],
            "spec": podSpec,
            "status": ["phase": "Pending", "qosClass": "BestEffort"],
        ]
        let created = store.create(.pods, pod, now: now)
        if let created, nodeName != nil { podScheduledAt[Pod(json: created).uid] = now }
        return created
    }

    static func ownerReference(_ object: JSON, blockOwnerDeletion: Bool = true) -> JSON {
        ["apiVersion": object["apiVersion"] ?? "", "kind": object["kind"] ?? "", "name": object[path: "metadata", "name"] ?? "",
         "uid": object[path: "metadata", "uid"] ?? "", "controller": true, "blockOwnerDeletion": .bool(blockOwnerDeletion)]
    }

    func pods(ownedBy uid: String, namespace: String) -> [Pod] {
        store.list(.pods, namespace: namespace).map(Pod.init).filter { $0.controller?.uid == uid }
    }

    /// Deployments keep one ReplicaSet each; ReplicaSets keep `replicas` live pods.
    mutating func reconcileDeployments() {
        for deployment in store.list(.deployments) {
            let view = Deployment(json: deployment)
            let namespace = view.namespace ?? "default"
            let rsName = "\(view.name)-\(StableHash.suffix("rs/\(namespace)/\(view.name)", length: 10))"
            var replicaSet = store.get(.replicaSets, namespace, rsName)
            if replicaSet == nil {
                var template = deployment[path: "spec", "template"] ?? [:]
                template[path: "metadata", "labels", "pod-template-hash"] = .string(String(rsName.suffix(10)))
                replicaSet = store.create(.replicaSets, [
                    "metadata": ["name": .string(rsName), "namespace": .string(namespace),
                                 "labels": template[path: "metadata", "labels"] ?? [:],
                                 "ownerReferences": [Self.ownerReference(deployment)]],
                    "spec": ["replicas": .int(view.replicas), "selector": deployment[path: "spec", "selector"] ?? [:], "template": template],
                ], now: now)
            } else if replicaSet?[path: "spec", "replicas"]?.int != view.replicas {
                replicaSet![path: "spec", "replicas"] = .int(view.replicas)
                replicaSet = store.update(.replicaSets, replicaSet!)
            }
        }
        for replicaSet in store.list(.replicaSets) {
            let namespace = replicaSet[path: "metadata", "namespace"]?.string ?? "default"
            let uid = replicaSet[path: "metadata", "uid"]?.string ?? ""
            let desired = replicaSet[path: "spec", "replicas"]?.int ?? 1
            let live = pods(ownedBy: uid, namespace: namespace).filter { !$0.isTerminating }
            let name = replicaSet[path: "metadata", "name"]?.string ?? ""
            if live.count < desired {
                for _ in 0..<(Int(desired) - live.count) {
                    createPod(namespace: namespace, baseName: name, template: replicaSet[path: "spec", "template"] ?? [:],
                              owner: Self.ownerReference(replicaSet))
                }
            } else if live.count > desired {
                for pod in live.sorted(by: { $0.name > $1.name }).prefix(live.count - Int(desired)) {
                    terminate(pod.json, graceSeconds: nil)
                }
            }
        }
    }

    /// DaemonSets keep one live pod on every node whose labels match their node selector,
    /// cordoned or not (daemon pods tolerate `unschedulable`).
    mutating func reconcileDaemonSets() {
        let nodes = store.list(.nodes).map(Node.init)
        for daemonSet in store.list(.daemonSets) {
            let namespace = daemonSet[path: "metadata", "namespace"]?.string ?? "default"
            let uid = daemonSet[path: "metadata", "uid"]?.string ?? ""
            let template = daemonSet[path: "spec", "template"] ?? [:]
            let live = pods(ownedBy: uid, namespace: namespace).filter { !$0.isTerminating }
            for node in nodes where Self.selects(template[path: "spec", "nodeSelector"], node.labels) {
                if !live.contains(where: { $0.nodeName == node.name }) {
                    createPod(namespace: namespace, baseName: daemonSet[path: "metadata", "name"]?.string ?? "ds", template: template,
                              owner: Self.ownerReference(daemonSet), nodeName: node.name)
                }
            }
        }
    }

    /// StatefulSets keep pods `NAME-0` … `NAME-(replicas-1)` under the default `OrderedReady`
    /// policy: pod N is created only once every pod before it is Running and Ready, and scaling
    /// down removes the highest ordinal first, one at a time
    /// (https://kubernetes.io/docs/concepts/workloads/controllers/statefulset/#deployment-and-scaling-guarantees).
    /// An evicted pod comes back under the same name.
    mutating func reconcileStatefulSets() {
        for statefulSet in store.list(.statefulSets) {
            let view = StatefulSet(json: statefulSet)
            let namespace = view.namespace ?? "default"
            let owned = pods(ownedBy: view.uid, namespace: namespace)
            let wanted = Int(max(0, view.replicas))
            let template = statefulSet[path: "spec", "template"] ?? [:]
            // Scale down first: the highest ordinal above the wanted count, once nothing is terminating.
            let excess = owned.filter { Self.ordinal(of: $0.name, in: view.name).map { $0 >= wanted } ?? false }
            if !excess.isEmpty {
                if !owned.contains(where: \.isTerminating), let last = excess.max(by: { (Self.ordinal(of: $0.name, in: view.name) ?? 0) < (Self.ordinal(of: $1.name, in: view.name) ?? 0) }) {
                    terminate(last.json, graceSeconds: nil)
                }
                continue
            }
            for ordinal in 0..<wanted {
                let name = "\(view.name)-\(ordinal)"
                if let pod = owned.first(where: { $0.name == name }) {
                    if pod.isTerminating || !pod.isReady { break }
                    continue
                }
                _ = createPod(namespace: namespace, baseName: view.name, name: name, template: template,
                              owner: Self.ownerReference(statefulSet), extraLabels: ["statefulset.kubernetes.io/pod-name": name])
                break
            }
        }
    }

    /// N of a StatefulSet's pod `SET-N`; nil for any other name.
    static func ordinal(of pod: String, in set: String) -> Int? {
        guard pod.hasPrefix(set + "-") else { return nil }
        return Int(pod.dropFirst(set.count + 1))
    }

    /// Status of deployments, replica sets, daemon sets and stateful sets from their pods.
    mutating func reconcileWorkloadStatus() {
        for replicaSet in store.list(.replicaSets) {
            let namespace = replicaSet[path: "metadata", "namespace"]?.string ?? "default"
            let live = pods(ownedBy: replicaSet[path: "metadata", "uid"]?.string ?? "", namespace: namespace).filter { !$0.isTerminating }
            let ready = Int64(live.filter(\.isReady).count)
            var updated = replicaSet
            updated["status"] = ["replicas": .int(Int64(live.count)), "readyReplicas": .int(ready), "availableReplicas": .int(ready),
                                 "fullyLabeledReplicas": .int(Int64(live.count)),
                                 "observedGeneration": replicaSet[path: "metadata", "generation"] ?? 1]
            store.update(.replicaSets, updated)
        }
        for deployment in store.list(.deployments) {
            let view = Deployment(json: deployment)
            let namespace = view.namespace ?? "default"
            let owned = store.list(.replicaSets, namespace: namespace).filter {
                $0[path: "metadata", "ownerReferences"]?.array?.first?["uid"]?.string == view.uid
            }
            let total = owned.reduce(Int64(0)) { $0 + ($1[path: "status", "replicas"]?.int ?? 0) }
            let ready = owned.reduce(Int64(0)) { $0 + ($1[path: "status", "readyReplicas"]?.int ?? 0) }
            let maxUnavailable = view.replicas / 4
            let available = ready >= view.replicas - maxUnavailable
            var updated = deployment
            let previous = view.condition("Available")
            let status = available ? "True" : "False"
            let transition: JSON = previous?.status == status ? (deployment[path: "status", "conditions"]?.array?
                .first { $0["type"]?.string == "Available" }?["lastTransitionTime"] ?? .string(KubeTime.format(now))) : .string(KubeTime.format(now))
            var fields: JSON = ["replicas": .int(total), "readyReplicas": .int(ready), "availableReplicas": .int(ready),
                                "updatedReplicas": .int(total), "observedGeneration": deployment[path: "metadata", "generation"] ?? 1,
                                "conditions": [["type": "Available", "status": .string(status), "lastTransitionTime": transition,
                                                "reason": available ? "MinimumReplicasAvailable" : "MinimumReplicasUnavailable",
                                                "message": available ? "Deployment has minimum availability." : "Deployment does not have minimum availability."]]]
            if total - ready > 0 { fields["unavailableReplicas"] = .int(total - ready) }
            updated["status"] = fields
            store.update(.deployments, updated)
        }
        let nodes = store.list(.nodes).map(Node.init)
        for daemonSet in store.list(.daemonSets) {
            let namespace = daemonSet[path: "metadata", "namespace"]?.string ?? "default"
            let live = pods(ownedBy: daemonSet[path: "metadata", "uid"]?.string ?? "", namespace: namespace).filter { !$0.isTerminating }
            let desired = Int64(nodes.filter { Self.selects(daemonSet[path: "spec", "template", "spec", "nodeSelector"], $0.labels) }.count)
            let ready = Int64(live.filter(\.isReady).count)
            var updated = daemonSet
            var fields: JSON = ["desiredNumberScheduled": .int(desired), "currentNumberScheduled": .int(Int64(live.count)),
                                "numberReady": .int(ready), "numberAvailable": .int(ready), "updatedNumberScheduled": .int(Int64(live.count)),
                                "numberMisscheduled": 0, "observedGeneration": daemonSet[path: "metadata", "generation"] ?? 1]
            if desired - ready > 0 { fields["numberUnavailable"] = .int(desired - ready) }
            updated["status"] = fields
            store.update(.daemonSets, updated)
        }
        for statefulSet in store.list(.statefulSets) {
            let view = StatefulSet(json: statefulSet)
            let live = pods(ownedBy: view.uid, namespace: view.namespace ?? "default").filter { !$0.isTerminating }
            let ready = Int64(live.filter(\.isReady).count)
            // One template revision: the model does not roll a changed template.
            let revision = JSON.string("\(view.name)-\(StableHash.suffix("sts/\(view.namespace ?? "default")/\(view.name)", length: 10))")
            var updated = statefulSet
            updated["status"] = ["replicas": .int(Int64(live.count)), "readyReplicas": .int(ready), "availableReplicas": .int(ready),
                                 "currentReplicas": .int(Int64(live.count)), "updatedReplicas": .int(Int64(live.count)),
                                 "currentRevision": revision, "updateRevision": revision,
                                 "observedGeneration": statefulSet[path: "metadata", "generation"] ?? 1]
            store.update(.statefulSets, updated)
        }
    }

    /// Marks a pod for deletion; the pod controller removes it once the grace period passed.
    mutating func terminate(_ pod: JSON, graceSeconds: Int64?) {
        guard pod[path: "metadata", "deletionTimestamp"] == nil else { return }
        var updated = pod
        let requested = graceSeconds.map(Double.init) ?? timings.podTerminationSeconds
        let grace = min(requested, timings.podTerminationSeconds)
        updated[path: "metadata", "deletionTimestamp"] = .string(KubeTime.format(now + grace))
        podDeletionDueAt[Pod(json: pod).uid] = now + grace
        updated[path: "metadata", "deletionGracePeriodSeconds"] = .int(Int64(grace.rounded(.up)))
        store.update(.pods, updated)
        if grace <= 0, Pod(json: pod).nodeName.map(kubeletUp) ?? true {
            store.delete(.pods, Pod(json: pod).namespace, Pod(json: pod).name)
            podDeletionDueAt[Pod(json: pod).uid] = nil
        }
    }

    // MARK: - Disruption budgets

    /// How a budget judges the pods it selects now: what the disruption controller writes.
    func budgetStatus(_ budget: JSON) -> (expected: Int64, healthy: Int64, desired: Int64, allowed: Int64) {
        let view = PodDisruptionBudget(json: budget)
        let pods = store.list(.pods, namespace: view.namespace ?? "default").map(Pod.init)
            .filter { !$0.isTerminating && view.selector.matches($0.labels) && !view.selector.isEmpty }
        let expected = Int64(pods.count)
        let healthy = Int64(pods.filter(\.isReady).count)
        var desired: Int64
        if let min = view.minAvailable {
            desired = Self.scaled(min, of: expected, roundUp: true)
        } else if let max = view.maxUnavailable {
            desired = Swift.max(0, expected - Self.scaled(max, of: expected, roundUp: true))
        } else {
            desired = expected
        }
        desired = Swift.max(0, desired)
        return (expected, healthy, desired, Swift.max(0, healthy - desired))
    }

    static func scaled(_ value: JSON, of total: Int64, roundUp: Bool) -> Int64 {
        if let int = value.int { return int }
        if let text = value.string, text.hasSuffix("%"), let percent = Double(text.dropLast()) {
            let scaled = percent * Double(total) / 100
            return Int64(roundUp ? scaled.rounded(.up) : scaled.rounded(.down))
        }
        return 0
    }

    mutating func reconcileDisruptionBudgets() {
        for budget in store.list(.podDisruptionBudgets) {
            let status = budgetStatus(budget)
            var updated = budget
            let allowed = status.allowed > 0
            updated["status"] = ["expectedPods": .int(status.expected), "currentHealthy": .int(status.healthy),
                                 "desiredHealthy": .int(status.desired), "disruptionsAllowed": .int(status.allowed),
                                 "observedGeneration": budget[path: "metadata", "generation"] ?? 1,
                                 "conditions": [["type": "DisruptionAllowed", "status": allowed ? "True" : "False",
                                                 "reason": allowed ? "SufficientPods" : "InsufficientPods", "message": "",
                                                 "lastTransitionTime": budget[path: "status", "conditions"]?.array?.first?["status"]?.string
                                                     == (allowed ? "True" : "False")
                                                     ? (budget[path: "status", "conditions"]?.array?.first?["lastTransitionTime"] ?? .string(KubeTime.format(now)))
                                                     : .string(KubeTime.format(now))]]]
            store.update(.podDisruptionBudgets, updated)
        }
    }

    /// The eviction subresource: 201 when the pod may go, 429 when a budget forbids it.
    public mutating func evict(namespace: String, name: String, graceSeconds: Int64?) -> Result<Void, KubeAPIError> {
        guard let pod = store.get(.pods, namespace, name) else { return .failure(.notFound("pods", name)) }
        let view = Pod(json: pod)
        if view.isTerminating { return .success(()) }
        let budgets = store.list(.podDisruptionBudgets, namespace: namespace).filter {
            let selector = PodDisruptionBudget(json: $0).selector
            return !selector.isEmpty && selector.matches(view.labels)
        }
        if budgets.count > 1 {
            return .failure(KubeAPIError(code: 500, reason: "InternalError",
                                         message: "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."))
        }
        if let budget = budgets.first {
            let status = budgetStatus(budget)
            // An unready pod may go when the budget is met without it (IfHealthyBudget).
            let unhealthyAllowed = !view.isReady && status.healthy >= status.desired
            if status.allowed <= 0 && !unhealthyAllowed {
                let budgetName = budget[path: "metadata", "name"]?.string ?? ""
                record("EvictionRefused", "\(namespace)/\(name)", "budget \(budgetName)")
                return .failure(KubeAPIError(
                    code: 429, reason: "TooManyRequests", message: "Cannot evict pod as it would violate the pod's disruption budget.",
                    causes: [.init(reason: "DisruptionBudget",
                                   message: "The disruption budget \(budgetName) needs \(status.desired) healthy pods and has \(status.healthy) currently")]))
            }
        }
        record("Evicted", "\(namespace)/\(name)", "evicted from \(view.nodeName ?? "no node")")
        terminate(pod, graceSeconds: graceSeconds)
        reconcile()
        return .success(())
    }
}
