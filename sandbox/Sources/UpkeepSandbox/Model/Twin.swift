import UpkeepCapture
import UpkeepKube

/// The objects of a twin (`ClusterSpec.twin`): the live cluster's nodes as captured (labels,
/// taints, cordons, versions), its workloads with their pods on the nodes they run on, its
/// disruption budgets, and Longhorn's settings, volumes and replicas where they are. What runs
/// inside the pods and what the volumes hold is not copied (docs/rehearse.md).
extension ClusterModel {
    /// The image every twin workload names: nothing is pulled or run.
    static let twinImage = "upkeep.invalid/twin:0"

    /// Taints the node lifecycle controller owns (https://kubernetes.io/docs/reference/labels-annotations-taints/):
    /// the model sets them itself from the cordon and the kubelet's health.
    static let lifecycleTaints: Set<String> = ["node.kubernetes.io/unschedulable", "node.kubernetes.io/not-ready",
                                               "node.kubernetes.io/unreachable"]

    mutating func seedTwin(_ capture: ClusterCapture) {
        let known = Set(spec.nodeNames)
        for node in capture.nodes {
            store.modify(.nodes, nil, node.name) { object in
                var labels = node.labels
                labels["kubernetes.io/hostname"] = labels["kubernetes.io/hostname"] ?? node.name
                object[path: "metadata", "labels"] = .object(labels.mapValues { .string($0) })
                object[path: "status", "nodeInfo", "architecture"] = .string(node.architecture)
                if node.unschedulable { object[path: "spec", "unschedulable"] = true }
                let taints = node.taints.filter { !Self.lifecycleTaints.contains($0.key) }
                if !taints.isEmpty {
                    object[path: "spec", "taints"] = .array(taints.map {
                        ["key": .string($0.key), "value": .string($0.value), "effect": .string($0.effect)]
                    })
                }
            }
        }
        let seeded: Set<String> = ["default", "kube-system", "kube-public", "kube-node-lease", "longhorn-system", "flux-system"]
        let namespaces = Set(capture.workloads.map(\.namespace) + capture.pods.map(\.namespace) + capture.disruptionBudgets.map(\.namespace))
        for namespace in namespaces.subtracting(seeded).sorted() {
            _ = store.create(.namespaces, ["metadata": ["name": .string(namespace), "labels": ["kubernetes.io/metadata.name": .string(namespace)]],
                                           "spec": ["finalizers": ["kubernetes"]], "status": ["phase": "Active"]], now: now)
        }
        seedServices()
        seedTwinWorkloads(capture, known: known)
        for budget in capture.disruptionBudgets {
            var spec: JSON = ["selector": Self.selectorObject(budget.selector)]
            if let value = budget.minAvailable { spec["minAvailable"] = Self.intOrString(value) }
            if let value = budget.maxUnavailable { spec["maxUnavailable"] = Self.intOrString(value) }
            _ = store.create(.podDisruptionBudgets, ["metadata": ["name": .string(budget.name), "namespace": .string(budget.namespace)],
                                                     "spec": spec], now: now)
        }
        guard let longhorn = capture.longhorn else { return }
        seedLonghornSettings(longhorn.settings)
        for volume in longhorn.volumes {
            let attached = ["attached", "attaching"].contains(volume.state) && known.contains(volume.node)
            seedLonghornVolume(volume.name, replicas: volume.numberOfReplicas, size: volume.size,
                               attachedTo: attached ? volume.node : nil, claim: volume.name)
            for replica in longhorn.replicas where replica.volume == volume.name && known.contains(replica.node) {
                createReplica(volume: volume.name, node: replica.node, healthy: replica.healthy)
            }
        }
    }

