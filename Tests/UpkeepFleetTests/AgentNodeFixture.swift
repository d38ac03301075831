import Foundation
import NIOPosix
import UpkeepAgent
import UpkeepFleet
import UpkeepPKI
import UpkeepProtocol
import UpkeepTestSupport
import UpkeepTLS

#if canImport(Glibc)
import Glibc
#endif

let v1 = "v1.30.6+k3s1"
let v2 = "v1.31.2+k3s1"

/// A cluster CA with the controller's identity, and agent identities on demand.
struct FleetPKI {
    let directory: PKIDirectory

    init(in path: String) throws {
        directory = PKIDirectory(path: path)
        _ = try directory.initialize(validity: PKIDirectory.validity(days: 2))
        _ = try directory.issue(try PeerIdentity(role: .controller, name: "controller"), validity: PKIDirectory.validity(days: 1))
    }

    func agent(_ node: String) throws -> IssuedIdentity {
        try directory.issue(try PeerIdentity(role: .agent, name: node), validity: PKIDirectory.validity(days: 1))
    }

    /// A new identity for `node`'s agent, as the TLS context its protocol server serves with.
    func agentContext(_ node: String) throws -> TLSContext {
        let identity = try agent(node)
        return try TLSContext.internal(ca: try Certificate.loadChain(pemFile: directory.caCertificatePath),
                                       chain: try Certificate.loadChain(pemFile: identity.certificatePath),
                                       key: try PrivateKey(pemFile: identity.keyPath))
    }

    func controllerSecurity() throws -> FleetSecurity {
        try FleetSecurity.load(caFile: directory.caCertificatePath, certificateFile: "\(directory.path)/controllers/controller.crt",
                               keyFile: "\(directory.path)/controllers/controller.key")
    }
}

/// A real upkeep-agent (its service and protocol server, in process) on a k3s node made of real
/// processes in a temporary directory: the agent tests' fake node (`Tests/UpkeepAgentTests/FakeNode`:
/// a shell "k3s binary" per version whose `server` runs a small Python health endpoint, and a
/// `systemctl` stand-in that restarts whatever binary is live).
final class AgentNodeFixture: @unchecked Sendable {
    let directory: TemporaryDirectory
    let name: String
    let healthPort: Int
    var root: String { directory.path }
    private(set) var service: AgentService?
    private(set) var port = 0

    init(name: String, liveVersion: String) throws {
        directory = try TemporaryDirectory()
        self.name = name
        healthPort = try unusedLoopbackPort()
        for sub in ["bin", "faults", "units", "data", "k3s"] {
            try FileManager.default.createDirectory(atPath: "\(root)/\(sub)", withIntermediateDirectories: true)
        }
        try Self.template("fake-node.py", root: root, version: "").write(toFile: "\(root)/fake-node.py", atomically: false, encoding: .utf8)
        try "0.2".write(toFile: "\(root)/healthy-after", atomically: false, encoding: .utf8)
        try "\(healthPort)".write(toFile: "\(root)/port", atomically: false, encoding: .utf8)
        try Self.template("systemctl.sh", root: root, version: "").write(toFile: "\(root)/systemctl", atomically: false, encoding: .utf8)
        chmod("\(root)/systemctl", 0o755)
        try "[Unit]\n".write(toFile: "\(root)/units/k3s-agent.service", atomically: false, encoding: .utf8)
        try binaryScript(liveVersion).write(toFile: "\(root)/bin/k3s", atomically: false, encoding: .utf8)
        chmod("\(root)/bin/k3s", 0o755)
    }

    deinit { stopK3s() }

    /// The fake k3s binary of `version` for this node, padded to a few hundred KiB.
    func binaryScript(_ version: String) throws -> String {
        let line = "# " + String(repeating: "k", count: 126) + "\n"
        return try Self.template("k3s.sh", root: root, version: version) + String(repeating: line, count: 3000)
    }

