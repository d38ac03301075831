import Foundation
import UpkeepCore
import UpkeepPOSIX
import UpkeepProcess

/// The embedded etcd of a sandbox server: Debian's etcd 3.4 run by the fake k3s as its child,
/// where k3s runs etcd inside its own process. Its member lives where k3s keeps it
/// (`<node>/var/lib/rancher/k3s/server/db/etcd`, the member name in `db/etcd/name`), listens for
/// clients on `<address>:2379` and for peers on `<address>:2380`, and dies with the fake k3s: it
/// reads a pipe the fake k3s holds (its "lifeline") and is terminated when that pipe closes,
/// however the fake k3s ended, and it is in the fake k3s's process group, which the unit's
/// supervisor signals on stop.
///
/// How a server's etcd starts (https://docs.k3s.io/datastore/ha-embedded,
/// https://docs.k3s.io/datastore/backup-restore):
/// - `db/etcd/member` exists: it restarts from its data (etcd ignores the initial cluster then).
/// - a fresh sandbox: `sandbox up` left `db/etcd/sandbox-bootstrap.json` naming every server's
///   member; they form one new cluster together (`--initial-cluster-state new`).
/// - otherwise (`server/db` was deleted, as k3s's restore asks of every server but one): it joins
///   the running cluster through a live member, as k3s does: members named after this node from
///   an earlier life are removed, itself added, then etcd started with `--initial-cluster-state
///   existing` (https://etcd.io/docs/v3.4/op-guide/runtime-configuration/).
/// A member whose data belongs to another cluster (one restored from a snapshot has a new
/// cluster ID) is refused by the others, as etcd refuses it.
struct EtcdMember {
    let node: SandboxNode

    static let clientPort = 2379
    static let peerPort = 2380

    var directory: String { "\(node.dataDir)/server/db/etcd" }
    var memberDirectory: String { "\(directory)/member" }
    var nameFile: String { "\(directory)/name" }
    var bootstrapFile: String { "\(directory)/sandbox-bootstrap.json" }
    var clientURL: String { node.datastoreURL }
    var peerURL: String { "http://\(node.address):\(Self.peerPort)" }
    var logFile: String { node.etcdLogFile }
    var pidFile: String { node.etcdPIDFile }

    /// Every server's client URL: where a joining member finds the cluster, and where the API
    /// (and etcdctl) reach it.
    static func clientURLs(of addresses: [String]) -> [String] { addresses.map { "http://\($0):\(clientPort)" } }

    /// What `sandbox up` writes on each server of a fresh sandbox: one new cluster of them all.
    struct Bootstrap: Codable, Equatable {
        var token: String
        /// `name` → peer URL of every member.
        var members: [String: String]