    /// Deployments and DaemonSets as captured; each Deployment's pods bound to the nodes its
    /// captured pods run on (the rest the model schedules), bare pods where they were.
    /// StatefulSets' pods are placed by the model as it creates them in order.
    private mutating func seedTwinWorkloads(_ capture: ClusterCapture, known: Set<String>) {
        for workload in capture.workloads {
            let template = Seed.podTemplate(labels: workload.podLabels, containers: [Seed.container(workload.name, Self.twinImage)])
            var spec: JSON = ["selector": Self.selectorObject(workload.selector), "template": template]
            if let replicas = workload.replicas { spec["replicas"] = .int(Int64(replicas)) }
            if workload.kind == .statefulSet { spec["serviceName"] = .string(workload.name) }
            let type: ResourceType = switch workload.kind {
            case .deployment: .deployments
            case .statefulSet: .statefulSets
            case .daemonSet: .daemonSets
            }
            _ = store.create(type, ["metadata": ["name": .string(workload.name), "namespace": .string(workload.namespace),
                                                 "labels": .object(workload.podLabels.mapValues { .string($0) })],
                                    "spec": spec], now: now)
        }
        reconcileDeployments()
        for workload in capture.workloads where workload.kind == .deployment {
            let nodes = capture.pods.filter { $0.namespace == workload.namespace && $0.owner == .init(kind: "Deployment", name: workload.name) }
                .compactMap(\.node).filter(known.contains).sorted()
            guard let deployment = store.get(.deployments, workload.namespace, workload.name) else { continue }
            let replicaSets = store.list(.replicaSets, namespace: workload.namespace).filter {
                ReplicaSetView(json: $0).controller?.uid == Deployment(json: deployment).uid
            }
            let unbound = replicaSets.flatMap { pods(ownedBy: ReplicaSetView(json: $0).uid, namespace: workload.namespace) }
                .filter { $0.nodeName == nil }.sorted { $0.name < $1.name }
            for (pod, node) in zip(unbound, nodes) { bind(pod.json, to: node) }
        }
        for pod in capture.pods where pod.owner == nil {
            guard let node = pod.node, known.contains(node) else { continue }
            _ = store.create(.pods, [
                "metadata": ["name": .string(pod.name), "namespace": .string(pod.namespace), "labels": .object(pod.labels.mapValues { .string($0) })],
                "spec": ["nodeName": .string(node), "containers": [Seed.container(pod.name, Self.twinImage)],
                         "terminationGracePeriodSeconds": 30, "restartPolicy": "Always"],
                "status": ["phase": "Pending", "qosClass": "BestEffort"],
            ], now: now)
        }
    }

    /// A `metav1.LabelSelector` object from kubectl's text form.
    static func selectorObject(_ text: String) -> JSON {
        guard let selector = try? LabelSelector.parse(text) else { return [:] }
        var matchLabels: [String: JSON] = [:]
        var expressions: [JSON] = []
        for requirement in selector.requirements {
            switch requirement {
            case .equals(let key, let value): matchLabels[key] = .string(value)
            case .notEquals(let key, let value): expressions.append(["key": .string(key), "operator": "NotIn", "values": [.string(value)]])
            case .isIn(let key, let values): expressions.append(["key": .string(key), "operator": "In", "values": .array(values.sorted().map { .string($0) })])
            case .notIn(let key, let values):
                expressions.append(["key": .string(key), "operator": "NotIn", "values": .array(values.sorted().map { .string($0) })])
            case .exists(let key): expressions.append(["key": .string(key), "operator": "Exists"])
            case .doesNotExist(let key): expressions.append(["key": .string(key), "operator": "DoesNotExist"])
            }
        }
        var object: JSON = ["matchLabels": .object(matchLabels)]
        if !expressions.isEmpty { object["matchExpressions"] = .array(expressions) }
        return object
    }

    /// An IntOrString as captured: `2` a number, `50%` a string.
    static func intOrString(_ text: String) -> JSON {
        Int64(text).map { .int($0) } ?? .string(text)
    }
}

/// Metadata of a ReplicaSet (its owner and uid) through the shared object view.
private typealias ReplicaSetView = Deployment