    /// Writes this node's binary of `version` as a release into a mirror directory laid out like
    /// GitHub's downloads, with its `sha256sum-amd64.txt`; `corrupt` makes the served binary differ.
    func publish(_ version: String, into mirror: String, corrupt: Bool = false) throws {
        let directory = "\(mirror)/k3s-io/k3s/releases/download/\(version)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let script = try binaryScript(version)
        try script.write(toFile: "\(directory)/k3s", atomically: false, encoding: .utf8)
        let digest = try runProcess("sha256sum", ["\(directory)/k3s"]).output.prefix(64)
        if corrupt { try (script + "# tampered\n").write(toFile: "\(directory)/k3s", atomically: false, encoding: .utf8) }
        try "\(String(repeating: "0", count: 64))  k3s-airgap-images-amd64.tar.gz\n\(digest)  k3s\n"
            .write(toFile: "\(directory)/sha256sum-amd64.txt", atomically: false, encoding: .utf8)
    }

    /// Starts k3s, then the agent with `identity`'s certificate and the cluster CA, serving
    /// mutual TLS on a loopback port.
    func start(pki: FleetPKI, identity: IssuedIdentity, kubeconfig: String?) async throws {
        let result = try runProcess("\(root)/systemctl", ["restart", "k3s"], timeoutSeconds: 20)
        precondition(result.status == 0, "fake systemctl restart failed: \(result.error)")
        var config = AgentConfig(nodeName: name)
        config.k3sBinary = "\(root)/bin/k3s"
        // An agent node, as its name says: its watchdog and rollback go back across a minor (a
        // server's would not: docs/agent.md, "Operations").
        config.unit = "k3s-agent"
        config.systemctl = "\(root)/systemctl"
        config.systemctlTimeoutSeconds = 20
        config.dataDir = "\(root)/data"
        config.probes.kubeletHealthzURL = "http://127.0.0.1:\(healthPort)/healthz"
        config.probes.supervisorPingURL = ""
        config.probes.containerdSocket = "\(root)/containerd.sock"
        config.probes.nodeReady = false
        config.probes.timeoutMs = 1000
        config.probes.intervalMs = 50
        config.k3sDataDir = "\(root)/k3s"
        config.caFile = pki.directory.caCertificatePath
        config.certificateFile = identity.certificatePath
        config.keyFile = identity.keyPath
        config.listenAddress = "127.0.0.1"
        config.listenPort = 0
        if let kubeconfig { config.kubeconfig = kubeconfig }
        self.config = config
        try await startAgent()
    }

    private var config: AgentConfig?

    /// Starts the agent's service (which reads its journal) and its server on a new port.
    private func startAgent() async throws {
        guard let config else { preconditionFailure("start(pki:identity:kubeconfig:) first") }
        let logger = AgentBootstrap.logger(level: .critical)
        let environment = try AgentBootstrap.environment(config: config, group: MultiThreadedEventLoopGroup.singleton, logger: logger)
        let service = try await AgentService.start(environment)
        self.service = service
        let server = try await AgentServer.start(service: service, group: MultiThreadedEventLoopGroup.singleton, logger: logger)
        port = server.port
        servers.append(server)
    }

    private var servers: [ProtocolServer] = []

    /// Stops the agent and starts it again on the same data directory, as systemd would after
    /// a crash; k3s keeps running. With `samePort` it listens where it did, else on a new port.
    func restartAgent(samePort: Bool = false) async throws {
        await stopAgent()
        if samePort { config?.listenPort = port }
        try await startAgent()
    }

    private func stopAgent() async {
        for server in servers { await server.shutdown() }
        servers = []
        await service?.close()
        service = nil
    }

    func shutdown() async {
        await stopAgent()
        stopK3s()
    }

    var restarts: Int {
        ((try? String(contentsOfFile: "\(root)/restarts.log", encoding: .utf8)) ?? "").split(separator: "\n").count
    }

    func stopK3s() {
        guard let text = try? String(contentsOfFile: "\(root)/pid", encoding: .utf8),
              let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) else { return }
        kill(pid, SIGTERM)
        for _ in 0..<100 where kill(pid, 0) == 0 { usleep(20_000) }
        kill(pid, SIGKILL)
        unlink("\(root)/pid")
    }

    static func template(_ name: String, root: String, version: String) throws -> String {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("UpkeepAgentTests/FakeNode")
        return try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)
            .replacingOccurrences(of: "@ROOT@", with: root).replacingOccurrences(of: "@VERSION@", with: version)
    }
}
