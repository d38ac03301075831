import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import UpkeepCore
import UpkeepKube
import UpkeepPKI
import UpkeepTLS

/// The fake k3s: what a node's `/usr/local/bin/k3s` runs in the sandbox.
///
/// The "binary" for version V is a small script carrying V that execs this code, so replacing
/// the file on disk changes the version exactly as a real upgrade does. `k3s server|agent`
/// runs the node: kubelet health on `http://<address>:10248/healthz`, on servers the supervisor's
/// `https://<address>:6443/ping`, and node status and lease heartbeats to the simulated API.
public enum FakeK3s {
    public static let versionVariable = "UPKEEP_FAKE_K3S_VERSION"
    public static let selfVariable = "UPKEEP_FAKE_K3S_SELF"
    public static let rootVariable = "UPKEEP_SANDBOX_NODE_ROOT"
    /// Lease renewal period of the fake kubelet.
    public static let heartbeatSeconds = 2.0

    /// The script that stands in for the k3s binary of `version`.
    public static func script(version: String, hostBinary: String) -> String {
        """
        #!/bin/sh
        # upkeep sandbox: fake k3s \(version). Replacing this file changes the version, as with the real binary.
        \(versionVariable)='\(version)' \(selfVariable)="$0" exec '\(hostBinary)' k3s "$@"

        """
    }

    /// The short commit k3s prints after its version, stable per version.
    public static func commit(of version: String) -> String { StableHash.hex("commit/\(version)", length: 8) }

    /// `k3s --version`, in the two-line format k3s prints since late 2020.
    public static func versionText(_ version: String) -> String {
        "k3s version \(version) (\(commit(of: version)))\ngo version go1.22.8\n"
    }

    public static func main(_ arguments: [String], environment: [String: String]) async -> Int32 {
        guard let version = environment[versionVariable], !version.isEmpty else {
            printError("this fake k3s runs through its version file (\(versionVariable) is not set); start it as <node>/usr/local/bin/k3s")
            return 1
        }
        let command = arguments.first ?? ""
        switch command {
        case "--version", "-v", "version":
            print(versionText(version), terminator: "")
            return 0
        case "server", "agent":
            do {
                let node = try locateNode(environment)
                if command == "server" && !node.isServer {
                    return fatal("this node is an agent; its unit runs `k3s agent`")
                }
                if arguments.contains("--cluster-reset") {
                    return clusterReset(node: node, version: version, arguments: arguments)
                }
                return await run(node: node, version: version)
            } catch {
                return fatal("\(error)")
            }
        case "etcd-snapshot":
            do {
                return try snapshot(node: try locateNode(environment), arguments: Array(arguments.dropFirst()))
            } catch {
                return fatal("\(error)")
            }
        case "kubectl":
            guard let node = try? locateNode(environment) else { return fatal("cannot find this node's kubeconfig") }
            let outcome = try? await ProcessRun.run("kubectl", ["--kubeconfig", node.kubeconfig] + arguments.dropFirst(), timeoutSeconds: 300)
            print(outcome?.output ?? "", terminator: "")
            return outcome?.status ?? 1
        default:
            printError("Incorrect Usage. flag provided but not defined: \(command)\nNAME:\n   k3s - Kubernetes, but small and simple\nUSAGE:\n   k3s [global options] command [command options] [arguments...]")
            return 1
        }
    }

    static func locateNode(_ environment: [String: String]) throws -> SandboxNode {
        if let root = environment[rootVariable], !root.isEmpty { return try SandboxNode.load(root: root) }
        if let path = environment[selfVariable], path.hasSuffix("/usr/local/bin/k3s") {
            let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
            return try SandboxNode.load(root: String(absolute.dropLast("/usr/local/bin/k3s".count)))
        }
        throw SandboxError("cannot tell which sandbox node this is: run it as <node>/usr/local/bin/k3s or set \(rootVariable)")
    }

    static func log(_ level: String, _ message: String) {
        let line = "time=\"\(KubeTime.format(Date().timeIntervalSince1970))\" level=\(level) msg=\"\(message)\"\n"
        FileHandle.standardError.write(Data(line.utf8))
    }

    static func printError(_ message: String) { FileHandle.standardError.write(Data((message + "\n").utf8)) }

    static func fatal(_ message: String) -> Int32 {
        log("fatal", message)
        return 1
    }

