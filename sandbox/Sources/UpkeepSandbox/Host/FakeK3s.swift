import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import UpkeepCore
import UpkeepHTTPServer
import UpkeepKube
import UpkeepPKI
import UpkeepProcess
import UpkeepTLS
import UpkeepPOSIX

/// The fake k3s: what a node's `/usr/local/bin/k3s` runs in the sandbox.
///
/// The "binary" for version V is a small script carrying V that execs this code, so replacing
/// the file on disk changes the version exactly as a real upgrade does. `k3s server|agent`
/// runs the node: kubelet health on `http://<address>:10248/healthz`, the kubelet's API on
/// `https://<address>:10250` (401 to everyone, `serveKubeletAPI`), on servers the supervisor's
/// `https://<address>:6443/ping` and the datastore (`ServerDatastore`: an etcd member, or kine
/// over SQLite), and node status and lease heartbeats to the simulated API. A server becomes
/// healthy only once its datastore serves and was not written by a newer minor, and records its
/// minor there as it turns healthy (`StorageMinor`); an air-gapped node becomes healthy only
/// with its version's images in `agent/images` (`AirGap`).
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
                    return await clusterReset(node: node, version: version, arguments: arguments)
                }
                return await run(node: node, version: version)
            } catch {
                return fatal("\(error)")
            }
        case "etcd-snapshot":
            do {
                return try await snapshot(node: try locateNode(environment), arguments: Array(arguments.dropFirst()))
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

    // MARK: - Running the node

    /// How a run of `k3s server|agent` ends: a stop signal, or a failure that makes it exit non-zero.
    enum Ending: Sendable {
        case signal(Int32)
        case failure(String)
    }

    static func run(node: SandboxNode, version: String) async -> Int32 {
        let stopSignal = Signals.listen(for: [SIGTERM, SIGINT])
        let fault = SandboxFaults.load(node.faultsFile).fault(node: node.name, version: version)
        log("info", "Starting k3s \(version) (\(commit(of: version)))")
        if fault.exitAtStart == true {
            return fatal("starting kubernetes: preparing server: injected start failure (upkeep sandbox fault)")
        }
        let group = MultiThreadedEventLoopGroup.singleton
        let healthy = NIOLockedValueBox(false)
        var servers: [HTTPServer] = []
        do {
            servers.append(try await HTTPServer.start(host: node.address, port: 10248, group: group, responder: .nonBlocking { request in
                guard request.path == "/healthz" else { return .text("404 page not found\n", status: 404) }
                return healthy.withLockedValue { $0 } ? .text("ok") : .text("[-]syncloop failed: reason withheld\nhealthz check failed\n", status: 500)
            }))
            if node.isServer {
                let chain = try Certificate.loadChain(pemFile: node.servingCertificateFile)
                let key = try PrivateKey(pemFile: node.servingKeyFile)
                let context = try TLSContext.publicServer(chain: chain, key: key)
                servers.append(try await HTTPServer.start(host: node.address, port: 6443, tls: context, group: group, responder: .nonBlocking { request in
                    request.path == "/ping" ? .text("pong") : .error(KubeAPIError(code: 401, reason: "Unauthorized", message: "Unauthorized"))
                }))
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

        let kubeletAPI = Task { await serveKubeletAPI(node: node, group: group) }

        let (endings, ending) = AsyncStream.makeStream(of: Ending.self)
        let datastore = NIOLockedValueBox<ServerDatastore?>(nil)
        let kubelet = Task {
            if node.isServer {
                do {
                    let started = try await ServerDatastore.start(node) { log($0, $1) }
                    datastore.withLockedValue { $0 = started }
                    try await started.checkStorageMinor(version: version)
                } catch is CancellationError {
                    return
                } catch {
                    ending.yield(.failure("starting kubernetes: \(error)"))
                    return
                }
            }
            if let missing = AirGap.missingImages(node: node, version: version) {
                // The kubelet cannot start a pod of this version without its images (the node
                // has no registry to pull them from): the node never becomes Ready.
                try? JSONFiles.atomicWrite(Data(String(getpid()).utf8), to: node.readyFile)
                log("error", missing)
                return
            }
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
            if node.isServer, let started = datastore.withLockedValue({ $0 }) {
                // The apiserver is up at this minor: from now on the datastore holds what it wrote.
                do {
                    try await started.recordStorageMinor(version: version)
                } catch {
                    ending.yield(.failure("starting kubernetes: \(error)"))
                    return
                }
            }
            healthy.withLockedValue { $0 = true }
            try? JSONFiles.atomicWrite(Data(String(getpid()).utf8), to: node.readyFile)
            log("info", "k3s is up and running")
            await heartbeat(node: node, version: version)
        }
        let signalWatch = Task { ending.yield(.signal(await stopSignal())) }
        // Embedded etcd that dies takes k3s with it.
        let etcdWatch = Task {
            while !Task.isCancelled {
                if let status = datastore.withLockedValue({ $0 })?.etcdExitStatus() {
                    ending.yield(.failure("etcd exited (status \(WaitStatus(status).shellCode)); see \(node.etcdLogFile)"))
                    return
                }
                try? await Task.sleep(nanoseconds: 200_000_000)
            }
        }
        var iterator = endings.makeAsyncIterator()
        let end = await iterator.next() ?? .signal(SIGTERM)
        if case .signal(let signal) = end { log("info", "Received signal \(signal), shutting down") }
        kubelet.cancel()
        kubeletAPI.cancel()
        etcdWatch.cancel()
        signalWatch.cancel()
        unlink(node.readyFile)
        healthy.withLockedValue { $0 = false }
        _ = await kubelet.value
        await kubeletAPI.value
        await datastore.withLockedValue { $0 }?.stop()
        for server in servers { await server.close() }
        try? await socket?.close()
        unlink(node.containerdSocket)
        if case .failure(let message) = end { return fatal(message) }
        return 0
    }

    /// How often the kubelet API's listener looks at the node's `kubelet-port` fault.
    static let kubeletPortFaultCheckSeconds = 0.25

    /// The kubelet's API on `<address>:10250` over TLS with the kubelet's serving certificate,
    /// which every node must reach on every other (https://docs.k3s.io/installation/requirements#inbound-rules-for-k3s-nodes).
    /// k3s runs the kubelet with anonymous authentication off, so a request without a client
    /// certificate or token is answered 401 (https://kubernetes.io/docs/reference/access-authn-authz/kubelet-authn-authz/#kubelet-authentication);
    /// the sandbox serves nothing else there. While the node's `kubelet-port` fault is set, the
    /// listener is closed (a connect is refused, as through a host firewall that rejects it), and
    /// opened again when the fault is cleared. Runs until cancelled.
    static func serveKubeletAPI(node: SandboxNode, group: any EventLoopGroup) async {
        let context: TLSContext
        do {
            context = try TLSContext.publicServer(chain: try Certificate.loadChain(pemFile: node.kubeletServingCertificateFile),
                                                  key: try PrivateKey(pemFile: node.kubeletServingKeyFile))
        } catch {
            log("error", "kubelet: cannot load its serving certificate \(node.kubeletServingCertificateFile): \(error); port \(SandboxNode.kubeletPort) stays closed")
            return
        }
        var server: HTTPServer?
        var failedToOpen = false
        while !Task.isCancelled {
            let blocked = SandboxFaults.load(node.faultsFile).kubeletPortBlocked?.contains(node.name) ?? false
            if blocked, let open = server {
                await open.close()
                server = nil
                log("warning", "injected fault: the kubelet port \(SandboxNode.kubeletPort) is closed to other nodes")
            } else if !blocked && server == nil {
                do {
                    server = try await HTTPServer.start(host: node.address, port: SandboxNode.kubeletPort, tls: context, group: group,
                                                        responder: .nonBlocking { _ in .text("Unauthorized\n", status: 401) })
                    failedToOpen = false
                } catch {
                    if !failedToOpen { log("error", "kubelet: cannot listen on \(node.address):\(SandboxNode.kubeletPort): \(error); retrying") }
                    failedToOpen = true
                }
            }
            try? await Task.sleep(nanoseconds: UInt64(kubeletPortFaultCheckSeconds * 1_000_000_000))
        }
        await server?.close()
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
