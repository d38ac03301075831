import Foundation
import UpkeepAgent
import UpkeepSandbox
import UpkeepTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// A k3s node made of real processes in a temporary directory, until the sandbox's fake k3s is
/// available: a "k3s binary" per version (a shell script carrying its version, padded so copies
/// take real time) whose `server` runs a small Python HTTP server answering the kubelet
/// `/healthz` and holding a containerd socket, and a `systemctl` stand-in that restarts
/// whatever binary is live, as systemd does.
///
/// Faults per version in `faults/<version>`: `never` (never healthy), `exit` (exits at start),
/// `sick` (answers 503 from now on, also while running).
final class FakeK3sNode {
    let directory: TemporaryDirectory
    let port: Int
    var root: String { directory.path }
    var livePath: String { "\(root)/bin/k3s" }
    var systemctl: String { "\(root)/systemctl" }
    var dataDir: String { "\(root)/data" }
    var unitDir: String { "\(root)/units" }

    init(liveVersion: String, healthyAfterSeconds: Double = 0.2) throws {
        directory = try TemporaryDirectory()
        port = try Self.freePort()
        for sub in ["bin", "artifacts", "faults", "units"] {
            try FileManager.default.createDirectory(atPath: "\(directory.path)/\(sub)", withIntermediateDirectories: true)
        }
        try Self.template("fake-node.py", root: root, version: "").write(toFile: "\(root)/fake-node.py", atomically: false, encoding: .utf8)
        try "\(healthyAfterSeconds)".write(toFile: "\(root)/healthy-after", atomically: false, encoding: .utf8)
        try "\(port)".write(toFile: "\(root)/port", atomically: false, encoding: .utf8)
        try Self.template("systemctl.sh", root: root, version: "").write(toFile: systemctl, atomically: false, encoding: .utf8)
        chmod(systemctl, 0o755)
        try "[Unit]\n".write(toFile: "\(unitDir)/k3s.service", atomically: false, encoding: .utf8)
        let live = try binary(liveVersion)
        try FileManager.default.copyItem(atPath: live.path, toPath: livePath)
        chmod(livePath, 0o755)
    }

    deinit { stopK3s() }

    /// Writes the fake binary for `version` into `artifacts/` and returns its path and digest.
    @discardableResult
    func binary(_ version: String, padBytes: Int = 4 << 20) throws -> (path: String, sha256: String, bytes: Int64) {
        let path = "\(root)/artifacts/k3s-\(version)"
        var text = try Self.template("k3s.sh", root: root, version: version)
        // Padding after `exit` makes the file big enough that copying it takes measurable time.
        let line = "# " + String(repeating: "k", count: 126) + "\n"
        text += String(repeating: line, count: padBytes / line.utf8.count)
        try text.write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, 0o755)
        let bytes = Int64(text.utf8.count)
        return (path, try FileSystem.sha256(ofFile: path), bytes)
    }

    func setFault(_ version: String, _ fault: String?) throws {
        let path = "\(root)/faults/\(version)"
        if let fault { try fault.write(toFile: path, atomically: false, encoding: .utf8) } else { unlink(path) }
    }

    func setRestartFails(_ fails: Bool) throws {
        if fails { try "1".write(toFile: "\(root)/restart-fails", atomically: false, encoding: .utf8) } else { unlink("\(root)/restart-fails") }
    }

    /// Starts the live binary as the unit (what systemd did before the agent came).
    func startK3s() async throws {
        let result = try await ProcessRunner.run(systemctl, ["restart", "k3s"], timeoutSeconds: 10)
        precondition(result.succeeded, "fake systemctl restart failed: \(result.error)")
    }

    /// The version of the running k3s process (once it has started up), or nil when none runs.
    var runningVersion: String? {
        guard let pid = pid, Self.isRunning(pid),
              let text = try? String(contentsOfFile: "\(root)/running-version", encoding: .utf8) else { return nil }
        let words = text.split(separator: " ")
        guard words.count == 2, Int32(words[0]) == pid else { return nil }
        return String(words[1])
    }

    var pid: Int32? {
        (try? String(contentsOfFile: "\(root)/pid", encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// How many restarts the systemctl stand-in performed.
    var restarts: Int {
        ((try? String(contentsOfFile: "\(root)/restarts.log", encoding: .utf8)) ?? "").split(separator: "\n").count
    }

    /// Stops the fake k3s synchronously (also from deinit): SIGTERM, then SIGKILL.
    func stopK3s() {
        guard let pid else { return }
        kill(pid, SIGTERM)
        for _ in 0..<100 where Self.isRunning(pid) { usleep(20_000) }
        kill(pid, SIGKILL)
        unlink("\(root)/pid")
    }

    /// A configuration for an agent on this node.
    func config(nodeName: String = "node-1", intervalMs: Int = 50) -> AgentConfig {
        var config = AgentConfig(nodeName: nodeName)
        config.k3sBinary = livePath
        config.unit = "k3s"
        config.systemctl = systemctl
        config.systemctlTimeoutSeconds = 20
        config.dataDir = dataDir
        config.probes.kubeletHealthzURL = "http://127.0.0.1:\(port)/healthz"
        config.probes.supervisorPingURL = ""
        config.probes.containerdSocket = "\(root)/containerd.sock"
        config.probes.nodeReady = false
        config.probes.timeoutMs = 1000
        config.probes.intervalMs = intervalMs
        config.k3sDataDir = "\(root)/k3s"
        return config
    }

    func configYAML(nodeName: String = "node-1", intervalMs: Int = 50) -> String {
        """
        nodeName: \(nodeName)
        k3s:
          binary: \(livePath)
          unit: k3s
          dataDir: \(root)/k3s
        systemd:
          systemctl: \(systemctl)
          timeoutSeconds: 20
        dataDir: \(dataDir)
        probes:
          kubeletHealthz: http://127.0.0.1:\(port)/healthz
          supervisorPing: ""
          containerdSocket: \(root)/containerd.sock
          nodeReady: false
          timeoutMs: 1000
          intervalMs: \(intervalMs)
        logLevel: warning

        """
    }

    /// Alive and not a zombie (nothing reaps the detached fake k3s).
    static func isRunning(_ pid: Int32) -> Bool { Spawn.isAlive(pid) }

    /// The scripts in `FakeNode/` (shared with the bench scripts), with `@ROOT@` and `@VERSION@` filled in.
    static func template(_ name: String, root: String, version: String) throws -> String {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("FakeNode")
        return try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)
            .replacingOccurrences(of: "@ROOT@", with: root).replacingOccurrences(of: "@VERSION@", with: version)
    }

    static func freePort() throws -> Int {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                bind(descriptor, socketAddress, length) == 0 && getsockname(descriptor, socketAddress, &length) == 0
            }
        }
        guard bound else { throw CocoaError(.fileWriteUnknown) }
        return Int(UInt16(bigEndian: address.sin_port))
    }


}
