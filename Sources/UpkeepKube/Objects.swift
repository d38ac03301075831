/// A typed view of one Kubernetes object: a few named accessors over the full JSON, which is
/// kept whole so that nothing the view does not know about is lost on a round trip.
public protocol KubeObject: Sendable, Equatable {
    static var resource: ResourceType { get }
    var json: JSON { get set }
    init(json: JSON)
}

extension KubeObject {
    public var name: String { json[path: "metadata", "name"]?.string ?? "" }
    public var namespace: String? { json[path: "metadata", "namespace"]?.string }
    public var uid: String { json[path: "metadata", "uid"]?.string ?? "" }
    public var resourceVersion: String { json[path: "metadata", "resourceVersion"]?.string ?? "" }
    public var generation: Int64 { json[path: "metadata", "generation"]?.int ?? 0 }
    public var labels: [String: String] { json[path: "metadata", "labels"]?.stringMap ?? [:] }
    public var annotations: [String: String] { json[path: "metadata", "annotations"]?.stringMap ?? [:] }
    public var creationTimestamp: Double? { json[path: "metadata", "creationTimestamp"]?.string.flatMap(KubeTime.parse) }
    public var deletionTimestamp: Double? { json[path: "metadata", "deletionTimestamp"]?.string.flatMap(KubeTime.parse) }
    public var ownerReferences: [OwnerReference] { (json[path: "metadata", "ownerReferences"]?.array ?? []).map(OwnerReference.init) }
    /// The owner reference with `controller: true`, if any.
    public var controller: OwnerReference? { ownerReferences.first { $0.isController } }
    /// `status.conditions`, for the kinds that have them.
    public var conditions: [Condition] { (json[path: "status", "conditions"]?.array ?? []).map(Condition.init) }
    public func condition(_ type: String) -> Condition? { conditions.first { $0.type == type } }
}

/// `metadata.ownerReferences[]`.
public struct OwnerReference: Sendable, Equatable {
    public var apiVersion: String, kind: String, name: String, uid: String, isController: Bool
    public init(_ json: JSON) {
        apiVersion = json["apiVersion"]?.string ?? ""
        kind = json["kind"]?.string ?? ""
        name = json["name"]?.string ?? ""
        uid = json["uid"]?.string ?? ""
        isController = json["controller"]?.bool ?? false
    }
}

/// One entry of `status.conditions`.
public struct Condition: Sendable, Equatable {
    public var type: String, status: String, reason: String, message: String
    public var lastTransitionTime: Double?
    public init(_ json: JSON) {
        type = json["type"]?.string ?? ""
        status = json["status"]?.string ?? "Unknown"
        reason = json["reason"]?.string ?? ""
        message = json["message"]?.string ?? ""
        lastTransitionTime = json["lastTransitionTime"]?.string.flatMap(KubeTime.parse)
    }
    public var isTrue: Bool { status == "True" }
}

extension JSON {
    /// An object of string members as a dictionary (labels, annotations); non-strings dropped.
    public var stringMap: [String: String]? {
        object.map { $0.compactMapValues(\.string) }
    }
}

/// `core/v1` Node.
public struct Node: KubeObject {
    public static let resource = ResourceType.nodes
    public var json: JSON
    public init(json: JSON) { self.json = json }

    public var unschedulable: Bool { json[path: "spec", "unschedulable"]?.bool ?? false }
    /// `Ready` condition status: `True`, `False` or `Unknown` (no heartbeat).
    public var readyStatus: String { condition("Ready")?.status ?? "Unknown" }
    public var isReady: Bool { readyStatus == "True" }
    public var kubeletVersion: String { json[path: "status", "nodeInfo", "kubeletVersion"]?.string ?? "" }
    public var architecture: String { json[path: "status", "nodeInfo", "architecture"]?.string ?? labels["kubernetes.io/arch"] ?? "" }
    public var internalIP: String? {
        (json[path: "status", "addresses"]?.array ?? []).first { $0["type"]?.string == "InternalIP" }?["address"]?.string
    }
    /// `status.daemonEndpoints.kubeletEndpoint.Port`: where the kubelet's API listens (10250 by
    /// default); nil when the node does not report it.
    public var kubeletPort: Int? {
        (json[path: "status", "daemonEndpoints", "kubeletEndpoint", "Port"]?.int).map(Int.init)
    }
    public var isControlPlane: Bool {
        labels["node-role.kubernetes.io/control-plane"] == "true" || labels["node-role.kubernetes.io/master"] == "true"
    }
    public var taints: [JSON] { json[path: "spec", "taints"]?.array ?? [] }
    /// Roles as `kubectl get nodes` shows them, from `node-role.kubernetes.io/<role>` labels.
    public var roles: [String] {
        labels.keys.filter { $0.hasPrefix("node-role.kubernetes.io/") }
            .map { String($0.dropFirst("node-role.kubernetes.io/".count)) }.sorted()
    }
}

