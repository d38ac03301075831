import UpkeepYAML
import Testing
import UpkeepAgent
import UpkeepHTTP
import UpkeepProtocol
import UpkeepTestSupport

@Suite struct ConfigLoaderTests {
    @Test func minimalConfigTakesTheStandardK3sDefaults() throws {
        let config = try ConfigLoader.parse("nodeName: node-1\n")
        #expect(config.nodeName == "node-1")
        #expect(config.k3sBinary == "/usr/local/bin/k3s")
        #expect(config.dataDir == "/var/lib/upkeep-agent")
        #expect(config.listenPort == AgentConfig.defaultPort)
        #expect(config.server.connectionsMax == 1024 && config.server.handshakesMax == 64 && config.server.handshakesPerSourceMax == 8
                 && config.server.handshakeTimeout == .seconds(5))
        #expect(config.probes.kubeletHealthzURL == "http://127.0.0.1:10248/healthz")
        #expect(config.unit == nil)
        #expect(config.resolvedKubeconfig(isServer: true) == "/etc/rancher/k3s/k3s.yaml")
    }

    @Test func everyFieldIsRead() throws {
        let yaml = """
        nodeName: worker-3.example
        listen: {address: 127.0.0.2, port: 9999, connectionsMax: 256, handshakesMax: 32, handshakesPerSourceMax: 4, handshakeTimeoutSeconds: 3}
        tls: {ca: /x/ca.crt, certificate: /x/a.crt, key: /x/a.key}
        k3s: {binary: /opt/bin/k3s, unit: k3s-agent, dataDir: /d/k3s, versionTimeoutSeconds: 5}
        systemd: {systemctl: /bin/systemctl, timeoutSeconds: 30}
        dataDir: /d/agent
        kubeconfig: /etc/upkeep/kubeconfig
        probes: {kubeletHealthz: "", supervisorPing: "https://10.0.0.1:6443/ping", supervisorCA: /ca.pem, containerdSocket: "", nodeReady: false, timeoutMs: 500, intervalMs: 250, gateIntervalMs: 12}
        logLevel: debug
        """
        let config = try ConfigLoader.parse(yaml)
        #expect(config.listenAddress == "127.0.0.2" && config.listenPort == 9999)
        #expect(config.server.connectionsMax == 256 && config.server.handshakesMax == 32 && config.server.handshakesPerSourceMax == 4
                 && config.server.handshakeTimeout == .seconds(3))
        #expect(config.keyFile == "/x/a.key" && config.k3sBinary == "/opt/bin/k3s" && config.unit == "k3s-agent")
        #expect(config.systemctlTimeoutSeconds == 30 && config.versionTimeoutSeconds == 5)
        #expect(config.probes.kubeletHealthzURL.isEmpty && !config.probes.nodeReady && config.probes.intervalMs == 250 && config.probes.gateIntervalMs == 12)
        #expect(config.logLevel == .debug)
        #expect(try config.resolvedUnit(unitDirectories: []) == "k3s-agent")
    }

    @Test(arguments: [
        ("listen:\n  port: 70000\n", "3: listen.port: must be in 1...65535; is 70000"),
        ("listen:\n  port: many\n", "3: listen.port: must be a whole number"),
        ("listen:\n  connectionsMax: 0\n", "3: listen.connectionsMax: must be in 1...3000; is 0"),
        ("listen:\n  handshakesMax: 1000\n", "3: listen.handshakesMax: must be in 1...512; is 1000"),
        ("listen:\n  handshakesMax: 4\n  handshakesPerSourceMax: 8\n", "4: listen.handshakesPerSourceMax: must be at most handshakesMax (4); is 8"),
        ("listen:\n  handshakeTimeoutSeconds: 5s\n", "3: listen.handshakeTimeoutSeconds: must be a whole number in 1...60"),
        ("listen:\n  handshakeTimeout: 5\n", "3: listen.handshakeTimeout: is not a known field"),
        ("k3s:\n  binary: usr/local/bin/k3s\n", "3: k3s.binary: must be an absolute path"),
        ("k3s:\n  unit: rke2\n", "3: k3s.unit: must be k3s (servers) or k3s-agent (agents)"),
        ("probes:\n  timout: 5\n", "3: probes.timout: is not a known field"),
        ("probes:\n  kubeletHealthz: ftp://x/healthz\n", "3: probes.kubeletHealthz: must be a http:// URL"),
        ("probes:\n  nodeReady: maybe\n", "3: probes.nodeReady: must be true or false"),
        ("logLevel: loud\n", "2: logLevel: must be one of trace, debug"),
        ("tls: /etc\n", "2: tls: must be a mapping of fields"),
    ])
    func errorsNameTheFileLineAndField(yaml: String, expected: String) throws {
        let error = try #require(throws: ConfigError.self) { try ConfigLoader.parse("nodeName: n1\n" + yaml, file: "/etc/upkeep/agent.yaml") }
        #expect(error.description.hasPrefix("/etc/upkeep/agent.yaml:"))
        #expect(error.description.contains(expected), "\(error)")
    }

    /// Booleans are YAML 1.1's plain spellings; a quoted one is a string and refused.
    /// A listen address that is neither an IP address nor a host name is a configuration error
    /// with file and line, not SwiftNIO's SocketAddressError at bind; the file's bytes are shown
    /// escaped. Through the real binary, as an operator meets it.
    @Test func aBadListenAddressNamesTheFileAndLine() throws {
        for address in ["::1::2", "10.0.0.300:9660", "no_such host"] {
            #expect(throws: ConfigError.self) { try ConfigLoader.parse("nodeName: n1\nlisten: {address: \"\(address)\"}\n") }
        }
        for address in ["0.0.0.0", "::", "fd00::1", "localhost", "node-1.lan"] {
            #expect(try ConfigLoader.parse("nodeName: n1\nlisten:\n  address: \"\(address)\"\n").listenAddress == address)
        }
        let directory = try TemporaryDirectory()
        let config = try directory.write("nodeName: n1\nlisten:\n  port: 9660\n  address: \"10.0.0.300\\e[31m\"\n", to: "agent.yaml")
        let result = try AgentBinary.run(["probe", "--config", config])
        #expect(result.status != 0)
        #expect(result.error.contains("\(config):4: listen.address: must be an IP address to listen on"), "\(result.error)")
        #expect(result.error.contains("\\u{1B}[31m") && !result.error.contains("\u{1B}"), "\(result.error)")
    }

    @Test func theClusterDNSAddressIsK3sDefaultOrAnIPv4WithAPort() throws {
        let plain = try ConfigLoader.parse("nodeName: n1\n")
        #expect(plain.clusterDNSHost == "10.43.0.10" && plain.clusterDNSPort == 53)
        let sandbox = try ConfigLoader.parse("nodeName: n1\nclusterDNS: \"127.0.0.53:5353\"\n")
        #expect(sandbox.clusterDNSHost == "127.0.0.53" && sandbox.clusterDNSPort == 5353)
        #expect(try ConfigLoader.parse("nodeName: n1\nclusterDNS: 10.96.0.10\n").clusterDNSPort == 53)
        for bad in ["10.43.0", "10.43.0.10:0", "10.43.0.10:x", "dns.local", "10.43.0.10:53:1"] {
            #expect(throws: ConfigError.self, "\(bad)") { try ConfigLoader.parse("nodeName: n1\nclusterDNS: \"\(bad)\"\n") }
        }
    }

    @Test func booleansAreThePlainYAMLSpellings() throws {
        for (text, value) in [("false", false), ("no", false), ("Off", false), ("TRUE", true), ("yes", true), ("On", true)] {
            let config = try ConfigLoader.parse("nodeName: n1\nprobes: {nodeReady: \(text)}\n")
            #expect(config.probes.nodeReady == value, "\(text)")
        }
        for text in ["\"false\"", "'no'", "fAlse", "0", "n"] {
            let error = try #require(throws: ConfigError.self) { try ConfigLoader.parse("nodeName: n1\nprobes: {nodeReady: \(text)}\n") }
            #expect(error.description.contains("probes.nodeReady: must be true or false"), "\(text): \(error)")
        }
    }

    @Test func missingOrBadNodeNameAndBrokenYAMLAreReported() throws {
        #expect(throws: ConfigError.self) { try ConfigLoader.parse("k3s: {}\n") }
        let bad = try #require(throws: ConfigError.self) { try ConfigLoader.parse("nodeName: Node_1\n") }
        #expect(bad.field == "nodeName" && bad.problem.contains("DNS-1123"))
        let broken = try #require(throws: ConfigError.self) { try ConfigLoader.parse("nodeName: [unclosed\n") }
        #expect(broken.field == "(yaml)")
        let missing = try #require(throws: ConfigError.self) { try ConfigLoader.load(path: "/nonexistent/agent.yaml") }
        #expect(missing.description.contains("--config"))
    }

    @Test func unitIsDetectedFromTheUnitFiles() throws {
        let directory = try TemporaryDirectory()
        let config = AgentConfig(nodeName: "n1")
        let none = try #require(throws: ConfigError.self) { try config.resolvedUnit(unitDirectories: [directory.path]) }
        #expect(none.field == "k3s.unit" && none.problem.contains("set k3s.unit"))
        _ = try directory.write("[Unit]\n", to: "k3s-agent.service")
        #expect(try config.resolvedUnit(unitDirectories: [directory.path]) == "k3s-agent")
        _ = try directory.write("[Unit]\n", to: "k3s.service")
        #expect(throws: ConfigError.self) { try config.resolvedUnit(unitDirectories: [directory.path]) }
    }
}

