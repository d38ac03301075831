#if canImport(Glibc)
import Glibc
#endif
import UpkeepCore
import UpkeepEnrollment
import UpkeepPKI
import UpkeepYAML

/// `upkeep-agent join`: enrolls this node with a bootstrap token (docs/enrollment.md).
///
/// In order: refuse an enrolled node without `force` (before any network); find the node's facts
/// (its name from k3s's config or the host name, the k3s unit and binary from the unit file,
/// k3s's data dir); generate the node's key here (it never leaves the node); have the join
/// server sign its CSR (`JoinClient`, which pins the CA by hash before it sends the token);
/// write key 0600, certificate and CA 0644 and `agent.yaml`, all or none; start the agent.
public enum NodeEnrollment {
    public struct Options: Sendable {
        public var controller: String
        public var token: String
        public var caHash: String
        public var force = false
        /// The node's filesystem prefix: "/" on a real node, a sandbox node's root in the sandbox.
        public var root = "/"
        public var nodeName: String?
        public var listen = "0.0.0.0:\(AgentConfig.defaultPort)"
        public var systemctl = "/usr/bin/systemctl"
        /// Where the kubelet and k3s supervisor health endpoints answer.
        public var probeHost = "127.0.0.1"
        /// Where a server's embedded etcd answers (k3s: https://127.0.0.1:2379).
        public var etcdEndpoint = EtcdConfig().endpoint
        /// The cluster DNS address `clusterDNS` asks (`host[:port]`); nil: k3s's default 10.43.0.10.
        public var clusterDNS: String?
        public var start = true

        public init(controller: String, token: String, caHash: String) {
            self.controller = controller
            self.token = token
            self.caHash = caHash
        }
    }

    /// The unit `upkeep-agent join` enables and starts.
    public static let agentUnit = "upkeep-agent"

    /// What a join did: the configuration written and where.
    public struct Outcome: Sendable {
        public var config: AgentConfig
        public var configPath: String
        public var certificateNotAfter: String
    }

    public static func join(_ options: Options) async throws(JoinError) -> Outcome {
        let token = try BootstrapToken(parsing: options.token)
        let pin: CAHash
        do { pin = try CAHash(parsing: options.caHash) } catch { throw .malformedMessage(error.description) }
        _ = try JoinClient.hostAndPort(options.controller)
        let config = try discover(options)
        let configPath = path(options.root, AgentConfig.defaultPath)
        let files = [config.keyFile, config.certificateFile, config.caFile, configPath]
        let present = files.filter { FileSystem.exists($0) }
        if !options.force, !present.isEmpty { throw .alreadyEnrolled(files: present) }

        let identity: PeerIdentity
        let key: PrivateKey
        let request: CertificateSigningRequest
        do {
            identity = try PeerIdentity(role: .agent, name: config.nodeName)
            key = try PrivateKey.generate(.ecdsaP256)
            request = try CertificateSigningRequest(identity: identity, key: key)
        } catch {
            throw .nodeName("cannot make this node's key and request: \(error)")
        }
        let (certificate, ca) = try await JoinClient.enroll(controller: options.controller, token: token, pin: pin, request: request,
                                                            force: options.force)
        guard certificate.matches(key), (try? PeerIdentity.from(certificate)) == identity else {
            throw .malformedMessage("the join server's certificate is not for this node's key and name")
        }
        let contents: [(path: String, bytes: [UInt8], mode: mode_t)]
        do {
            contents = [(config.keyFile, Array(try key.pkcs8PEM().utf8), 0o600), (config.certificateFile, Array(try certificate.pem().utf8), 0o644),
                        (config.caFile, Array(try ca.pem().utf8), 0o644), (configPath, Array(configText(config).utf8), 0o644)]
        } catch {
            throw .malformedMessage("cannot encode the node's files: \(error)")
        }
        try writeAllOrNone(contents)
        if options.start { try await start(systemctl: options.systemctl, timeoutSeconds: Double(config.systemctlTimeoutSeconds)) }
        return Outcome(config: config, configPath: configPath, certificateNotAfter: "\(certificate.notAfter)")
    }

