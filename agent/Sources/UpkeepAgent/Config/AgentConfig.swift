import UpkeepProtocol
import UpkeepYAML

/// The agent's configuration, normally `/etc/upkeep/agent.yaml`. Every field but `nodeName` has
/// a default that matches a standard k3s install; `ConfigLoader` reads and checks it.
public struct AgentConfig: Equatable, Sendable {
    public static let defaultPath = "/etc/upkeep/agent.yaml"
    public static let defaultPort = 9660

    /// The Kubernetes node this agent serves; its certificate must name it.
    public var nodeName: String
    public var listenAddress = "0.0.0.0"
    public var listenPort = AgentConfig.defaultPort
    /// The protocol server's bounds; `listen:` sets its connection and handshake limits
    /// (PROTOCOL.md section 14 has the defaults).
    public var server = ServerConfiguration()
    /// The cluster CA (only controller certificates it issued are accepted), the agent's chain and key.
    public var caFile = "/etc/upkeep/tls/ca.crt"
    public var certificateFile = "/etc/upkeep/tls/agent.crt"
    public var keyFile = "/etc/upkeep/tls/agent.key"

    /// The live k3s binary that installs replace.
    public var k3sBinary = "/usr/local/bin/k3s"
    /// `k3s` on servers, `k3s-agent` on agents; nil means detect from the installed unit files.
    public var unit: String?
    /// k3s's own data directory (datastore, token) for backups.
    public var k3sDataDir = "/var/lib/rancher/k3s"
    /// Whether k3s imports its images from `<k3sDataDir>/agent/images/` (an air-gapped node,
    /// https://docs.k3s.io/installation/airgap); nil means detect: a `k3s-airgap-images-*` file there.
    public var airgapImages: Bool?
    public var systemctl = "/usr/bin/systemctl"
    /// How long one `systemctl` call may take before it is stopped.
    public var systemctlTimeoutSeconds = 120
    /// How long `k3s --version` may take.
    public var versionTimeoutSeconds = 10

    /// Staging, previous binaries and the operation journal.
    public var dataDir = "/var/lib/upkeep-agent"
    /// For drains and the node-Ready probe; nil means the default for the role
    /// (`/etc/rancher/k3s/k3s.yaml` on servers, `/etc/upkeep/kubeconfig` on agents).
    public var kubeconfig: String?

    public var probes = ProbeConfig()
    /// The node's embedded etcd, for `etcdHealth` (servers with embedded etcd only).
    public var etcd = EtcdConfig()
    /// The cluster DNS address `clusterDNS` queries (`clusterDNS: 10.43.0.10` or `host:port` in
    /// agent.yaml): k3s's default `--cluster-dns`, https://docs.k3s.io/cli/server#networking.
    public var clusterDNSHost = "10.43.0.10"
    public var clusterDNSPort = 53
    public var logLevel = LogLevelName.info
    /// The Prometheus text file of the agent's bounds reached (`AgentLimits`), for node_exporter's
    /// textfile collector; nil means `<dataDir>/metrics/upkeep-agent.prom`.
    public var metricsTextfile: String?

    public init(nodeName: String) { self.nodeName = nodeName }

    /// The unit to manage, detected from the unit files when not configured.
    public func resolvedUnit(unitDirectories: [String] = UnitDetection.directories) throws(ConfigError) -> String {
        if let unit { return unit }
        return try UnitDetection.detect(in: unitDirectories)
    }

    public var resolvedMetricsTextfile: String { metricsTextfile ?? "\(dataDir)/metrics/upkeep-agent.prom" }

    public func resolvedKubeconfig(isServer: Bool) -> String {
        kubeconfig ?? (isServer ? "/etc/rancher/k3s/k3s.yaml" : "/etc/upkeep/kubeconfig")
    }
}

/// The node's health checks. An empty endpoint turns its check off.
public struct ProbeConfig: Equatable, Sendable {
    /// Plain HTTP kubelet health endpoint; must answer 200 `ok`.
    public var kubeletHealthzURL = "http://127.0.0.1:10248/healthz"
    /// HTTPS k3s supervisor endpoint (servers only); must answer 200 `pong`.
    public var supervisorPingURL = "https://127.0.0.1:6443/ping"
    /// The CA that signed k3s's serving certificate.
    public var supervisorCAFile = "/var/lib/rancher/k3s/server/tls/server-ca.crt"
    public var containerdSocket = "/run/k3s/containerd/containerd.sock"
    /// Check through the Kubernetes API that the node is Ready (at the expected kubeletVersion).
    public var nodeReady = true
    /// Bound on each check.
    public var timeoutMs = 2_000
    /// Pause between full probe rounds while waiting for health after a restart.
    public var intervalMs = 50
    /// After a restart, pause between quick looks at kubelet healthz alone (one local request)
    /// before the first full round: a healthy k3s is noticed within this, without spawning
    /// systemctl for every look.
    public var gateIntervalMs = 5

    public init() {}
}

/// Where the node's embedded etcd answers and the client certificate k3s keeps for it
/// (https://docs.k3s.io/advanced#using-etcdctl). Nil paths: under `k3s.dataDir`.
public struct EtcdConfig: Equatable, Sendable {
    /// The node's own member: k3s serves it on https://127.0.0.1:2379.
    public var endpoint = "https://127.0.0.1:2379"
    public var caFile: String?
    public var certificateFile: String?
    public var keyFile: String?

    public init() {}

    public func resolvedCAFile(k3sDataDir: String) -> String { caFile ?? "\(k3sDataDir)/server/tls/etcd/server-ca.crt" }
    public func resolvedCertificateFile(k3sDataDir: String) -> String { certificateFile ?? "\(k3sDataDir)/server/tls/etcd/server-client.crt" }
    public func resolvedKeyFile(k3sDataDir: String) -> String { keyFile ?? "\(k3sDataDir)/server/tls/etcd/server-client.key" }
}

public enum LogLevelName: String, Sendable, CaseIterable {
    case trace, debug, info, notice, warning, error, critical
}

/// Finds the k3s unit from the unit files systemd would load.
public enum UnitDetection {
    public static let directories = ["/etc/systemd/system", "/usr/local/lib/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system"]
    public static let candidates = ["k3s", "k3s-agent"]

    public static func detect(in directories: [String]) throws(ConfigError) -> String {
        var found = Set<String>()
        for directory in directories {
            for unit in candidates where FileSystem.exists("\(directory)/\(unit).service") { found.insert(unit) }
        }
        guard found.count == 1, let unit = found.first else {
            let problem = found.isEmpty
                ? "no k3s.service or k3s-agent.service unit file found in \(directories.joined(separator: ", "))"
                : "both k3s.service and k3s-agent.service exist"
            throw ConfigError(file: nil, line: nil, field: "k3s.unit", problem: "\(problem); set k3s.unit to the unit that runs k3s on this node")
        }
        return unit
    }
}

/// A configuration problem, naming the file, line and field (shared with the controller's configuration).
public typealias ConfigError = UpkeepYAML.ConfigError
