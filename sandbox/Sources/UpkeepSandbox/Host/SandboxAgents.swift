import Foundation
import NIOCore
import NIOPosix
import UpkeepCore
import UpkeepPOSIX

/// The real `upkeep-agent run` of each sandbox node, configured like a production node but with
/// the node's own paths: its fake k3s binary, its systemctl stand-in, its data dir, its agent
/// certificate from `DIR/pki`, a kubeconfig for the simulated API, the fake k3s's probe
/// endpoints, listening at the node's address and `agentPort`. Its pid is in
/// `<node>/run/upkeep-agent.pid`, its log in `<node>/var/log/upkeep-agent.log`.
public enum SandboxAgents {
    /// The node annotation that tells the controller where the node's agent listens.
    public static let addressAnnotation = "upkeep.io/agent-address"
    /// Bound on an agent's start, until its port accepts connections.
    public static let listenTimeoutSeconds = 30.0

    /// `<node>/etc/upkeep/agent.yaml`.
    public static func config(for node: SandboxNode, pkiDirectory: String) -> String {
        func quoted(_ text: String) -> String { "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" }
        // A unix socket path longer than sun_path cannot exist; the fake k3s skips it, so does the probe.
        let containerd = node.containerdSocket.utf8.count < 100 ? node.containerdSocket : ""
        return """
            # Written by the upkeep sandbox for node \(node.name).
            nodeName: \(node.name)
            listen: {address: \(quoted(node.address)), port: \(node.agentPort)}
            tls: {ca: \(quoted("\(pkiDirectory)/ca.crt")), certificate: \(quoted("\(pkiDirectory)/agents/\(node.name).crt")), key: \(quoted("\(pkiDirectory)/agents/\(node.name).key"))}
            k3s: {binary: \(quoted(node.k3sBinary)), unit: \(node.unit), dataDir: \(quoted(node.dataDir))}
            systemd: {systemctl: \(quoted(node.systemctl)), timeoutSeconds: 120}
            dataDir: \(quoted(node.agentDataDir))
            kubeconfig: \(quoted(node.kubeconfig))
            probes:
              kubeletHealthz: \(quoted(node.kubeletHealthzURL))
              supervisorPing: \(quoted(node.isServer ? node.supervisorPingURL : ""))
              supervisorCA: \(quoted(node.serverCAFile))
              containerdSocket: \(quoted(containerd))
            etcd: {endpoint: \(quoted(node.datastoreURL))}
            \(node.clusterDNS.map { "clusterDNS: \(quoted($0))" } ?? "# clusterDNS: k3s's default")
            logLevel: info

            """
    }

    /// Writes the node's agent.yaml for its certificate in `pkiDirectory` and starts its agent (in
    /// the node's namespace in netns mode). `pkiDirectory` nil: the node enrolled
    /// (`SandboxEnrollment`), and its agent runs on the agent.yaml `upkeep-agent join` wrote.
    public static func start(_ node: SandboxNode, agentBinary: String, pkiDirectory: String?) throws -> pid_t {
        try FileManager.default.createDirectory(atPath: node.agentDataDir, withIntermediateDirectories: true)
        if let pkiDirectory {
            try JSONFiles.atomicWrite(Data(config(for: node, pkiDirectory: pkiDirectory).utf8), to: node.agentConfigFile)
        } else if !FileManager.default.fileExists(atPath: node.agentConfigFile) {
            throw SandboxError("\(node.name) has no \(node.agentConfigFile): it did not enroll (upkeep-agent join)")
        }
        var command = [agentBinary, "run", "--config", node.agentConfigFile]
        if let netns = node.netns { command = ["/usr/sbin/ip", "netns", "exec", netns] + command }
        let environment = PosixSpawn.inheritedEnvironment(applying: [FakeK3s.rootVariable: node.root, "NOTIFY_SOCKET": nil, "WATCHDOG_USEC": nil])
        let pid = try Spawn.detached(command, environment: environment, logFile: node.agentLogFile)
        try JSONFiles.atomicWrite(Data("\(pid)\n".utf8), to: node.agentPIDFile)
        return pid
    }

    /// The node's agent process, if it runs.
    public static func runningPID(_ node: SandboxNode) -> pid_t? {
        guard let text = try? String(contentsOfFile: node.agentPIDFile, encoding: .utf8),
              let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), Spawn.isAlive(pid)
        else { return nil }
        return pid
    }

    /// Stops the node's agent (SIGTERM, then SIGKILL; bounded) and removes its pid file.
    public static func stop(_ node: SandboxNode) {
        if let pid = runningPID(node) { Spawn.terminate(pid, graceSeconds: 10) }
        unlink(node.agentPIDFile)
    }

    /// Waits (bounded) until the agent `pid` accepts TCP connections at the node's agent address.
    public static func waitListening(_ node: SandboxNode, pid: pid_t, timeoutSeconds: Double = listenTimeoutSeconds) async throws {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while Date() < deadline {
            guard Spawn.isAlive(pid) else {
                throw SandboxError("the upkeep-agent of \(node.name) exited at start; see \(node.agentLogFile):\n\(tail(node.agentLogFile))")
            }
            if let channel = try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(1)).connect(host: node.address, port: node.agentPort).get()
            {
                try? await channel.close()
                return
            }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        throw SandboxError("the upkeep-agent of \(node.name) did not listen on \(node.agentAddress) within \(Int(timeoutSeconds)) s; see \(node.agentLogFile)")
    }

    static func tail(_ file: String, lines: Int = 10) -> String {
        ((try? String(contentsOfFile: file, encoding: .utf8)) ?? "").split(separator: "\n").suffix(lines).joined(separator: "\n")
    }
}