    /// The agent's configuration for this node, from what is found under `options.root`.
    public static func discover(_ options: Options) throws(JoinError) -> AgentConfig {
        let k3sConfig = readK3sConfig(path(options.root, "/etc/rancher/k3s/config.yaml"))
        let name = options.nodeName ?? k3sConfig["node-name"] ?? hostName()
        do { _ = try PeerIdentity(role: .agent, name: name) } catch {
            throw .nodeName("\(error); pass --node-name with the node's Kubernetes name")
        }
        var config = AgentConfig(nodeName: name)
        let (listenHost, listenPort) = try JoinClient.hostAndPort(options.listen)
        config.listenAddress = listenHost
        config.listenPort = listenPort
        config.caFile = path(options.root, "/etc/upkeep/tls/ca.crt")
        config.certificateFile = path(options.root, "/etc/upkeep/tls/agent.crt")
        config.keyFile = path(options.root, "/etc/upkeep/tls/agent.key")
        let unitDirectories = UnitDetection.directories.map { path(options.root, $0) }
        let unit: String
        do { unit = try UnitDetection.detect(in: unitDirectories) } catch {
            throw .nodeName("cannot tell which k3s unit runs here: \(error.problem)")
        }
        config.unit = unit
        let unitFile = unitDirectories.map { "\($0)/\(unit).service" }.first(where: FileSystem.exists)
        config.k3sBinary = path(options.root, unitFile.flatMap(execStartBinary) ?? "/usr/local/bin/k3s")
        config.k3sDataDir = k3sConfig["data-dir"].map { path(options.root, $0) } ?? path(options.root, "/var/lib/rancher/k3s")
        config.systemctl = options.systemctl
        config.dataDir = path(options.root, "/var/lib/upkeep-agent")
        let isServer = unit == "k3s"
        // k3s's own credentials: the admin kubeconfig on servers, the kubelet's on agents
        // (a Node identity may patch its own Node's annotations: docs/enrollment.md).
        config.kubeconfig = isServer ? path(options.root, "/etc/rancher/k3s/k3s.yaml") : "\(config.k3sDataDir)/agent/kubelet.kubeconfig"
        let probeHost = options.probeHost.contains(":") ? "[\(options.probeHost)]" : options.probeHost
        config.probes.kubeletHealthzURL = "http://\(probeHost):10248/healthz"
        config.probes.supervisorPingURL = isServer ? "https://\(probeHost):6443/ping" : ""
        config.probes.supervisorCAFile = "\(config.k3sDataDir)/server/tls/server-ca.crt"
        // A unix socket path must fit sun_path (108 bytes); a longer one cannot exist.
        let containerd = path(options.root, "/run/k3s/containerd/containerd.sock")
        config.probes.containerdSocket = containerd.utf8.count < 100 ? containerd : ""
        config.etcd.endpoint = options.etcdEndpoint
        if let address = options.clusterDNS.flatMap(ConfigLoader.clusterDNSAddress) {
            (config.clusterDNSHost, config.clusterDNSPort) = address
        }
        return config
    }

    /// `agent.yaml` for `config`, in the schema `ConfigLoader` reads.
    public static func configText(_ config: AgentConfig) -> String {
        func quoted(_ text: String) -> String {
            "\"" + text.split(separator: "\\", omittingEmptySubsequences: false).joined(separator: "\\\\")
                .split(separator: "\"", omittingEmptySubsequences: false).joined(separator: "\\\"") + "\""
        }
        return """
            # Written by `upkeep-agent join` from what it found on this node (docs/enrollment.md).
            nodeName: \(config.nodeName)
            listen: {address: \(quoted(config.listenAddress)), port: \(config.listenPort)}
            tls: {ca: \(quoted(config.caFile)), certificate: \(quoted(config.certificateFile)), key: \(quoted(config.keyFile))}
            k3s: {binary: \(quoted(config.k3sBinary)), unit: \(config.unit ?? "k3s"), dataDir: \(quoted(config.k3sDataDir))}
            systemd: {systemctl: \(quoted(config.systemctl)), timeoutSeconds: \(config.systemctlTimeoutSeconds)}
            dataDir: \(quoted(config.dataDir))
            kubeconfig: \(quoted(config.kubeconfig ?? ""))
            probes:
              kubeletHealthz: \(quoted(config.probes.kubeletHealthzURL))
              supervisorPing: \(quoted(config.probes.supervisorPingURL))
              supervisorCA: \(quoted(config.probes.supervisorCAFile))
              containerdSocket: \(quoted(config.probes.containerdSocket))
            etcd: {endpoint: \(quoted(config.etcd.endpoint))}
            clusterDNS: \(quoted("\(config.clusterDNSHost):\(config.clusterDNSPort)"))
            logLevel: info

            """
    }

