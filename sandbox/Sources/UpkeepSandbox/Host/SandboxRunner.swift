import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import UpkeepHTTPServer
import UpkeepKube
import UpkeepPKI

/// What `upkeep sandbox up` asks for.
public struct SandboxOptions: Sendable, Equatable, Codable {
    public var directory: String
    public var spec: ClusterSpec
    public var netns: Bool
    /// The multi-call `upkeep-sandbox` binary (fake k3s, systemctl stand-in, the sandbox process).
    public var hostBinary: String
    /// The `upkeep-agent` binary to run on every node; nil runs no agents.
    public var agentBinary: String?
    /// The port every node's agent listens on (at the node's own address).
    public var agentPort: Int
    public var timings: ModelTimings
    /// How long `start` waits for every node to be Ready.
    public var readyTimeoutSeconds: Double
    /// Nodes without a registry: their k3s takes its images from `agent/images` (`AirGap`).
    public var airgapNodes: [String]?
    /// The `upkeep` binary when the nodes enroll through its join server with a token
    /// (`--join`, `SandboxEnrollment`); nil: the sandbox issues every agent's certificate itself.
    public var controllerBinary: String?

    public init(directory: String, spec: ClusterSpec, netns: Bool = false, hostBinary: String, agentBinary: String? = nil,
                agentPort: Int = 9443, timings: ModelTimings = ModelTimings(), readyTimeoutSeconds: Double = 90,
                airgapNodes: [String]? = nil, controllerBinary: String? = nil)
    {
        self.directory = directory
        self.spec = spec
        self.netns = netns
        self.hostBinary = hostBinary
        self.agentBinary = agentBinary
        self.agentPort = agentPort
        self.timings = timings
        self.readyTimeoutSeconds = readyTimeoutSeconds
        self.airgapNodes = airgapNodes
        self.controllerBinary = controllerBinary
    }
}

/// Runs one sandbox: lays out the nodes on disk, serves the simulated API (HTTPS with client
/// certificates) and the release server, starts every node's k3s through its systemctl
/// stand-in, and tears all of it down again. `upkeep sandbox up` runs it in a background
/// process; tests run it in-process.
public final class SandboxRunner: Sendable {
    public let options: SandboxOptions
    public let manifest: SandboxManifest
    public let cluster: SandboxCluster
    let api: HTTPServer
    let release: ReleaseServer
    /// Each node's path to the cluster DNS Service.
    let clusterDNS: SandboxClusterDNS
    /// The model's controllers, ticking through the datastore.
    let driver: Task<Void, Never>
    let network: SandboxNetwork?
    /// When each node's agent was last started (seconds since the epoch), to space out restarts.
    let agentStarts = NIOLockedValueBox<[String: Double]>([:])
    /// Restart=always with RestartSec=2s, as deploy/upkeep-agent.service would.
    static let agentRestartSeconds = 2.0
    /// The repository Flux watches, and the commit the model last applied from it.
    public let git: SandboxGit
    let appliedCommit = NIOLockedValueBox<String?>(nil)

    /// `upkeep-sandbox` in the directory of `executable` (SwiftPM builds them side by side).
    public static func hostBinaryNextTo(executable: String) -> String {
        "\((executable as NSString).deletingLastPathComponent)/upkeep-sandbox"
    }

    /// `upkeep-agent` in the directory of `executable`.
    public static func agentBinaryNextTo(executable: String) -> String {
        "\((executable as NSString).deletingLastPathComponent)/upkeep-agent"
    }

    /// `upkeep` in the directory of `executable`.
    public static func controllerBinaryNextTo(executable: String) -> String {
        "\((executable as NSString).deletingLastPathComponent)/upkeep"
    }

    private init(options: SandboxOptions, manifest: SandboxManifest, cluster: SandboxCluster, api: HTTPServer,
                 release: ReleaseServer, driver: Task<Void, Never>, network: SandboxNetwork?, git: SandboxGit, clusterDNS: SandboxClusterDNS)
    {
        self.git = git
        self.clusterDNS = clusterDNS
        self.options = options
        self.manifest = manifest
        self.cluster = cluster
        self.api = api
        self.release = release
        self.driver = driver
        self.network = network
    }

    /// Second octet of the loopback addresses of a sandbox in `directory` (127.X.0.0/16), so
    /// sandboxes in different directories do not share node addresses.
    /// Starts from a hash of the directory and skips a range whose first node's kubelet port is
    /// taken (another sandbox already lives there).
    static func loopbackOctet(_ directory: String) -> Int {
        let first = Int(StableHash.fnv1a(directory) % 200)
        for step in 0..<200 {
            let octet = 16 + (first + step) % 200
            if canBind(host: "127.\(octet).1.1", port: 10248) { return octet }
        }
        return 16 + first
    }

