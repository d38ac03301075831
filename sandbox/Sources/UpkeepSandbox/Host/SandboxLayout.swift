import Foundation

/// One sandbox host (a k3s node) as `sandbox.json` records it: what the fake k3s, the
/// systemctl stand-in and, later, the node's upkeep-agent need to find their files.
///
/// `root` is the node's filesystem prefix: `<root>/usr/local/bin/k3s` is its k3s binary,
/// `<root>/etc/rancher/k3s/k3s.yaml` its kubeconfig (servers), `<root>/var/lib/rancher/k3s`
/// its data dir, `<root>/bin/systemctl` its systemctl.
public struct SandboxNode: Codable, Sendable, Equatable {
    public var name: String
    /// `server` or `agent`.
    public var role: String
    public var address: String
    public var root: String
    /// The network namespace the node's processes run in (`--netns` mode), else nil.
    public var netns: String?
    /// The simulated API the node's kubelet reports to.
    public var apiURL: String
    public var faultsFile: String
    /// The multi-call binary the node's k3s script and systemctl run.
    public var hostBinary: String
    /// `etcd` (embedded etcd, HA servers) or `sqlite`.
    public var datastore: String
    /// Where the node's upkeep-agent will listen (issue 4), reserved now so addresses stay stable.
    public var agentPort: Int
    /// Every server's address (servers of an etcd cluster: where a member without data finds
    /// the cluster to join, as k3s's `--server` URL does).
    public var etcdPeers: [String]?
    /// The node has no registry: its k3s takes its images from `agent/images` (`AirGap`).
    public var airgap: Bool?
    /// Where the node reaches the cluster DNS Service (`host:port`, `SandboxClusterDNS`): its
    /// agent's `clusterDNS`.
    public var clusterDNS: String?

    public var isServer: Bool { role == "server" }
    public var unit: String { isServer ? "k3s" : "k3s-agent" }
    public var k3sBinary: String { "\(root)/usr/local/bin/k3s" }
    public var systemctl: String { "\(root)/bin/systemctl" }
    public var dataDir: String { "\(root)/var/lib/rancher/k3s" }
    /// The admin kubeconfig k3s writes on servers; agents get the same at the kubelet's path.
    public var kubeconfig: String { isServer ? "\(root)/etc/rancher/k3s/k3s.yaml" : "\(root)/var/lib/rancher/k3s/agent/kubelet.kubeconfig" }
    public var serverCAFile: String { "\(dataDir)/server/tls/server-ca.crt" }
    public var servingCertificateFile: String { "\(dataDir)/server/tls/serving-kube-apiserver.crt" }
    public var servingKeyFile: String { "\(dataDir)/server/tls/serving-kube-apiserver.key" }
    /// The kubelet's serving certificate and key, where k3s keeps them (signed by the server CA).
    public var kubeletServingCertificateFile: String { "\(dataDir)/agent/serving-kubelet.crt" }
    public var kubeletServingKeyFile: String { "\(dataDir)/agent/serving-kubelet.key" }
    public var snapshotDir: String { "\(dataDir)/server/db/snapshots" }
    public var containerdSocket: String { "\(root)/run/k3s/containerd/containerd.sock" }
    public var unitFile: String { "\(root)/etc/systemd/system/\(unit).service" }
    /// The systemctl stand-in's record of the unit.
    public var unitStateFile: String { "\(root)/run/upkeep-sandbox/\(unit).json" }
    /// Written by the fake k3s once it is healthy (the `READY=1` of a Type=notify unit).
    public var readyFile: String { "\(root)/run/upkeep-sandbox/\(unit).ready" }
    public var logFile: String { "\(root)/var/log/\(unit).log" }
    /// The datastore's etcd API: a server's etcd member, or the fake kine of a single SQLite server.
    public var datastoreURL: String { "http://\(address):2379" }
    /// Its etcd member's output (servers of an etcd cluster).
    public var etcdLogFile: String { "\(root)/var/log/etcd.log" }
    /// Its etcd member's pid, while it runs.
    public var etcdPIDFile: String { "\(root)/run/upkeep-sandbox/etcd.pid" }
    public var kubeletHealthzURL: String { "http://\(address):10248/healthz" }
    public var supervisorPingURL: String { "https://\(address):6443/ping" }
    /// The kubelet's API port, which every node must reach on every other
    /// (https://docs.k3s.io/installation/requirements#inbound-rules-for-k3s-nodes).
    public static let kubeletPort = 10250
    /// The node's upkeep-agent: configuration, data dir, pid file, log, and where it listens.
    public var agentConfigFile: String { "\(root)/etc/upkeep/agent.yaml" }
    public var agentDataDir: String { "\(root)/var/lib/upkeep-agent" }
    public var agentPIDFile: String { "\(root)/run/upkeep-agent.pid" }
    public var agentLogFile: String { "\(root)/var/log/upkeep-agent.log" }
    public var agentAddress: String { "\(address):\(agentPort)" }
    public static let descriptorName = "sandbox-node.json"
    public var descriptorFile: String { "\(root)/\(Self.descriptorName)" }

