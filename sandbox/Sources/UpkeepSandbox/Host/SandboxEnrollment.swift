import Foundation
import UpkeepProcess

/// `upkeep sandbox up --join`: the sandbox's nodes enroll as real nodes do (docs/enrollment.md),
/// so the sandbox's `pki/` holds the CA and the controller identity but no agent key.
///
/// In order: the sandbox's `upkeep join-server` starts (DIR/join-server.log, its pid in
/// DIR/join-server.pid; it runs until the sandbox stops, so more joins can be tried by hand),
/// `upkeep token create` makes one token for every node, then each node runs
/// `upkeep-agent join --root <node> --no-start`, which makes the node's key under the node's
/// root and writes its `agent.yaml`; the sandbox then starts the agents from those files.
/// Every step is a real process with a time limit, and a failure says which node and shows
/// the program's output.
public enum SandboxEnrollment {
    /// Bounds: the join server's start (until it prints its address), `token create`, one join.
    public static let serverStartSeconds = 30.0
    public static let tokenSeconds = 30.0
    public static let joinSeconds = 60.0
    /// The token lives long enough for every node and for a few joins by hand afterwards.
    public static let tokenTTL = "1h"

    public static func pidFile(_ directory: String) -> String { "\(directory)/join-server.pid" }
    public static func logFile(_ directory: String) -> String { "\(directory)/join-server.log" }

    /// Starts the join server on `host` (an ephemeral port), makes a token and joins every node;
    /// returns the join server's HOST:PORT.
    public static func enroll(directory: String, nodes: [SandboxNode], host: String, controllerBinary: String,
                              agentBinary: String) async throws -> String
    {
        let config = "\(directory)/upkeep.yaml"
        let address = try await startServer(directory: directory, host: host, controllerBinary: controllerBinary, config: config)
        let created = try await ProcessRun.run(controllerBinary, ["token", "create", "--config", config, "--uses", "\(max(nodes.count, 1))",
                                                                  "--ttl", tokenTTL, "--controller", address], timeoutSeconds: tokenSeconds)
        let words = created.output.split(whereSeparator: \.isWhitespace).map(String.init)
        guard created.status == 0, let token = words.firstIndex(of: "--token").map({ words[$0 + 1] }),
              let caHash = words.firstIndex(of: "--ca-hash").map({ words[$0 + 1] })
        else {
            throw SandboxError("upkeep token create failed (exit \(created.status)\(created.timedOut ? ", timed out" : "")): \(created.output)")
        }
        for node in nodes {
            // --force: a node of an earlier `up` in this directory holds that enrollment's files,
            // and the state database remembers it; the sandbox enrolls it anew.
            var command = [agentBinary, "join", "--controller", address, "--token", token, "--ca-hash", caHash, "--root", node.root,
                           "--listen", node.agentAddress, "--systemctl", node.systemctl, "--probe-host", node.address, "--etcd-endpoint", node.datastoreURL,
                           "--no-start", "--force"] + (node.clusterDNS.map { ["--cluster-dns", $0] } ?? [])
            if let netns = node.netns { command = ["/usr/sbin/ip", "netns", "exec", netns] + command }
            let joined = try await ProcessRun.run(command[0], Array(command.dropFirst()), timeoutSeconds: joinSeconds)
            guard joined.status == 0 else {
                throw SandboxError("upkeep-agent join on \(node.name) failed (exit \(joined.status)\(joined.timedOut ? ", timed out" : "")): \(joined.output)")
            }
        }
        return address
    }

    /// Starts `upkeep join-server --listen HOST:0` detached and waits (bounded) for the line
    /// that says where it listens.
    static func startServer(directory: String, host: String, controllerBinary: String, config: String) async throws -> String {
        stopServer(directory: directory)
        let log = logFile(directory)
        unlink(log)
        let listen = host.contains(":") ? "[\(host)]:0" : "\(host):0"
        let pid = try Spawn.detached([controllerBinary, "join-server", "--config", config, "--listen", listen],
                                     environment: ProcessInfo.processInfo.environment, logFile: log)
        try JSONFiles.atomicWrite(Data("\(pid)\n".utf8), to: pidFile(directory))
        let marker = "join server listening on "
        let deadline = Date().addingTimeInterval(serverStartSeconds)
        while Date() < deadline {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            if let range = text.range(of: marker), let address = text[range.upperBound...].split(separator: ",").first {
                return String(address)
            }
            guard Spawn.isAlive(pid) else { break }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        stopServer(directory: directory)
        throw SandboxError("upkeep join-server did not start within \(Int(serverStartSeconds)) s: "
            + ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "no output"))
    }

    /// The join server's pid, if it runs.
    public static func serverPID(_ directory: String) -> pid_t? {
        guard let text = try? String(contentsOfFile: pidFile(directory), encoding: .utf8),
              let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), Spawn.isAlive(pid)
        else { return nil }
        return pid
    }

    /// Stops the join server (SIGTERM, then SIGKILL; bounded); true when one ran.
    @discardableResult
    public static func stopServer(directory: String) -> Bool {
        defer { unlink(pidFile(directory)) }
        guard let pid = serverPID(directory) else { return false }
        Spawn.terminate(pid, graceSeconds: 10)
        return true
    }
}
