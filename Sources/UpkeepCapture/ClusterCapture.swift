#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The live cluster as a rehearsal needs it (docs/rehearse.md): nodes, the workloads and pods
/// on them, disruption budgets with their allowances, Longhorn's volumes, replicas and settings,
/// and Flux's objects. `upkeep rehearse` reads it (GET and LIST only, `ClusterCapture.read`),
/// writes it to a file, and the sandbox builds its twin from that file
/// (`upkeep-sandbox up --twin FILE`).
///
/// It holds what shapes a rollout, never what a container runs or stores: no Secrets, no
/// ConfigMaps, no pod specs beyond their labels, no volume data.
public struct ClusterCapture: Sendable, Codable, Equatable {
    /// The format of this file; a reader refuses another.
    public static let formatVersion = 1

    public var formatVersion: Int
    /// When it was read (RFC 3339, UTC).
    public var capturedAt: String
    /// The API server it was read from (the kubeconfig's `server`), for the report only.
    public var server: String
    public var nodes: [Node]
    public var workloads: [Workload]
    public var pods: [Pod]
    public var disruptionBudgets: [DisruptionBudget]
    /// Nil when Longhorn is not installed (its CRDs are not served).
    public var longhorn: Longhorn?
    public var flux: [FluxObject]

    public init(capturedAt: String, server: String, nodes: [Node], workloads: [Workload] = [], pods: [Pod] = [],
                disruptionBudgets: [DisruptionBudget] = [], longhorn: Longhorn? = nil, flux: [FluxObject] = [])
    {
        formatVersion = Self.formatVersion
        self.capturedAt = capturedAt
        self.server = server
        self.nodes = nodes
        self.workloads = workloads
        self.pods = pods
        self.disruptionBudgets = disruptionBudgets
        self.longhorn = longhorn
        self.flux = flux
    }

    /// A node: what the planner and the twin need of it.
    public struct Node: Sendable, Codable, Equatable {
        public enum Role: String, Sendable, Codable { case server, agent }
        public var name: String
        public var role: Role
        /// The kubelet's version (`status.nodeInfo.kubeletVersion`), the k3s version it runs.
        public var version: String
        public var architecture: String
        public var labels: [String: String]
        public var taints: [Taint]
        /// Cordoned (`spec.unschedulable`).
        public var unschedulable: Bool
        public var ready: Bool
        public var internalIP: String?

        public init(name: String, role: Role, version: String, architecture: String, labels: [String: String] = [:],
                    taints: [Taint] = [], unschedulable: Bool = false, ready: Bool = true, internalIP: String? = nil)
        {
            self.name = name
            self.role = role
            self.version = version
            self.architecture = architecture
            self.labels = labels
            self.taints = taints
            self.unschedulable = unschedulable
            self.ready = ready
            self.internalIP = internalIP
        }

        /// Carries the etcd role: a server of embedded etcd (https://docs.k3s.io/datastore/ha-embedded).
        public var runsEtcd: Bool { labels["node-role.kubernetes.io/etcd"] == "true" }
    }

    public struct Taint: Sendable, Codable, Equatable {
        public var key: String
        public var value: String
        public var effect: String
        public init(key: String, value: String = "", effect: String) {
            self.key = key
            self.value = value
            self.effect = effect
        }
    }

    /// A Deployment, StatefulSet or DaemonSet: what brings evicted pods back, and where.
    public struct Workload: Sendable, Codable, Equatable {
        public enum Kind: String, Sendable, Codable { case deployment = "Deployment", statefulSet = "StatefulSet", daemonSet = "DaemonSet" }
        public var kind: Kind
        public var namespace: String
        public var name: String
        /// `spec.replicas` (a DaemonSet: nil, one pod per eligible node).
        public var replicas: Int?
        /// `spec.selector` in kubectl's text form (`app=web,tier in (a,b)`).
        public var selector: String
        /// The pod template's labels.
        public var podLabels: [String: String]

        public init(kind: Kind, namespace: String, name: String, replicas: Int?, selector: String, podLabels: [String: String]) {
            self.kind = kind
            self.namespace = namespace
            self.name = name
            self.replicas = replicas
            self.selector = selector
            self.podLabels = podLabels
        }
    }

    /// A pod: where it runs and what owns it.
    public struct Pod: Sendable, Codable, Equatable {
        public var namespace: String
        public var name: String
        public var node: String?
        public var labels: [String: String]
        /// The workload that brings it back (a ReplicaSet's pod names its Deployment); nil for a
        /// bare pod, which a drain refuses to evict without `--force`.
        public var owner: Owner?
        public var ready: Bool
        public var phase: String
        /// Holds an `emptyDir` (a drain must be allowed to delete its data).
        public var usesEmptyDir: Bool

        public init(namespace: String, name: String, node: String?, labels: [String: String] = [:], owner: Owner? = nil,
                    ready: Bool = true, phase: String = "Running", usesEmptyDir: Bool = false)
        {
            self.namespace = namespace
            self.name = name
            self.node = node
            self.labels = labels
            self.owner = owner
            self.ready = ready
            self.phase = phase
            self.usesEmptyDir = usesEmptyDir
        }
    }