    public init(name: String, role: String, address: String, root: String, netns: String?, apiURL: String, faultsFile: String,
                hostBinary: String, datastore: String, agentPort: Int = 9660, etcdPeers: [String]? = nil, airgap: Bool? = nil,
                clusterDNS: String? = nil)
    {
        self.name = name
        self.role = role
        self.address = address
        self.root = root
        self.netns = netns
        self.apiURL = apiURL
        self.faultsFile = faultsFile
        self.hostBinary = hostBinary
        self.datastore = datastore
        self.agentPort = agentPort
        self.etcdPeers = etcdPeers
        self.airgap = airgap
        self.clusterDNS = clusterDNS
    }

    /// Reads the descriptor of the node whose root is `root`.
    public static func load(root: String) throws -> SandboxNode {
        try JSONFiles.read(SandboxNode.self, from: "\(root)/\(descriptorName)")
    }
}

/// `DIR/sandbox.json`: the whole sandbox, for `status`, `fault`, `down`, and the agents and
/// controller that join it later.
public struct SandboxManifest: Codable, Sendable, Equatable {
    public var directory: String
    /// The background process that runs the sandbox (API, release server, node supervision).
    public var pid: Int32
    public var apiURL: String
    public var kubeconfig: String
    public var releaseURL: String
    public var faultsFile: String
    public var netns: Bool
    /// The bridge of `--netns` mode.
    public var bridge: String?
    public var k3sVersion: String
    public var availableK3sVersions: [String]
    public var nodes: [SandboxNode]
    /// The CA of the simulated API's serving certificate (also in the kubeconfig).
    public var serverCAFile: String
    public var startedAt: String

    public static func path(in directory: String) -> String { "\(directory)/sandbox.json" }

    public static func load(directory: String) throws -> SandboxManifest {
        try JSONFiles.read(SandboxManifest.self, from: path(in: directory))
    }
}

/// Small JSON files written atomically (temporary file, then rename).
public enum JSONFiles {
    public static func read<T: Decodable>(_ type: T.Type, from path: String) throws -> T {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SandboxError("cannot read \(path)")
        }
        do { return try JSONDecoder().decode(T.self, from: data) } catch {
            throw SandboxError("\(path) is not a valid \(T.self): \(error)")
        }
    }

    public static func write<T: Encodable>(_ value: T, to path: String, mode: Int = 0o644) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try atomicWrite(try encoder.encode(value), to: path, mode: mode)
    }

    public static func atomicWrite(_ data: Data, to path: String, mode: Int = 0o644) throws {
        let directory = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let temporary = "\(path).tmp-\(getpid())"
        guard FileManager.default.createFile(atPath: temporary, contents: data, attributes: [.posixPermissions: mode]) else {
            throw SandboxError("cannot write \(temporary)")
        }
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw SandboxError("cannot rename \(temporary) to \(path): \(reason)")
        }
    }
}

/// A sandbox operation that failed, with what to do about it.
public struct SandboxError: Error, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Fault knobs for the fake k3s, per version and per node, read when k3s starts.
public struct K3sFault: Codable, Sendable, Equatable {
    /// k3s exits with an error right after starting.
    public var exitAtStart: Bool?
    /// k3s starts (its unit turns active) but its kubelet never becomes healthy or Ready.
    public var neverHealthy: Bool?
    /// k3s becomes healthy only this long after starting.
    public var healthyAfterSeconds: Double?
    /// (Node faults) only this k3s version is affected.
    public var onlyVersion: String?
    /// (Node faults) every version but this one is affected: "after an upgrade" from it.
    public var exceptVersion: String?