        var initialCluster: String { members.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",") }
    }

    enum Start: Equatable {
        case restart
        case bootstrap(Bootstrap)
        case join
    }

    /// How this member starts, from what is on disk.
    static func start(memberExists: Bool, bootstrap: Bootstrap?) -> Start {
        if memberExists { return .restart }
        if let bootstrap { return .bootstrap(bootstrap) }
        return .join
    }

    var startMode: Start {
        Self.start(memberExists: FileManager.default.fileExists(atPath: memberDirectory),
                   bootstrap: try? JSONFiles.read(Bootstrap.self, from: bootstrapFile))
    }

    /// A new member name for this node, as k3s makes them: the node name and 8 random hex digits.
    func newName() -> String {
        "\(node.name)-\(String(format: "%08x", UInt32.random(in: 0...UInt32.max)))"
    }

    /// The member name recorded in `db/etcd/name`, or a new one recorded there.
    func name() throws -> String {
        if let text = try? String(contentsOfFile: nameFile, encoding: .utf8) {
            let name = text.trimmingCharacters(in: .whitespacesAndNewlines)
            if !name.isEmpty { return name }
        }
        let name = newName()
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try JSONFiles.atomicWrite(Data((name + "\n").utf8), to: nameFile, mode: 0o600)
        return name
    }

    /// etcd's command line. The heartbeat and election timeouts are etcd's defaults (k3s uses
    /// 500 ms and 5 s); `--max-txn-ops` and `--max-request-bytes` are raised because the
    /// sandbox's API writes all the objects one model step changed in one transaction, where
    /// the apiserver writes one object per transaction; compaction every 5 minutes, as the
    /// apiserver's `--etcd-compaction-interval` default does.
    func arguments(name: String, initialCluster: String, state: String, token: String?, forceNewCluster: Bool = false) -> [String] {
        var arguments = [
            "--name", name, "--data-dir", directory,
            "--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
            "--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
            "--initial-cluster", initialCluster, "--initial-cluster-state", state,
            "--max-txn-ops", "100000", "--max-request-bytes", String(16 << 20),
            "--auto-compaction-mode", "periodic", "--auto-compaction-retention", "5m",
            "--logger", "zap", "--log-outputs", "stderr",
        ]
        if let token { arguments += ["--initial-cluster-token", token] }
        if forceNewCluster { arguments.append("--force-new-cluster") }
        return arguments
    }

    /// Runs `etcd arguments` as a child that dies with this process: its stdin is the read end of
    /// a pipe whose write end (returned; keep it open) only this process holds, and a small
    /// watcher beside it terminates etcd when the pipe closes. etcd's output goes to
    /// `<node>/var/log/etcd.log`.
    func spawn(_ arguments: [String]) throws -> (pid: pid_t, lifeline: Int32) {
        guard let etcd = ProcessRun.locate("etcd") else {
            throw SandboxError("etcd is not installed; the sandbox's servers run Debian's etcd 3.4 (apt-get install etcd-server etcd-client, or scripts/install-deps)")
        }
        let pipe: (read: Int32, write: Int32)
        do { pipe = try PosixSpawn.pipe() } catch { throw SandboxError(error.message) }
        defer { close(pipe.read) }
        // The watcher reads the lifeline (fd 3) until EOF, then terminates etcd, which `exec`
        // made the shell's own pid; etcd itself gets neither the lifeline nor a terminal.
        let script = #"exec 3<&0 </dev/null; { while read -r _; do :; done; kill -TERM $$ 2>/dev/null; } <&3 & exec "$@" 3<&-"#
        let pid: pid_t
        do {
            pid = try PosixSpawn.spawn(["/bin/sh", "-c", script, "etcd", etcd] + arguments, environment: Self.environment(),
                                       standardInput: pipe.read, standardOutput: .appending(toFile: logFile), standardError: .standardOutput)
        } catch {
            close(pipe.write)
            throw SandboxError(error.message)
        }
        try? JSONFiles.atomicWrite(Data("\(pid)\n".utf8), to: pidFile)
        return (pid, pipe.write)
    }

    /// This process's environment without etcd's and etcdctl's own variables (`ETCD_*` would set
    /// flags, `ETCDCTL_ENDPOINTS` would point at a system etcd on 127.0.0.1:2379).
    static func environment() -> [String: String] {
        PosixSpawn.inheritedEnvironment().filter { !$0.key.hasPrefix("ETCD_") && !$0.key.hasPrefix("ETCDCTL_") }
    }

    /// Runs `etcdctl` (API v3) with `arguments`, bounded.
    static func etcdctl(_ arguments: [String], timeoutSeconds: Double = 60) async throws -> ProcessRun.Outcome {
        var environment = Self.environment()
        environment["ETCDCTL_API"] = "3"
        return try await ProcessRun.run("etcdctl", arguments, environment: environment, timeoutSeconds: timeoutSeconds)
    }

    /// The environment of a server that runs etcd: etcd and etcdctl on PATH.
    static var installed: Bool { ProcessRun.locate("etcd") != nil && ProcessRun.locate("etcdctl") != nil }
}
