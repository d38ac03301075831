#if canImport(Glibc)
import Glibc
#endif
import UpkeepAgentCore
import UpkeepCore
import UpkeepHTTP
import UpkeepProtocol
import UpkeepYAML

/// Reads `agent.yaml` strictly: unknown fields, wrong types and out-of-range values are errors
/// that name the file, line and field.
public enum ConfigLoader {
    public static func load(path: String) throws(ConfigError) -> AgentConfig {
        let text: String
        do {
            text = try FileSystem.readText(path, bytesMax: 1 << 20)
        } catch {
            throw ConfigError(file: path, line: nil, field: "(file)", problem: "cannot be read: \(error); create it or pass --config")
        }
        return try parse(text, file: path)
    }

    public static func parse(_ text: String, file: String? = nil) throws(ConfigError) -> AgentConfig {
        let top = try ConfigFields.document(text, file: file, expecting: "with at least nodeName")
        guard let nodeName = try top.string("nodeName") else {
            throw ConfigError(file: file, line: 1, field: "nodeName", problem: "is required: the Kubernetes node this agent serves")
        }
        guard isDNSSubdomain(nodeName) else {
            throw top.error("nodeName", "must be a DNS-1123 subdomain (lowercase letters, digits, '-' and '.'; is \"\(nodeName)\")")
        }
        var config = AgentConfig(nodeName: nodeName)
        if let listen = try top.section("listen") {
            if let address = try listen.string("address") {
                guard isIPAddress(address) || isDNSSubdomain(address) else {
                    throw listen.error("address", "must be an IP address to listen on (0.0.0.0 for all, ::, 10.0.0.5) or a host name; "
                                       + "is \"\(address.prefix(100))\"")
                }
                config.listenAddress = address
            }
            config.listenPort = try listen.int("port", in: 1...65535) ?? config.listenPort
            try readLimits(listen, into: &config.server)
            try listen.rejectUnknown(["address", "port", "connectionsMax", "handshakesMax", "handshakesPerSourceMax", "handshakeTimeoutSeconds"])
        }
        if let tls = try top.section("tls") {
            config.caFile = try tls.path("ca") ?? config.caFile
            config.certificateFile = try tls.path("certificate") ?? config.certificateFile
            config.keyFile = try tls.path("key") ?? config.keyFile
            try tls.rejectUnknown(["ca", "certificate", "key"])
        }
        if let k3s = try top.section("k3s") {
            config.k3sBinary = try k3s.path("binary") ?? config.k3sBinary
            if let unit = try k3s.string("unit") {
                guard UnitDetection.candidates.contains(unit) else {
                    throw k3s.error("unit", "must be k3s (servers) or k3s-agent (agents); is \"\(unit)\"")
                }
                config.unit = unit
            }
            config.k3sDataDir = try k3s.path("dataDir") ?? config.k3sDataDir
            config.versionTimeoutSeconds = try k3s.int("versionTimeoutSeconds", in: 1...300) ?? config.versionTimeoutSeconds
            config.airgapImages = try k3s.bool("airgapImages")
            try k3s.rejectUnknown(["binary", "unit", "dataDir", "versionTimeoutSeconds", "airgapImages"])
        }
        if let systemd = try top.section("systemd") {
            config.systemctl = try systemd.path("systemctl") ?? config.systemctl
            config.systemctlTimeoutSeconds = try systemd.int("timeoutSeconds", in: 1...3600) ?? config.systemctlTimeoutSeconds
            try systemd.rejectUnknown(["systemctl", "timeoutSeconds"])
        }
        config.dataDir = try top.path("dataDir") ?? config.dataDir
        config.kubeconfig = try top.path("kubeconfig")
        if let probes = try top.section("probes") {
            config.probes.kubeletHealthzURL = try probes.url("kubeletHealthz", scheme: "http") ?? config.probes.kubeletHealthzURL
            config.probes.supervisorPingURL = try probes.url("supervisorPing", scheme: "https") ?? config.probes.supervisorPingURL
            config.probes.supervisorCAFile = try probes.path("supervisorCA") ?? config.probes.supervisorCAFile
            config.probes.containerdSocket = try probes.string("containerdSocket") ?? config.probes.containerdSocket
            config.probes.nodeReady = try probes.bool("nodeReady") ?? config.probes.nodeReady
            config.probes.timeoutMs = try probes.int("timeoutMs", in: 1...60_000) ?? config.probes.timeoutMs
            config.probes.intervalMs = try probes.int("intervalMs", in: 10...60_000) ?? config.probes.intervalMs
            config.probes.gateIntervalMs = try probes.int("gateIntervalMs", in: 1...1_000) ?? config.probes.gateIntervalMs
            try probes.rejectUnknown(["kubeletHealthz", "supervisorPing", "supervisorCA", "containerdSocket", "nodeReady", "timeoutMs", "intervalMs",
                                      "gateIntervalMs"])
        }
        if let dns = try top.string("clusterDNS") {
            guard let address = clusterDNSAddress(dns) else {
                throw top.error("clusterDNS", "\(clusterDNSRule); is \"\(dns.prefix(100))\"")
            }
            (config.clusterDNSHost, config.clusterDNSPort) = address
        }
        if let etcd = try top.section("etcd") {
            if let endpoint = try etcd.string("endpoint") {
                guard let url = try? HTTPURL(endpoint), url.path == "/" || url.path.isEmpty else {
                    throw etcd.error("endpoint", "must be an http:// or https:// URL with a host and no path, e.g. https://127.0.0.1:2379; is \"\(endpoint)\"")
                }
                config.etcd.endpoint = endpoint.hasSuffix("/") ? String(endpoint.dropLast()) : endpoint
            }
            config.etcd.caFile = try etcd.path("ca")
            config.etcd.certificateFile = try etcd.path("certificate")
            config.etcd.keyFile = try etcd.path("key")
            try etcd.rejectUnknown(["endpoint", "ca", "certificate", "key"])
        }
        if let level = try top.string("logLevel") {
            guard let parsed = LogLevelName(rawValue: level) else {
                throw top.error("logLevel", "must be one of \(LogLevelName.allCases.map(\.rawValue).joined(separator: ", ")); is \"\(level)\"")
            }
            config.logLevel = parsed
        }
        if let metrics = try top.section("metrics") {
            config.metricsTextfile = try metrics.path("textfile")
            try metrics.rejectUnknown(["textfile"])
        }
        try top.rejectUnknown(["nodeName", "listen", "tls", "k3s", "systemd", "dataDir", "kubeconfig", "probes", "etcd", "logLevel", "metrics", "clusterDNS"])
        return config
    }

