import UpkeepCapture
import UpkeepKube

/// The shape of a sandbox cluster: how many nodes of each role, volumes, versions; or the live
/// cluster it twins (`twin`, docs/rehearse.md).
public struct ClusterSpec: Sendable, Codable, Equatable {
    public var servers: Int
    public var agents: Int
    public var volumes: Int
    public var replicas: Int
    public var k3sVersion: String
    public var longhornVersion: String
    public var fluxVersion: String
    /// Node name -> address; nodes without an entry get 127.0.<1+index/250>.<1+index%250>.
    public var addresses: [String: String]
    /// The live cluster this sandbox is a twin of (`upkeep-sandbox up --twin FILE`): its node
    /// names, roles, versions, labels, taints and cordons, workloads, pods' placement, disruption
    /// budgets, Longhorn settings, volumes and replicas. Nil for a generated cluster.
    public var twin: ClusterCapture?
    /// k3s versions the release server publishes besides those around `k3sVersion` (`up --offer-k3s V`).
    public var offeredK3sVersions: [String]?

    public init(servers: Int = 3, agents: Int = 4, volumes: Int = 6, replicas: Int = 2,
                k3sVersion: String = "v1.30.6+k3s1", longhornVersion: String = "v1.7.2", fluxVersion: String = "v2.4.0",
                addresses: [String: String] = [:])
    {
        self.servers = servers
        self.agents = agents
        self.volumes = volumes
        self.replicas = replicas
        self.k3sVersion = k3sVersion
        self.longhornVersion = longhornVersion
        self.fluxVersion = fluxVersion
        self.addresses = addresses
    }

    /// The twin of `capture`: its nodes (servers first), the oldest k3s version among them as the
    /// base the release server offers upgrades from, Longhorn's version.
    public init(twin capture: ClusterCapture) {
        let nodes = capture.nodes.count
        let replicas = capture.longhorn?.volumes.map(\.numberOfReplicas).max() ?? 1
        let oldest = capture.nodes.map(\.version).min { K3sVersionOrder.less($0, $1) } ?? ClusterSpec().k3sVersion
        let longhorn = capture.longhorn.map(\.version).flatMap { $0.isEmpty ? nil : $0 } ?? ClusterSpec().longhornVersion
        self.init(servers: capture.servers.count, agents: capture.agents.count, volumes: capture.longhorn?.volumes.count ?? 0,
                  replicas: min(max(1, replicas), max(1, nodes)), k3sVersion: oldest, longhornVersion: longhorn)
        twin = capture
    }

    public var serverNames: [String] { twin.map { $0.servers.map(\.name) } ?? (0..<servers).map { "server-\($0 + 1)" } }
    public var agentNames: [String] { twin.map { $0.agents.map(\.name) } ?? (0..<agents).map { "agent-\($0 + 1)" } }
    public var nodeNames: [String] { serverNames + agentNames }

    /// The k3s version `node` starts with: the twin's node's, else `k3sVersion`.
    public func version(of node: String) -> String {
        twin?.nodes.first { $0.name == node }?.version ?? k3sVersion
    }

    public func address(of node: String) -> String {
        if let address = addresses[node] { return address }
        let index = nodeNames.firstIndex(of: node) ?? 0
        return "127.0.\(1 + index / 250).\(1 + index % 250)"
    }

    /// What is wrong with this spec, in words an operator can act on; `nil` when it is usable.
    public var problem: String? {
        if let problem = twin?.problem { return problem }
        if servers < 1 { return "a cluster needs at least one server (--servers 1 or more)" }
        if agents < 0 || volumes < 0 { return "--agents and --volumes cannot be negative" }
        if servers + agents > 500 { return "at most 500 nodes (got \(servers + agents))" }
        if volumes > 0 && (replicas < 1 || replicas > servers + agents) {
            return "--replicas must be between 1 and the number of nodes (\(servers + agents)); replicas live on distinct nodes"
        }
        return nil
    }
}

/// Timings of the behaviour model, in seconds of model time.
public struct ModelTimings: Sendable, Codable, Equatable {
    /// A node without a heartbeat for longer than this turns NotReady (`node-monitor-grace-period`).
    public var nodeGraceSeconds: Double
    /// A scheduled pod turns Ready after this long on a Ready node.
    public var podStartSeconds: Double
    /// A deleted or evicted pod disappears this long after the request (its kubelet being up).
    public var podTerminationSeconds: Double
    /// A returning replica rebuilds for this long before it counts as healthy again.
    public var rebuildSeconds: Double
    /// A snapshot of an attached volume is ready this long after creation.
    public var snapshotSeconds: Double