/// `core/v1` Pod.
public struct Pod: KubeObject {
    public static let resource = ResourceType.pods
    public var json: JSON
    public init(json: JSON) { self.json = json }

    public var nodeName: String? { json[path: "spec", "nodeName"]?.string }
    public var phase: String { json[path: "status", "phase"]?.string ?? "Pending" }
    public var isReady: Bool { condition("Ready")?.isTrue ?? false }
    public var isDaemonSetPod: Bool { controller?.kind == "DaemonSet" }
    /// A static pod's mirror: the kubelet owns it, eviction does not apply.
    public var isMirrorPod: Bool { annotations["kubernetes.io/config.mirror"] != nil }
    public var usesEmptyDir: Bool { (json[path: "spec", "volumes"]?.array ?? []).contains { $0["emptyDir"] != nil } }
    public var isTerminating: Bool { json[path: "metadata", "deletionTimestamp"] != nil }
}

/// `policy/v1` PodDisruptionBudget.
public struct PodDisruptionBudget: KubeObject {
    public static let resource = ResourceType.podDisruptionBudgets
    public var json: JSON
    public init(json: JSON) { self.json = json }

    public var selector: LabelSelector { LabelSelector(json[path: "spec", "selector"] ?? .null) }
    public var minAvailable: JSON? { json[path: "spec", "minAvailable"] }
    public var maxUnavailable: JSON? { json[path: "spec", "maxUnavailable"] }
    public var disruptionsAllowed: Int64 { json[path: "status", "disruptionsAllowed"]?.int ?? 0 }
    public var currentHealthy: Int64 { json[path: "status", "currentHealthy"]?.int ?? 0 }
    public var desiredHealthy: Int64 { json[path: "status", "desiredHealthy"]?.int ?? 0 }
    public var expectedPods: Int64 { json[path: "status", "expectedPods"]?.int ?? 0 }
}

/// `policy/v1` Eviction: the body POSTed to `pods/<name>/eviction`.
public struct Eviction: Sendable, Equatable {
    public var json: JSON
    public init(podName: String, namespace: String, gracePeriodSeconds: Int64? = nil) {
        json = ["apiVersion": "policy/v1", "kind": "Eviction", "metadata": ["name": .string(podName), "namespace": .string(namespace)]]
        if let gracePeriodSeconds { json["deleteOptions"] = ["gracePeriodSeconds": .int(gracePeriodSeconds)] }
    }
}

/// A workload counted in replicas (`spec.replicas`, `status.readyReplicas`, …): Deployments and
/// StatefulSets.
public protocol ReplicatedWorkload: KubeObject {}

extension ReplicatedWorkload {
    public var replicas: Int64 { json[path: "spec", "replicas"]?.int ?? 1 }
    public var readyReplicas: Int64 { json[path: "status", "readyReplicas"]?.int ?? 0 }
    public var availableReplicas: Int64 { json[path: "status", "availableReplicas"]?.int ?? 0 }
    public var updatedReplicas: Int64 { json[path: "status", "updatedReplicas"]?.int ?? 0 }
}

/// `apps/v1` Deployment.
public struct Deployment: ReplicatedWorkload {
    public static let resource = ResourceType.deployments
    public var json: JSON
    public init(json: JSON) { self.json = json }

    public var selector: LabelSelector { LabelSelector(json[path: "spec", "selector"] ?? .null) }
}

/// `apps/v1` DaemonSet.
public struct DaemonSet: KubeObject {
    public static let resource = ResourceType.daemonSets
    public var json: JSON
    public init(json: JSON) { self.json = json }

    public var desiredNumberScheduled: Int64 { json[path: "status", "desiredNumberScheduled"]?.int ?? 0 }
    public var numberReady: Int64 { json[path: "status", "numberReady"]?.int ?? 0 }
    public var numberAvailable: Int64 { json[path: "status", "numberAvailable"]?.int ?? 0 }
    public var updatedNumberScheduled: Int64 { json[path: "status", "updatedNumberScheduled"]?.int ?? 0 }
}

/// `apps/v1` StatefulSet.
public struct StatefulSet: ReplicatedWorkload {
    public static let resource = ResourceType.statefulSets
    public var json: JSON
    public init(json: JSON) { self.json = json }

    /// `status.currentRevision == status.updateRevision`: every pod at the current template.
    public var revisionsAgree: Bool { json[path: "status", "currentRevision"]?.string == json[path: "status", "updateRevision"]?.string }
}

/// `longhorn.io/v1beta2` Volume.
public struct LonghornVolume: KubeObject {
    public static let resource = ResourceType.longhornVolumes
    public var json: JSON
    public init(json: JSON) { self.json = json }