/// Probe endpoints as the configuration gives them, read by the one URL parser (`HTTPURL`).
@Suite struct ProbeURLTests {
    @Test func readsSchemeHostPortAndPath() throws {
        let kubelet = try HTTPURL("http://127.0.0.1:10248/healthz")
        #expect([kubelet.scheme.rawValue, kubelet.host, kubelet.path] == ["http", "127.0.0.1", "/healthz"] && kubelet.port == 10248)
        let supervisor = try HTTPURL("https://[::1]/ping")
        #expect([supervisor.scheme.rawValue, supervisor.host, supervisor.path] == ["https", "::1", "/ping"] && supervisor.port == 443)
        #expect(supervisor.origin.description == "https://[::1]:443")
        #expect(try HTTPURL("http://node").path == "/")
        #expect(try HTTPURL("http://node").port == 80)
        // Schemes are case-insensitive (RFC 3986, section 3.1).
        #expect(try HTTPURL("HTTP://node/x").scheme == .http)
    }

    @Test(arguments: ["", "http://", "https://", "ftp://node/x", "http:/node/x", "node:80/x",
                      "http://:80/x", "http://node:0/x", "http://node:65536/x", "http://node:port/x", "http://[::1]x/y"])
    func refusesWhatIsNotAnHTTPURL(_ text: String) {
        #expect(throws: HTTPClientError.self, "\(text)") { try HTTPURL(text) }
    }
}