    public init(exitAtStart: Bool? = nil, neverHealthy: Bool? = nil, healthyAfterSeconds: Double? = nil, onlyVersion: String? = nil,
                exceptVersion: String? = nil)
    {
        self.exitAtStart = exitAtStart
        self.neverHealthy = neverHealthy
        self.healthyAfterSeconds = healthyAfterSeconds
        self.onlyVersion = onlyVersion
        self.exceptVersion = exceptVersion
    }

    public var isEmpty: Bool { exitAtStart == nil && neverHealthy == nil && healthyAfterSeconds == nil }

    func applies(to version: String) -> Bool {
        (onlyVersion == nil || onlyVersion == version) && exceptVersion != version
    }

    /// `other`'s settings override this one's.
    func overlaid(with other: K3sFault?) -> K3sFault {
        guard let other else { return self }
        return K3sFault(exitAtStart: other.exitAtStart ?? exitAtStart, neverHealthy: other.neverHealthy ?? neverHealthy,
                        healthyAfterSeconds: other.healthyAfterSeconds ?? healthyAfterSeconds)
    }

    /// In words, for `upkeep sandbox status`.
    public var summary: String {
        var parts: [String] = []
        if exitAtStart == true { parts.append("exits at start") }
        if neverHealthy == true { parts.append("never healthy") }
        if let seconds = healthyAfterSeconds { parts.append("healthy after \(Int(seconds)) s") }
        if let onlyVersion { parts.append("at \(onlyVersion) only") }
        if let exceptVersion { parts.append("at versions other than \(exceptVersion)") }
        return parts.joined(separator: ", ")
    }
}

/// `DIR/faults.json`: what `upkeep sandbox fault` sets for the fake k3s, the agents, the model
/// and the release server. The fake k3s reads it when it starts; the sandbox process re-reads it
/// while it runs.
public struct SandboxFaults: Codable, Sendable, Equatable {
    public var versions: [String: K3sFault] = [:]
    public var nodes: [String: K3sFault] = [:]
    /// The release server answers the releases API with 403 and `x-ratelimit-remaining: 0`.
    public var releasesRateLimited: Bool = false
    /// The release server serves k3s binaries that do not match their checksums.
    public var corruptBinaries: Bool = false
    /// The release server's other faults (rate limit with a reset, secondary limit, corrupt
    /// JSON, hang, a dropped asset, a small page size).
    public var releaseFaults: ReleaseFaults? = nil
    /// Longhorn replicas on these nodes take this long to rebuild.
    public var rebuildSeconds: [String: Double]? = nil
    /// These nodes' upkeep-agents are stopped and kept down.
    public var agentsDown: [String]? = nil
    /// These servers' etcd members are frozen (SIGSTOP) while their k3s keeps running.
    public var etcdStopped: [String]? = nil
    /// The Longhorn HelmRelease fails its upgrade (Helm times out) and Longhorn stays where it was.
    public var longhornUpgradeFails: Bool? = nil
    /// Longhorn's other faults: a release failing after the new manager runs, snapshots never ready.
    public var longhorn: LonghornFaults? = nil
    /// Applying new Flux components fails (the flux-system Kustomization turns not Ready) and Flux stays where it was.
    public var fluxUpgradeFails: Bool? = nil
    /// These nodes' kubelet port (10250) is closed to the other nodes, as a host firewall that
    /// rejects it would make it: the fake k3s closes its listener while the node is listed.
    public var kubeletPortBlocked: [String]? = nil
    /// The API answers writes to these resources (plural names) this many seconds late.
    public var apiWriteStallSeconds: [String: Double]? = nil
    /// These nodes' paths to the cluster DNS Service are broken: their queries get no answer.
    public var dnsDown: [String]? = nil

    public init() {}

    /// A node's knobs win over its version's.
    public func fault(node: String, version: String) -> K3sFault {
        (versions[version] ?? K3sFault()).overlaid(with: nodes[node].flatMap { $0.applies(to: version) ? $0 : nil })
    }

    public static func load(_ path: String) -> SandboxFaults {
        (try? JSONFiles.read(SandboxFaults.self, from: path)) ?? SandboxFaults()
    }
}