    /// Whether a TCP listener could bind `host:port` right now.
    static func canBind(host: String, port: UInt16) -> Bool {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return true }
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else { return true }
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    public static func start(_ options: SandboxOptions) async throws -> SandboxRunner {
        if let problem = options.spec.problem { throw SandboxError(problem) }
        if let unknown = options.airgapNodes?.first(where: { !options.spec.nodeNames.contains($0) }) {
            throw SandboxError("--airgap names \(unknown), which is not a node of this sandbox (\(options.spec.nodeNames.joined(separator: ", ")))")
        }
        if options.spec.servers > 1, !EtcdMember.installed {
            throw SandboxError("a sandbox with several servers runs an etcd member on each, and etcd is not installed: apt-get install etcd-server etcd-client (scripts/install-deps does)")
        }
        guard FileManager.default.isExecutableFile(atPath: options.hostBinary) else {
            throw SandboxError("the sandbox program \(options.hostBinary) is missing; build it (swift build)")
        }
        if let controller = options.controllerBinary {
            guard options.agentBinary != nil else { throw SandboxError("--join enrolls every node's agent; it cannot go with --no-agents") }
            guard FileManager.default.isExecutableFile(atPath: controller) else {
                throw SandboxError("--join runs \(controller) (join-server, token create), which is missing; build it (swift build)")
            }
        }
        let directory = options.directory.hasPrefix("/") ? options.directory : FileManager.default.currentDirectoryPath + "/" + options.directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        if let existing = try? SandboxManifest.load(directory: directory), existing.pid > 0, Spawn.isAlive(existing.pid),
           existing.pid != getpid()
        {
            throw SandboxError("a sandbox already runs in \(directory) (pid \(existing.pid)); run `upkeep sandbox down --dir \(directory)` first")
        }
        var spec = options.spec
        let names = spec.nodeNames
        var network: SandboxNetwork?
        let apiHost: String
        if options.netns {
            let created = try await SandboxNetwork.create(directory: directory, nodes: names)
            network = created
            apiHost = created.bridgeAddress
            for (index, name) in names.enumerated() { spec.addresses[name] = created.addresses[index] }
        } else {
            let octet = loopbackOctet(directory)
            apiHost = "127.\(octet).0.1"
            for (index, name) in names.enumerated() { spec.addresses[name] = "127.\(octet).\(1 + index / 250).\(1 + index % 250)" }
        }
        do {
            return try await startServing(options: options, directory: directory, spec: spec, apiHost: apiHost, network: network)
        } catch {
            if let network { await network.destroy() }
            throw error
        }
    }