    /// k3s of this node is up: its ready file names a live process.
    static func isRunning(_ node: SandboxNode) -> Bool {
        guard let text = try? String(contentsOfFile: node.readyFile, encoding: .utf8), let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines))
        else { return false }
        return Spawn.isAlive(pid)
    }

    // MARK: - etcd snapshots and cluster reset

    static func snapshot(node: SandboxNode, arguments: [String]) throws -> Int32 {
        var arguments = arguments
        if arguments.first == "save" { arguments.removeFirst() }
        guard node.isServer else { return fatal("etcd-snapshot must be run on a server node") }
        guard node.datastore == "etcd" else { return fatal("etcd datastore disabled") }
        guard isRunning(node) else { return fatal("etcd-snapshot: failed to get etcd status: k3s is not running on this node") }
        var base = "on-demand"
        var directory = node.snapshotDir
        var compress = false
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            func value() -> String? {
                if let equals = argument.firstIndex(of: "=") { return String(argument[argument.index(after: equals)...]) }
                index += 1
                return index < arguments.count ? arguments[index] : nil
            }
            if argument.hasPrefix("--name") { base = value() ?? base }
            else if argument.hasPrefix("--dir") || argument.hasPrefix("--etcd-snapshot-dir") { directory = value() ?? directory }
            else if argument == "--etcd-snapshot-compress" || argument == "--compress" { compress = true }
            index += 1
        }
        let name = "\(base)-\(node.name)-\(Int(Date().timeIntervalSince1970))" + (compress ? ".zip" : "")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let content: JSON = ["kind": "UpkeepSandboxEtcdSnapshot", "node": .string(node.name),
                             "version": .string(currentVersion(node) ?? ""), "time": .string(KubeTime.format(Date().timeIntervalSince1970))]
        try JSONFiles.atomicWrite(Data(content.serialized()), to: "\(directory)/\(name)", mode: 0o600)
        log("info", "Saving etcd snapshot to \(directory)/\(name)")
        log("info", "Snapshot \(name) saved.")
        return 0
    }

    static func currentVersion(_ node: SandboxNode) -> String? {
        guard let script = try? String(contentsOfFile: node.k3sBinary, encoding: .utf8),
              let range = script.range(of: "\(versionVariable)='")
        else { return nil }
        return String(script[range.upperBound...].prefix { $0 != "'" })
    }

    static func clusterReset(node: SandboxNode, version: String, arguments: [String]) -> Int32 {
        guard node.isServer else { return fatal("--cluster-reset is only valid on servers") }
        guard node.datastore == "etcd" else { return fatal("--cluster-reset requires embedded etcd; this server uses SQLite") }
        guard !isRunning(node) else {
            return fatal("starting kubernetes: preparing server: k3s is already running on this node; stop it first (systemctl stop k3s)")
        }
        let database = "\(node.dataDir)/server/db"
        if let restore = arguments.first(where: { $0.hasPrefix("--cluster-reset-restore-path=") })?.split(separator: "=", maxSplits: 1).last {
            let path = String(restore)
            guard let data = FileManager.default.contents(atPath: path),
                  (try? JSON.parse(bytes: Array(data)))?["kind"] == "UpkeepSandboxEtcdSnapshot"
            else {
                return fatal("starting kubernetes: preparing server: etcd: snapshot restore failed: \(path) is not an etcd snapshot")
            }
            log("info", "Pre-restore etcd database moved to \(database)/etcd-old-\(Int(Date().timeIntervalSince1970))")
            try? JSONFiles.atomicWrite(Data(path.utf8), to: "\(database)/restored-from")
        }
        log("info", "Starting k3s \(version) (\(commit(of: version)))")
        log("info", "Managed etcd cluster membership has been reset, restart without --cluster-reset flag now. Backup and delete ${datadir}/server/db on each peer etcd server and rejoin the nodes")
        try? JSONFiles.atomicWrite(Data(), to: "\(database)/reset-flag")
        return 0
    }

    // MARK: - Running the node

    static func run(node: SandboxNode, version: String) async -> Int32 {
        let fault = SandboxFaults.load(node.faultsFile).fault(node: node.name, version: version)
        log("info", "Starting k3s \(version) (\(commit(of: version)))")
        if fault.exitAtStart == true {
            return fatal("starting kubernetes: preparing server: injected start failure (upkeep sandbox fault)")
        }
        let group = MultiThreadedEventLoopGroup.singleton
        let healthy = NIOLockedValueBox(false)
        var servers: [SandboxHTTPServer] = []
        do {
            servers.append(try await SandboxHTTPServer.start(host: node.address, port: 10248, group: group) { request in
                guard request.path == "/healthz" else { return .text("404 page not found\n", status: 404) }
                return healthy.withLockedValue { $0 } ? .text("ok") : .text("[-]syncloop failed: reason withheld\nhealthz check failed\n", status: 500)
            })
            if node.isServer {
                let chain = try Certificate.loadChain(pemFile: node.servingCertificateFile)
                let key = try PrivateKey(pemFile: node.servingKeyFile)
                let context = try TLSContext.publicServer(chain: chain, key: key)
                servers.append(try await SandboxHTTPServer.start(host: node.address, port: 6443, group: group,
                                                                 channelPrefix: SandboxHTTPServer.tls(context)) { request in
                    request.path == "/ping" ? .text("pong") : .error(KubeAPIError(code: 401, reason: "Unauthorized", message: "Unauthorized"))
                })
            }
        } catch {
            for server in servers { await server.close() }
            return fatal("starting kubernetes: \(error)")
        }
        var socket: (any Channel)?
        if node.containerdSocket.utf8.count < 100 {
            try? FileManager.default.createDirectory(atPath: (node.containerdSocket as NSString).deletingLastPathComponent,
                                                     withIntermediateDirectories: true)
            unlink(node.containerdSocket)
            socket = try? await ServerBootstrap(group: group).bind(unixDomainSocketPath: node.containerdSocket).get()
        }

        let kubelet = Task {
            if fault.neverHealthy == true {
                // k3s tells systemd it started (the unit turns active) but the kubelet never
                // becomes healthy and never reports the node Ready: what a bad upgrade looks like.
                try? JSONFiles.atomicWrite(Data(String(getpid()).utf8), to: node.readyFile)
                log("warning", "injected fault: this k3s never becomes healthy")
                return
            }
            if let delay = fault.healthyAfterSeconds, delay > 0 {
                try? await Task.sleep(nanoseconds: UInt64(delay * 1_000_000_000))
            }
            guard !Task.isCancelled else { return }
            healthy.withLockedValue { $0 = true }
            try? JSONFiles.atomicWrite(Data(String(getpid()).utf8), to: node.readyFile)
            log("info", "k3s is up and running")
            await heartbeat(node: node, version: version)
        }
        let signal = await Signals.wait(for: [SIGTERM, SIGINT])
        log("info", "Received signal \(signal), shutting down")
        kubelet.cancel()
        unlink(node.readyFile)
        healthy.withLockedValue { $0 = false }
        for server in servers { await server.close() }
        try? await socket?.close()
        unlink(node.containerdSocket)
        return 0
    }

    /// The kubelet's reports: node status with the running version, then lease renewals.
    static func heartbeat(node: SandboxNode, version: String) async {
        let client: KubeClient
        do {
            client = try KubeClient(kubeconfig: node.kubeconfig)
        } catch {
            log("error", "kubelet: cannot read \(node.kubeconfig): \(error)")
            return
        }
        defer { Task { await client.shutdown() } }
        var reported = false
        while !Task.isCancelled {
            let now = Date().timeIntervalSince1970
            do {
                if !reported {
                    _ = try await client.patch(.nodes, node.name, [
                        "status": ["conditions": [["type": "Ready", "status": "True", "reason": "KubeletReady",
                                                   "message": "kubelet is posting ready status",
                                                   "lastHeartbeatTime": .string(KubeTime.format(now))]],
                                   "nodeInfo": ["kubeletVersion": .string(version), "kubeProxyVersion": .string(version)]],
                    ], as: .strategicMerge, subresource: "status")
                    reported = true
                }
                let renew: JSON = ["spec": ["holderIdentity": .string(node.name), "leaseDurationSeconds": 40,
                                            "renewTime": .string(KubeTime.formatMicro(now))]]
                do {
                    _ = try await client.patch(.leases, node.name, namespace: "kube-node-lease", renew)
                } catch let error as KubeAPIError where error.isNotFound {
                    var lease = renew
                    lease["metadata"] = ["name": .string(node.name), "namespace": "kube-node-lease"]
                    _ = try await client.create(.leases, lease)
                }
            } catch {
                log("error", "kubelet: reporting to the API failed: \(error)")
                reported = false
            }
            try? await Task.sleep(nanoseconds: UInt64(heartbeatSeconds * 1_000_000_000))
        }
    }
}
