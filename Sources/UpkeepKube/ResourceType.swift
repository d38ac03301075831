/// Where a kind of object lives in the Kubernetes API: group, version, plural resource name.
///
/// The client builds request paths from it; the simulated API serves exactly these.
public struct ResourceType: Sendable, Hashable, CustomStringConvertible {
    /// `""` for the core group.
    public var group: String
    public var version: String
    public var plural: String
    public var kind: String
    public var namespaced: Bool

    public init(group: String, version: String, plural: String, kind: String, namespaced: Bool) {
        self.group = group
        self.version = version
        self.plural = plural
        self.kind = kind
        self.namespaced = namespaced
    }

    public var apiVersion: String { group.isEmpty ? version : "\(group)/\(version)" }
    /// `nodes`, `volumes.longhorn.io`: how Kubernetes names the resource in messages.
    public var qualifiedName: String { group.isEmpty ? plural : "\(plural).\(group)" }
    public var description: String { qualifiedName }

    /// `/api/v1` or `/apis/<group>/<version>`.
    public var groupVersionPath: String { group.isEmpty ? "/api/\(version)" : "/apis/\(group)/\(version)" }

    /// The collection path, in `namespace` for namespaced resources (all namespaces when `nil`).
    public func collectionPath(namespace: String?) -> String {
        if namespaced, let namespace { return "\(groupVersionPath)/namespaces/\(namespace)/\(plural)" }
        return "\(groupVersionPath)/\(plural)"
    }

    public func objectPath(name: String, namespace: String?, subresource: String? = nil) -> String {
        let base = collectionPath(namespace: namespace) + "/" + name
        return subresource.map { base + "/" + $0 } ?? base
    }
}

extension ResourceType {
    public static let namespaces = ResourceType(group: "", version: "v1", plural: "namespaces", kind: "Namespace", namespaced: false)
    public static let nodes = ResourceType(group: "", version: "v1", plural: "nodes", kind: "Node", namespaced: false)
    public static let pods = ResourceType(group: "", version: "v1", plural: "pods", kind: "Pod", namespaced: true)
    public static let events = ResourceType(group: "", version: "v1", plural: "events", kind: "Event", namespaced: true)
    public static let configMaps = ResourceType(group: "", version: "v1", plural: "configmaps", kind: "ConfigMap", namespaced: true)
    public static let services = ResourceType(group: "", version: "v1", plural: "services", kind: "Service", namespaced: true)
    public static let deployments = ResourceType(group: "apps", version: "v1", plural: "deployments", kind: "Deployment", namespaced: true)
    public static let replicaSets = ResourceType(group: "apps", version: "v1", plural: "replicasets", kind: "ReplicaSet", namespaced: true)
    public static let daemonSets = ResourceType(group: "apps", version: "v1", plural: "daemonsets", kind: "DaemonSet", namespaced: true)
    public static let statefulSets = ResourceType(group: "apps", version: "v1", plural: "statefulsets", kind: "StatefulSet", namespaced: true)
    public static let podDisruptionBudgets = ResourceType(group: "policy", version: "v1", plural: "poddisruptionbudgets",
                                                          kind: "PodDisruptionBudget", namespaced: true)
    public static let leases = ResourceType(group: "coordination.k8s.io", version: "v1", plural: "leases", kind: "Lease", namespaced: true)
    public static let customResourceDefinitions = ResourceType(group: "apiextensions.k8s.io", version: "v1",
                                                               plural: "customresourcedefinitions",
                                                               kind: "CustomResourceDefinition", namespaced: false)
    public static let longhornVolumes = ResourceType(group: "longhorn.io", version: "v1beta2", plural: "volumes", kind: "Volume", namespaced: true)
    public static let longhornReplicas = ResourceType(group: "longhorn.io", version: "v1beta2", plural: "replicas", kind: "Replica", namespaced: true)
    public static let longhornNodes = ResourceType(group: "longhorn.io", version: "v1beta2", plural: "nodes", kind: "Node", namespaced: true)
    public static let longhornSettings = ResourceType(group: "longhorn.io", version: "v1beta2", plural: "settings", kind: "Setting", namespaced: true)
    public static let longhornSnapshots = ResourceType(group: "longhorn.io", version: "v1beta2", plural: "snapshots", kind: "Snapshot", namespaced: true)
    public static let longhornInstanceManagers = ResourceType(group: "longhorn.io", version: "v1beta2", plural: "instancemanagers",
                                                              kind: "InstanceManager", namespaced: true)
    public static let fluxKustomizations = ResourceType(group: "kustomize.toolkit.fluxcd.io", version: "v1", plural: "kustomizations",
                                                        kind: "Kustomization", namespaced: true)
    public static let fluxHelmReleases = ResourceType(group: "helm.toolkit.fluxcd.io", version: "v2", plural: "helmreleases",
                                                      kind: "HelmRelease", namespaced: true)
    public static let fluxGitRepositories = ResourceType(group: "source.toolkit.fluxcd.io", version: "v1", plural: "gitrepositories",
                                                         kind: "GitRepository", namespaced: true)
}