    private static func startServing(options: SandboxOptions, directory: String, spec: ClusterSpec, apiHost: String,
                                     network: SandboxNetwork?) async throws -> SandboxRunner
    {
        let addresses = spec.nodeNames.map { spec.address(of: $0) }
        let credentials = try SandboxCredentials.generate(addresses: addresses + [apiHost])
        let pki = "\(directory)/pki"
        try JSONFiles.atomicWrite(Data(try credentials.serverCA.certificate.pem().utf8), to: "\(pki)/server-ca.crt")
        try JSONFiles.atomicWrite(Data(try credentials.clientCA.certificate.pem().utf8), to: "\(pki)/client-ca.crt")
        try JSONFiles.atomicWrite(Data(try credentials.admin.certificate.pem().utf8), to: "\(pki)/admin.crt")
        try JSONFiles.atomicWrite(Data(try credentials.admin.key.pkcs8PEM().utf8), to: "\(pki)/admin.key", mode: 0o600)

        let group = MultiThreadedEventLoopGroup.singleton
        // The API keeps every object in the servers' datastore; it waits for it (503) until they run.
        let storage = ClusterStorage(serverAddresses: spec.serverNames.map { spec.address(of: $0) })
        let cluster = SandboxCluster(spec: spec, timings: options.timings, storage: storage)
        let api = try await HTTPServer.start(host: apiHost, port: 0, configuration: SandboxCluster.apiServerConfiguration,
                                             tls: try credentials.serverContext(), group: group, responder: .async(cluster.respond))
        let apiURL = "https://\(apiHost):\(api.port)"
        let kubeconfig = "\(directory)/kubeconfig"
        try credentials.writeKubeconfig(server: apiURL, to: kubeconfig)

        let faultsFile = "\(directory)/faults.json"
        if !FileManager.default.fileExists(atPath: faultsFile) { try JSONFiles.write(SandboxFaults(), to: faultsFile) }
        let catalog = ReleaseCatalog(k3sBase: spec.k3sVersion, offered: spec.offeredK3sVersions ?? [], hostBinary: options.hostBinary,
                                     faults: { SandboxFaults.load(faultsFile) }, now: Date().timeIntervalSince1970)
        let release = try await ReleaseServer.start(catalog: catalog, host: apiHost, group: group)

        var nodes: [SandboxNode] = []
        let serverAddresses = spec.serverNames.map { spec.address(of: $0) }
        let airgap = Set(options.airgapNodes ?? [])
        for (index, name) in spec.nodeNames.enumerated() {
            let node = SandboxNode(name: name, role: index < spec.servers ? "server" : "agent", address: spec.address(of: name),
                                   root: "\(directory)/nodes/\(name)", netns: network?.namespaces[index], apiURL: apiURL,
                                   faultsFile: faultsFile, hostBinary: options.hostBinary,
                                   datastore: spec.servers > 1 ? "etcd" : "sqlite", agentPort: options.agentPort,
                                   etcdPeers: index < spec.servers && spec.servers > 1 ? serverAddresses : nil,
                                   airgap: airgap.contains(name) ? true : nil,
                                   clusterDNS: SandboxClusterDNS.address(nodeAddress: spec.address(of: name), index: index,
                                                                         bridgeAddress: network?.bridgeAddress))
            try layOut(node, version: spec.version(of: name), credentials: credentials, apiURL: apiURL)
            nodes.append(node)
        }
        try layOutDatastore(servers: nodes.filter(\.isServer), token: "upkeep-sandbox-\(StableHash.hex(directory, length: 12))")
        // With --join only the controller identity is issued here; each node makes its own key.
        try SandboxIdentities.prepare(directory: directory, nodes: options.controllerBinary == nil ? nodes : [])
        try JSONFiles.atomicWrite(Data(SandboxIdentities.controllerConfig(directory: directory, releaseURL: release.baseURL,
                                                                          agentPort: options.agentPort).utf8),
                                  to: "\(directory)/upkeep.yaml")
        let clusterDNS: SandboxClusterDNS
        do {
            clusterDNS = try await SandboxClusterDNS.start(nodes: nodes, cluster: cluster, log: ThrottledLog(), group: group)
        } catch {
            await api.close()
            await release.close()
            throw error
        }
        let driver = cluster.startDriverTask()
        let manifest = SandboxManifest(directory: directory, pid: getpid(), apiURL: apiURL, kubeconfig: kubeconfig,
                                       releaseURL: release.baseURL, faultsFile: faultsFile, netns: network != nil,
                                       bridge: network?.bridge, k3sVersion: spec.k3sVersion, availableK3sVersions: catalog.k3sVersions,
                                       nodes: nodes, serverCAFile: "\(pki)/server-ca.crt",
                                       startedAt: KubeTime.format(Date().timeIntervalSince1970))
        try JSONFiles.write(manifest, to: SandboxManifest.path(in: directory))
        let git = try await SandboxGit.create(directory: directory, spec: spec)
        cluster.withModel { model in
            model.store.modify(.fluxGitRepositories, "flux-system", "flux-system") { repository in
                repository[path: "spec", "url"] = .string(git.url)
                repository[path: "spec", "secretRef"] = nil
            }
        }
        let runner = SandboxRunner(options: options, manifest: manifest, cluster: cluster, api: api, release: release, driver: driver,
                                   network: network, git: git, clusterDNS: clusterDNS)
        await runner.followGit()
        for node in nodes {
            _ = SystemctlStandIn.main(["start", "--no-block", node.unit], program: node.systemctl, environment: [:])
        }
        // Nodes enroll while their k3s starts.
        if let controllerBinary = options.controllerBinary, let agentBinary = options.agentBinary {
            do {
                _ = try await SandboxEnrollment.enroll(directory: directory, nodes: nodes, host: apiHost, controllerBinary: controllerBinary,
                                                       agentBinary: agentBinary)
            } catch {
                await runner.stop()
                throw error
            }
        }
        let deadline = Date().addingTimeInterval(options.readyTimeoutSeconds)
        while Date() < deadline {
            if cluster.withModel({ $0.summary()["ready"] == true }) {
                do {
                    try await runner.startAgents()
                } catch {
                    await runner.stop()
                    throw error
                }
                return runner
            }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        let notReady = cluster.withModel { model in model.store.list(.nodes).map(Node.init).filter { !$0.isReady }.map(\.name) }
        await runner.stop()
        throw SandboxError("the sandbox did not become ready within \(Int(options.readyTimeoutSeconds)) s (not Ready: \(notReady.joined(separator: ", "))); see \(directory)/nodes/*/var/log/*.log")
    }

    /// One node's files: its k3s "binary", systemctl, kubeconfig, TLS material and unit file.
    static func layOut(_ node: SandboxNode, version: String, credentials: SandboxCredentials, apiURL: String) throws {
        let fm = FileManager.default
        for directory in ["usr/local/bin", "bin", "etc/rancher/k3s", "etc/systemd/system", "var/lib/rancher/k3s/server/tls",
                          "var/lib/rancher/k3s/agent", "run/upkeep-sandbox", "run/k3s/containerd",
                          "var/log"]
        {
            try fm.createDirectory(atPath: "\(node.root)/\(directory)", withIntermediateDirectories: true)
        }
        try JSONFiles.write(node, to: node.descriptorFile)
        try JSONFiles.atomicWrite(Data(FakeK3s.script(version: version, hostBinary: node.hostBinary).utf8), to: node.k3sBinary, mode: 0o755)
        try? fm.removeItem(atPath: node.systemctl)
        try fm.createSymbolicLink(atPath: node.systemctl, withDestinationPath: node.hostBinary)
        try credentials.writeKubeconfig(server: apiURL, to: node.kubeconfig)
        let execStart = node.isServer ? "/usr/local/bin/k3s server" : "/usr/local/bin/k3s agent"
        let unit = """
            [Unit]
            Description=Lightweight Kubernetes
            Documentation=https://k3s.io
            Wants=network-online.target
            After=network-online.target

            [Service]
            Type=notify
            EnvironmentFile=-/etc/systemd/system/\(node.unit).service.env
            KillMode=process
            Delegate=yes
            LimitNOFILE=1048576
            TimeoutStartSec=0
            Restart=always
            RestartSec=5s
            ExecStart=\(execStart)

            [Install]
            WantedBy=multi-user.target

            """
        try JSONFiles.atomicWrite(Data(unit.utf8), to: node.unitFile)
        // As on a node installed with `--node-name` (https://docs.k3s.io/installation/configuration#configuration-file):
        // where `upkeep-agent join` finds the node's name.
        try JSONFiles.atomicWrite(Data("node-name: \(node.name)\n".utf8), to: "\(node.root)/etc/rancher/k3s/config.yaml")
        try JSONFiles.atomicWrite(Data(), to: "\(node.unitFile).env", mode: 0o600)
        // The kubelet's serving certificate, as k3s issues it to every node from its server CA.
        let kubeletServing = try credentials.serverCA.issueServer(commonName: node.name, dnsNames: [node.name], ipAddresses: [node.address],
                                                                  keyType: .ecdsaP256, validity: .days(365).startingEarlier(bySeconds: 300))
        try JSONFiles.atomicWrite(Data(try kubeletServing.certificate.pem().utf8), to: node.kubeletServingCertificateFile)
        try JSONFiles.atomicWrite(Data(try kubeletServing.key.pkcs8PEM().utf8), to: node.kubeletServingKeyFile, mode: 0o600)
        if node.isServer {
            try JSONFiles.atomicWrite(Data(try credentials.serverCA.certificate.pem().utf8), to: node.serverCAFile)
            let serving = try credentials.serverCA.issueServer(commonName: "k3s", dnsNames: ["localhost", node.name],
                                                               ipAddresses: Array(Set(["127.0.0.1", node.address])).sorted(),
                                                               keyType: .ecdsaP256, validity: .days(365).startingEarlier(bySeconds: 300))
            try JSONFiles.atomicWrite(Data(try serving.certificate.pem().utf8), to: node.servingCertificateFile)
            try JSONFiles.atomicWrite(Data(try serving.key.pkcs8PEM().utf8), to: node.servingKeyFile, mode: 0o600)
            let token = "K10" + StableHash.hex("token/\(node.root)", length: 16) + StableHash.hex("token2/\(node.root)", length: 16)
                + "::server:" + StableHash.hex("secret/\(node.root)", length: 16)
            try JSONFiles.atomicWrite(Data((token + "\n").utf8), to: "\(node.dataDir)/server/token", mode: 0o600)
        }
        if node.airgap == true { try AirGap.place(version: version, on: node) }
    }

    /// A fresh datastore on every server, as a new cluster starts: the etcd members of all
    /// servers form one new cluster at their first start (`EtcdMember.Bootstrap`), or the single
    /// server gets kine's empty `state.db`. A datastore of an earlier sandbox in the same
    /// directory is removed.
    static func layOutDatastore(servers: [SandboxNode], token: String) throws {
        let fm = FileManager.default
        for node in servers {
            let database = "\(node.dataDir)/server/db"
            try? fm.removeItem(atPath: database)
            try fm.createDirectory(atPath: "\(database)/snapshots", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            chmod(database, 0o700)
        }
        guard servers.count > 1 else {
            if let node = servers.first { try KineStore.create(path: "\(node.dataDir)/server/db/state.db") }
            return
        }
        var members: [String: String] = [:]
        for node in servers {
            let member = EtcdMember(node: node)
            members[member.newName()] = member.peerURL
        }
        for node in servers {
            let member = EtcdMember(node: node)
            guard let name = members.first(where: { $0.value == member.peerURL })?.key else { continue }
            try fm.createDirectory(atPath: member.directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            try JSONFiles.atomicWrite(Data((name + "\n").utf8), to: member.nameFile, mode: 0o600)
            try JSONFiles.write(EtcdMember.Bootstrap(token: token, members: members), to: member.bootstrapFile, mode: 0o600)
        }
    }

    public var apiURL: String { manifest.apiURL }
    public var releaseURL: String { manifest.releaseURL }

    /// Starts every node's upkeep-agent (when the options name the binary), waits until each
    /// listens and has annotated its own Node with the address the controller should dial
    /// (`AddressAnnouncer`: the sandbox annotates nothing itself).
    func startAgents() async throws {
        guard let agentBinary = options.agentBinary else { return }
        // Enrolled nodes run on the agent.yaml and certificate `upkeep-agent join` wrote.
        let pki: String? = options.controllerBinary == nil ? "\(manifest.directory)/pki" : nil
        var started: [(SandboxNode, pid_t)] = []
        for node in manifest.nodes {
            started.append((node, try SandboxAgents.start(node, agentBinary: agentBinary, pkiDirectory: pki)))
            agentStarts.withLockedValue { $0[node.name] = Date().timeIntervalSince1970 }
        }
        for (node, pid) in started {
            try await SandboxAgents.waitListening(node, pid: pid)
        }
        for (node, pid) in started {
            try await waitAnnotated(node, pid: pid)
        }
    }

    /// Waits (bounded) until `node`'s Node carries the annotation its agent writes.
    func waitAnnotated(_ node: SandboxNode, pid: pid_t, timeoutSeconds: Double = SandboxAgents.listenTimeoutSeconds) async throws {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        var seen: String?
        while Date() < deadline {
            seen = cluster.withModel { model in
                model.store.list(.nodes).map(Node.init).first { $0.name == node.name }?.annotations[SandboxAgents.addressAnnotation]
            }
            if seen == node.agentAddress { return }
            guard Spawn.isAlive(pid) else { break }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        throw SandboxError("the upkeep-agent of \(node.name) did not annotate its Node with \(SandboxAgents.addressAnnotation): \(node.agentAddress) "
            + "within \(Int(timeoutSeconds)) s (it reads \(seen ?? "nothing")); see \(node.agentLogFile):\n\(SandboxAgents.tail(node.agentLogFile))")
    }

    /// Applies what `faults.json` says to the running sandbox (the fake k3s reads its own knobs
    /// when it starts) and keeps the agents running as systemd would (except those a fault
    /// keeps down); called periodically by the sandbox process.
    public func tend() async {
        let faults = SandboxFaults.load(manifest.faultsFile)
        _ = try? await cluster.update { model in
            model.rebuildSecondsByNode = faults.rebuildSeconds ?? [:]
            let key = ClusterModel.fluxKey(.fluxHelmReleases, ClusterModel.longhornRelease.namespace, ClusterModel.longhornRelease.name)
            model.fluxFaults[key] = faults.longhornUpgradeFails == true
                ? FluxFault(reason: "UpgradeFailed", message: "Helm upgrade failed: timed out waiting for the condition") : model.longhornHelmFailure
            model.longhornFaults = faults.longhorn ?? LonghornFaults()
            model.fluxUpgradeFails = faults.fluxUpgradeFails == true
            model.apiWriteStallSeconds = faults.apiWriteStallSeconds ?? [:]
            model.clusterDNSBroken = Set(faults.dnsDown ?? [])
        }
        await followGit()
        guard let agentBinary = options.agentBinary else { return }
        let down = Set(faults.agentsDown ?? [])
        await Spawn.offload(manifest.nodes.filter { down.contains($0.name) && SandboxAgents.runningPID($0) != nil }) { SandboxAgents.stop($0) }
        let now = Date().timeIntervalSince1970
        for node in manifest.nodes where !down.contains(node.name) {
            let running = SandboxAgents.runningPID(node) != nil
            guard !running, now - (agentStarts.withLockedValue { $0[node.name] } ?? 0) >= Self.agentRestartSeconds else { continue }
            agentStarts.withLockedValue { $0[node.name] = now }
            _ = try? SandboxAgents.start(node, agentBinary: agentBinary,
                                         pkiDirectory: options.controllerBinary == nil ? "\(manifest.directory)/pki" : nil)
        }
    }

    /// Applies the branch's newest commit to the model when it changed (Flux's source and helm
    /// controllers fetching and installing it).
    func followGit() async {
        guard let head = git.head(), head != appliedCommit.withLockedValue({ $0 }) else { return }
        let versions = await git.versions(at: head)
        do {
            try await cluster.update { $0.applyGitCommit(sha: head, longhornChartVersion: versions.longhornChart, flux: versions.flux) }
        } catch {
            return  // the datastore refused it: the next look applies it
        }
        appliedCommit.withLockedValue { $0 = head }
    }

    /// Stops every node's agent and k3s, the join server, the servers and the network; removes `sandbox.json`.
    public func stop() async {
        await Spawn.offload(manifest.nodes) { SandboxAgents.stop($0) }
        await Spawn.offload(manifest.nodes) { _ = SystemctlStandIn.stopUnit($0) }
        let directory = manifest.directory
        await Spawn.offload([directory]) { SandboxEnrollment.stopServer(directory: $0) }
        driver.cancel()
        await api.close()
        await release.close()
        await clusterDNS.close()
        if let network { await network.destroy() }
        if (try? SandboxManifest.load(directory: manifest.directory))?.pid == manifest.pid {
            unlink(SandboxManifest.path(in: manifest.directory))
        }
    }

    /// Cleans up after a sandbox whose process is gone (or asks a live one to stop): what
    /// `upkeep sandbox down` does.
    public static func down(directory: String, waitSeconds: Double = 60) async throws -> String {
        var report: [String] = []
        if let pid = SandboxDaemon.runningPID(directory) {
            kill(pid, SIGTERM)
            let deadline = Date().addingTimeInterval(waitSeconds)
            while Spawn.isAlive(pid) && Date() < deadline { try await Task.sleep(nanoseconds: 50_000_000) }
            if Spawn.isAlive(pid) { kill(pid, SIGKILL) }
            report.append("stopped the sandbox process \(pid)")
        }
        unlink(SandboxDaemon.pidFile(directory))
        unlink(SandboxDaemon.stateFile(directory))
        if SandboxEnrollment.serverPID(directory) != nil {
            await Spawn.offload([directory]) { SandboxEnrollment.stopServer(directory: $0) }
            report.append("stopped the join server")
        }
        guard let manifest = try? SandboxManifest.load(directory: directory) else {
            report.append(report.isEmpty ? "no sandbox runs in \(directory)" : "sandbox in \(directory) is down")
            return report.joined(separator: "\n")
        }
        let agents = manifest.nodes.filter { SandboxAgents.runningPID($0) != nil }
        await Spawn.offload(agents) { SandboxAgents.stop($0) }
        report += agents.map { "stopped the upkeep-agent of \($0.name)" }
        let units = manifest.nodes.filter { node in
            let state = SystemctlStandIn.currentState(node)
            return state.supervisorPID > 0 && Spawn.isAlive(state.supervisorPID) || state.mainPID > 0 && Spawn.isAlive(state.mainPID)
        }
        await Spawn.offload(units) { _ = SystemctlStandIn.stopUnit($0) }
        report += units.map { "stopped k3s on \($0.name)" }
        if manifest.netns {
            let removed = await SandboxNetwork.remove(bridge: manifest.bridge, namespaces: manifest.nodes.compactMap(\.netns))
            if removed > 0 { report.append("removed \(removed) network namespaces and links") }
        }
        unlink(SandboxManifest.path(in: directory))
        report.append("sandbox in \(directory) is down")
        return report.joined(separator: "\n")
    }
}