    /// Stages every file beside its target, then renames them into place; when a rename fails,
    /// the ones already renamed are removed again, so the node is left as it was (or, with
    /// --force, without the old enrollment's files).
    static func writeAllOrNone(_ files: [(path: String, bytes: [UInt8], mode: mode_t)]) throws(JoinError) {
        var staged: [(temporary: String, target: String)] = []
        var published: [String] = []
        do throws(FileSystemError) {
            for file in files {
                try FileSystem.makeDirectories(PathName.directory(file.path), mode: file.mode == 0o600 ? 0o700 : 0o755)
                let temporary = "\(PathName.directory(file.path))/.\(PathName.base(file.path)).joining"
                try FileSystem.writeAtomically(file.bytes, to: temporary, mode: file.mode)
                staged.append((temporary, file.path))
            }
            for file in staged {
                try FileSystem.publish(file.temporary, over: file.target)
                published.append(file.target)
            }
        } catch {
            for file in staged { unlink(file.temporary) }
            for path in published { unlink(path) }
            throw .write(path: error.path, reason: error.description)
        }
    }

    /// `systemctl enable --now upkeep-agent`, bounded.
    static func start(systemctl: String, timeoutSeconds: Double) async throws(JoinError) {
        let outcome: ProcessOutcome
        do {
            outcome = try await ProcessRunner.run(systemctl, ["enable", "--now", agentUnit], timeoutSeconds: timeoutSeconds)
        } catch {
            throw .start("\(systemctl) enable --now \(agentUnit): \(error)")
        }
        guard outcome.succeeded else {
            throw .start("\(systemctl) enable --now \(agentUnit) failed: \(outcome.summary); start it by hand once fixed")
        }
    }

    /// `root` + `path` ("/" leaves `path` as it is).
    static func path(_ root: String, _ path: String) -> String {
        root == "/" || root.isEmpty ? path : (root.hasSuffix("/") ? String(root.dropLast()) : root) + path
    }

    /// The top-level string settings of k3s's config file (`node-name`, `data-dir`, …); empty
    /// when it is missing or unreadable (k3s's defaults apply then).
    /// https://docs.k3s.io/installation/configuration#configuration-file
    static func readK3sConfig(_ file: String) -> [String: String] {
        guard let text = try? FileSystem.readText(file, bytesMax: 1 << 20), let document = try? YAMLReader.document(text),
              let entries = document.mapping else { return [:] }
        var values: [String: String] = [:]
        for entry in entries { if let key = entry.key.string, let value = entry.value.string { values[key] = value } }
        return values
    }

    /// The program of a unit file's `ExecStart=` (the k3s install script writes
    /// `ExecStart=/usr/local/bin/k3s \` then the arguments).
    static func execStartBinary(_ unitFile: String) -> String? {
        guard let text = try? FileSystem.readText(unitFile, bytesMax: 1 << 20) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("ExecStart=") {
            let command = line.dropFirst("ExecStart=".count).drop { $0 == "-" || $0 == "@" || $0 == " " }
            if let program = command.split(separator: " ").first, program.hasPrefix("/") { return String(program) }
        }
        return nil
    }

    static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count) == 0 else { return "" }
        let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return String(decoding: bytes, as: UTF8.self).lowercased()
    }
}