    public init(nodeGraceSeconds: Double = 20, podStartSeconds: Double = 2, podTerminationSeconds: Double = 1,
                rebuildSeconds: Double = 10, snapshotSeconds: Double = 1)
    {
        self.nodeGraceSeconds = nodeGraceSeconds
        self.podStartSeconds = podStartSeconds
        self.podTerminationSeconds = podTerminationSeconds
        self.rebuildSeconds = rebuildSeconds
        self.snapshotSeconds = snapshotSeconds
    }

    /// The model's steps `speed` times faster (`up --speed N`): pod start and termination,
    /// replica rebuild, snapshot. The node grace period stays: it is how long the node
    /// controller waits for heartbeats that arrive at their own pace, not a step of a rollout.
    public func scaled(by speed: Double) -> ModelTimings {
        guard speed > 0 else { return self }
        return ModelTimings(nodeGraceSeconds: nodeGraceSeconds, podStartSeconds: podStartSeconds / speed,
                            podTerminationSeconds: podTerminationSeconds / speed, rebuildSeconds: rebuildSeconds / speed,
                            snapshotSeconds: snapshotSeconds / speed)
    }
}

/// What the model knows about a node's k3s (its kubelet), fed by heartbeats.
public struct NodeRuntime: Sendable, Equatable {
    /// The kubelet last said it is ready (and has not said otherwise since).
    public var kubeletReady = false
    public var lastHeartbeat: Double?
    public var version: String?
}

/// Something that happened in the model that tests and `sandbox status` report.
public struct ModelEvent: Sendable, Equatable, Codable {
    public var time: Double
    public var kind: String
    public var object: String
    public var message: String
}

/// A Flux object forced not Ready by a fault knob.
/// What makes the sandbox's Longhorn misbehave (`upkeep sandbox fault longhorn …`).
public struct LonghornFaults: Sendable, Equatable, Codable {
    /// Helm moves Longhorn's manager to the new version, then the HelmRelease fails anyway
    /// (its wait times out): the state where a revert would be a downgrade.
    public var failsAfterManager = false
    /// Snapshots of these volumes never become ready (`*`: of every volume).
    public var snapshotsStuck: [String] = []

    public init(failsAfterManager: Bool = false, snapshotsStuck: [String] = []) {
        self.failsAfterManager = failsAfterManager
        self.snapshotsStuck = snapshotsStuck
    }

    func snapshotStuck(of volume: String) -> Bool {
        snapshotsStuck.contains(volume) || snapshotsStuck.contains("*")
    }
}

public struct FluxFault: Sendable, Equatable, Codable {
    public var reason: String
    public var message: String
    public init(reason: String = "ReconciliationFailed", message: String = "injected failure") {
        self.reason = reason
        self.message = message
    }
}

/// Stable small hashes for generated names.
enum StableHash {
    static func fnv1a(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return hash
    }

    private static let alphabet = Array("bcdfghjklmnpqrstvwxz2456789")

    /// Kubernetes-style random suffix (`-x7k2p`), derived from `seed`.
    static func suffix(_ seed: String, length: Int = 5) -> String {
        var value = fnv1a(seed)
        var out = ""
        for _ in 0..<length {
            out.append(alphabet[Int(value % UInt64(alphabet.count))])
            value /= UInt64(alphabet.count)
        }
        return out
    }

    static func hex(_ seed: String, length: Int = 8) -> String {
        let s = String(fnv1a(seed), radix: 16)
        return String((String(repeating: "0", count: 16) + s).suffix(16).prefix(length))
    }
}

/// A commit of the branch the sandbox's Flux watches, and the versions its manifests pin.
struct GitCommit: Sendable, Equatable {
    var sha: String
    /// The Longhorn HelmRelease's chart version, if the commit holds it.
    var longhornChart: String?
    /// The Flux components it holds, if any.
    var flux: FluxRelease?
}

/// A Flux version and its controllers' images, as a components manifest installs them.
struct FluxRelease: Sendable, Equatable {
    var version: String
    var images: [String: String]
}