    public struct Owner: Sendable, Codable, Equatable {
        public var kind: String
        public var name: String
        public init(kind: String, name: String) {
            self.kind = kind
            self.name = name
        }
    }

    /// A PodDisruptionBudget with the allowance it had when read.
    public struct DisruptionBudget: Sendable, Codable, Equatable {
        public var namespace: String
        public var name: String
        public var selector: String
        /// `spec.minAvailable` / `spec.maxUnavailable` as written (`1`, `50%`).
        public var minAvailable: String?
        public var maxUnavailable: String?
        /// `status.disruptionsAllowed`: evictions it would let through now.
        public var disruptionsAllowed: Int
        public var currentHealthy: Int
        public var desiredHealthy: Int
        public var expectedPods: Int

        public init(namespace: String, name: String, selector: String, minAvailable: String? = nil, maxUnavailable: String? = nil,
                    disruptionsAllowed: Int = 0, currentHealthy: Int = 0, desiredHealthy: Int = 0, expectedPods: Int = 0)
        {
            self.namespace = namespace
            self.name = name
            self.selector = selector
            self.minAvailable = minAvailable
            self.maxUnavailable = maxUnavailable
            self.disruptionsAllowed = disruptionsAllowed
            self.currentHealthy = currentHealthy
            self.desiredHealthy = desiredHealthy
            self.expectedPods = expectedPods
        }
    }

    /// Longhorn: its version, settings (`node-drain-policy`, …), volumes and replicas.
    public struct Longhorn: Sendable, Codable, Equatable {
        public var version: String
        public var settings: [String: String]
        public var volumes: [Volume]
        public var replicas: [Replica]

        public init(version: String, settings: [String: String] = [:], volumes: [Volume] = [], replicas: [Replica] = []) {
            self.version = version
            self.settings = settings
            self.volumes = volumes
            self.replicas = replicas
        }

        public struct Volume: Sendable, Codable, Equatable {
            public var name: String
            public var numberOfReplicas: Int
            public var size: String
            /// `attached`, `detached`, …
            public var state: String
            public var robustness: String
            /// The node it is attached to; empty when detached.
            public var node: String
            public init(name: String, numberOfReplicas: Int, size: String, state: String, robustness: String, node: String) {
                self.name = name
                self.numberOfReplicas = numberOfReplicas
                self.size = size
                self.state = state
                self.robustness = robustness
                self.node = node
            }
        }

        public struct Replica: Sendable, Codable, Equatable {
            public var name: String
            public var volume: String
            public var node: String
            /// `running`, `stopped`, …
            public var state: String
            /// Holds a complete copy (became healthy and has not failed since).
            public var healthy: Bool
            public init(name: String, volume: String, node: String, state: String, healthy: Bool) {
                self.name = name
                self.volume = volume
                self.node = node
                self.state = state
                self.healthy = healthy
            }
        }
    }

    /// A Flux GitRepository, Kustomization or HelmRelease and its readiness.
    public struct FluxObject: Sendable, Codable, Equatable {
        public var kind: String
        public var namespace: String
        public var name: String
        public var ready: Bool
        public var suspended: Bool
        public init(kind: String, namespace: String, name: String, ready: Bool, suspended: Bool) {
            self.kind = kind
            self.namespace = namespace
            self.name = name
            self.ready = ready
            self.suspended = suspended
        }
    }

    public var servers: [Node] { nodes.filter { $0.role == .server } }
    public var agents: [Node] { nodes.filter { $0.role == .agent } }

    /// What is wrong with this capture for building a twin, in words an operator can act on;
    /// nil when it is usable.
    public var problem: String? {
        if formatVersion != Self.formatVersion {
            return "the capture has format \(formatVersion); this build reads format \(Self.formatVersion): capture the cluster again"
        }
        if servers.isEmpty { return "the capture holds no server node (no node labelled node-role.kubernetes.io/control-plane)" }
        var seen = Set<String>()
        for node in nodes where !seen.insert(node.name).inserted { return "node \(node.name) appears twice in the capture" }
        if let node = nodes.first(where: { $0.version.isEmpty }) { return "node \(node.name) has no kubelet version in the capture" }
        return nil
    }

    // MARK: - The file

    /// The capture as pretty, key-sorted JSON (stable, so two captures diff cleanly).
    public func encoded() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return Array(try encoder.encode(self)) + [0x0A]
    }

    /// Reads a capture written by `encoded()`; a file of another shape throws `CaptureError`.
    public static func decode(_ bytes: [UInt8], source: String) throws(CaptureError) -> ClusterCapture {
        let capture: ClusterCapture
        do { capture = try JSONDecoder().decode(ClusterCapture.self, from: Data(bytes)) } catch {
            throw CaptureError("\(source) is not a cluster capture (\(error)): write one with `upkeep rehearse --keep DIR`")
        }
        if let problem = capture.problem { throw CaptureError("\(source): \(problem)") }
        return capture
    }
}

/// A capture that cannot be read or used; the message says what to do.
public struct CaptureError: Error, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