    public var numberOfReplicas: Int64 { json[path: "spec", "numberOfReplicas"]?.int ?? 3 }
    public var size: String { json[path: "spec", "size"]?.string ?? "" }
    /// `creating`, `attached`, `detached`, `attaching`, `detaching`, `deleting`.
    public var state: String { json[path: "status", "state"]?.string ?? "" }
    /// `healthy`, `degraded`, `faulted`, `unknown` (always `unknown` while detached).
    public var robustness: String { json[path: "status", "robustness"]?.string ?? "unknown" }
    public var currentNodeID: String { json[path: "status", "currentNodeID"]?.string ?? "" }
    /// The engine image the volume should run (`spec.image`; setting it upgrades the engine).
    public var image: String { json[path: "spec", "image"]?.string ?? "" }
    /// The engine image it runs (`status.currentImage`).
    public var currentImage: String { json[path: "status", "currentImage"]?.string ?? "" }
}

/// `longhorn.io/v1beta2` Replica.
public struct LonghornReplica: KubeObject {
    public static let resource = ResourceType.longhornReplicas
    public var json: JSON
    public init(json: JSON) { self.json = json }

    public var volumeName: String { json[path: "spec", "volumeName"]?.string ?? "" }
    public var nodeID: String { json[path: "spec", "nodeID"]?.string ?? "" }
    /// `running`, `stopped`, `error`, `starting`, `stopping`, `unknown`, …
    public var currentState: String { json[path: "status", "currentState"]?.string ?? "" }
    public var healthyAt: String { json[path: "spec", "healthyAt"]?.string ?? "" }
    public var failedAt: String { json[path: "spec", "failedAt"]?.string ?? "" }
    /// Holds a complete copy of the data: became healthy and has not failed since.
    public var isHealthy: Bool { !healthyAt.isEmpty && failedAt.isEmpty }
}

/// `longhorn.io/v1beta2` Node (same name as the Kubernetes node).
public struct LonghornNode: KubeObject {
    public static let resource = ResourceType.longhornNodes
    public var json: JSON
    public init(json: JSON) { self.json = json }

    public var allowScheduling: Bool { json[path: "spec", "allowScheduling"]?.bool ?? true }
    public var evictionRequested: Bool { json[path: "spec", "evictionRequested"]?.bool ?? false }
}

/// `longhorn.io/v1beta2` Setting: one named value (`current-longhorn-version`, `node-drain-policy`, …).
public struct LonghornSetting: KubeObject {
    public static let resource = ResourceType.longhornSettings
    public var json: JSON
    public init(json: JSON) { self.json = json }

    public var value: String { json["value"]?.string ?? "" }
}

/// `longhorn.io/v1beta2` Snapshot.
public struct LonghornSnapshot: KubeObject {
    public static let resource = ResourceType.longhornSnapshots
    public var json: JSON
    public init(json: JSON) { self.json = json }

    public init(name: String, volume: String, namespace: String = "longhorn-system", labels: [String: String] = [:]) {
        json = ["apiVersion": "longhorn.io/v1beta2", "kind": "Snapshot",
                "metadata": ["name": .string(name), "namespace": .string(namespace)],
                "spec": ["volume": .string(volume), "createSnapshot": true,
                         "labels": .object(labels.mapValues { .string($0) })]]
    }

    public var volume: String { json[path: "spec", "volume"]?.string ?? "" }
    public var readyToUse: Bool { json[path: "status", "readyToUse"]?.bool ?? false }
    public var error: String { json[path: "status", "error"]?.string ?? "" }
    public var size: String { json[path: "status", "size"]?.string ?? "" }
}

/// The Flux objects Upkeep watches: Ready condition, suspension and observed generation.
public protocol FluxObject: KubeObject {}

extension FluxObject {
    public var suspended: Bool { json[path: "spec", "suspend"]?.bool ?? false }
    public var observedGeneration: Int64 { json[path: "status", "observedGeneration"]?.int ?? -1 }
    /// Ready is True for the current generation (Flux's own definition of reconciled).
    public var isReady: Bool { (condition("Ready")?.isTrue ?? false) && observedGeneration == generation }
}

/// `kustomize.toolkit.fluxcd.io/v1` Kustomization.
public struct FluxKustomization: FluxObject {
    public static let resource = ResourceType.fluxKustomizations
    public var json: JSON
    public init(json: JSON) { self.json = json }
}

/// `helm.toolkit.fluxcd.io/v2` HelmRelease.
public struct FluxHelmRelease: FluxObject {
    public static let resource = ResourceType.fluxHelmReleases
    public var json: JSON
    public init(json: JSON) { self.json = json }
}

/// `source.toolkit.fluxcd.io/v1` GitRepository.
public struct FluxGitRepository: FluxObject {
    public static let resource = ResourceType.fluxGitRepositories
    public var json: JSON
    public init(json: JSON) { self.json = json }
}

/// `apiextensions.k8s.io/v1` CustomResourceDefinition (Flux's version lives on its labels).
public struct CustomResourceDefinition: KubeObject {
    public static let resource = ResourceType.customResourceDefinitions
    public var json: JSON
    public init(json: JSON) { self.json = json }
}