    /// The protocol server's connection limits under `listen:`. Their sum stays well within the
    /// unit's `LimitNOFILE=4096` (the journal, staged files and children need descriptors too).
    static let connectionsRange = 1...3000
    static let handshakesRange = 1...512
    static let handshakeTimeoutRange = 1...60

    static func readLimits(_ listen: ConfigFields, into server: inout ServerConfiguration) throws(ConfigError) {
        server.connectionsMax = try listen.int("connectionsMax", in: connectionsRange) ?? server.connectionsMax
        server.handshakesMax = try listen.int("handshakesMax", in: handshakesRange) ?? server.handshakesMax
        if let perSource = try listen.int("handshakesPerSourceMax", in: handshakesRange) {
            guard perSource <= server.handshakesMax else {
                throw listen.error("handshakesPerSourceMax", "must be at most handshakesMax (\(server.handshakesMax)); is \(perSource)")
            }
            server.handshakesPerSourceMax = perSource
        } else {
            server.handshakesPerSourceMax = min(server.handshakesPerSourceMax, server.handshakesMax)
        }
        if let seconds = try listen.int("handshakeTimeoutSeconds", in: handshakeTimeoutRange) {
            server.handshakeTimeout = .seconds(seconds)
        }
    }

    /// An IPv4 or IPv6 address literal (inet_pton's forms).
    static func isIPAddress(_ text: String) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 16)
        return inet_pton(AF_INET, text, &buffer) == 1 || inet_pton(AF_INET6, text, &buffer) == 1
    }

    /// What `clusterDNS` (agent.yaml, `upkeep-agent join --cluster-dns`) must be.
    public static let clusterDNSRule = "must be the cluster DNS's IPv4 address, with a port when it is not 53 (10.43.0.10, 127.0.0.53:5353)"

    /// `10.43.0.10` or `127.0.0.53:5353` as host and port; nil for anything else.
    public static func clusterDNSAddress(_ text: String) -> (host: String, port: Int)? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), IPAddressText.ipv4(String(parts[0])) != nil else { return nil }
        guard parts.count == 2 else { return (String(parts[0]), 53) }
        guard let port = Int(parts[1]), (1...65535).contains(port) else { return nil }
        return (String(parts[0]), port)
    }

    static func isDNSSubdomain(_ name: String) -> Bool {
        guard (1...253).contains(name.utf8.count) else { return false }
        return name.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
            guard (1...63).contains(label.utf8.count), let first = label.utf8.first, let last = label.utf8.last else { return false }
            let alnum: (UInt8) -> Bool = { (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
            return alnum(first) && alnum(last) && label.utf8.allSatisfy { alnum($0) || $0 == UInt8(ascii: "-") }
        }
    }
}

extension ConfigFields {
    /// A URL with this scheme, or "" to turn the check off.
    func url(_ key: String, scheme: String) throws(ConfigError) -> String? {
        guard let text = try string(key) else { return nil }
        guard text.isEmpty || ((try? HTTPURL(text))?.scheme.rawValue == scheme) else {
            throw error(key, "must be a \(scheme):// URL with host and path (or \"\" to turn this check off); is \"\(text)\"")
        }
        return text
    }
}
