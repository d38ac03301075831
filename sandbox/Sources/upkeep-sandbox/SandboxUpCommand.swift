import ArgumentParser
import Foundation
import UpkeepCapture
import UpkeepSandbox

/// `upkeep sandbox up`: starts the sandbox in the background and returns once every node is Ready.
struct SandboxUp: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "Start a sandbox cluster in the background; returns once every node is Ready.",
        discussion: """
            Writes DIR/kubeconfig (client-certificate kubeconfig for the simulated API), DIR/sandbox.json \
            (nodes, addresses, ports, release server), DIR/pki (cluster CA, agents/<node>, controllers/upkeep) \
            and DIR/upkeep.yaml for the controller; with --join the nodes enroll through `upkeep join-server` \
            (DIR/join-server.log) and keep their keys under DIR/nodes/<node>/etc/upkeep/tls. Stop it with `upkeep sandbox down --dir DIR`.
            """
    )

    @OptionGroup var directory: SandboxDirectoryOption

    @Option(name: .long, help: "Server nodes (embedded etcd when more than one).")
    var servers = 1

    @Option(name: .long, help: "Agent nodes.")
    var agents = 2

    @Option(name: .long, help: "Longhorn volumes.")
    var volumes = 2

    @Option(name: .long, help: "Replicas per volume, on distinct nodes.")
    var replicas = 2

    @Option(name: .customLong("k3s-version"), help: "The k3s version every node starts with.")
    var k3sVersion = "v1.30.6+k3s1"

    @Option(name: .customLong("agent-port"), help: "The port every node's upkeep-agent listens on, at the node's own address.")
    var agentPort = 9443

    @Flag(name: .long, help: "Put every node in its own network namespace (198.18.0.0/15 on a bridge; needs root).")
    var netns = false

    @Flag(name: .customLong("no-agents"), help: "Do not start an upkeep-agent on each node.")
    var noAgents = false

    @Option(name: .customLong("ready-timeout"), help: "Seconds to wait for every node to be Ready.")
    var readyTimeoutSeconds = 90

    @Option(name: .customLong("node-grace"), help: "Seconds without a heartbeat before a node turns NotReady (node-monitor-grace-period).")
    var nodeGraceSeconds = 20.0

    @Option(name: .customLong("rebuild-seconds"), help: "Seconds a returning Longhorn replica rebuilds before its volume is healthy again.")
    var rebuildSeconds = 10.0

    // Hidden (`--help-hidden` shows them; docs/sandbox.md lists them): `upkeep demo` and `upkeep rehearse` set them, and
    // the help and usage lines `up` has always printed stay as they were.
    @Flag(name: .long, help: ArgumentHelp("Enroll every node's agent with a bootstrap token through `upkeep join-server` and `upkeep-agent join` (DIR/pki then holds no agent key).",
                                          visibility: .hidden))
    var join = false

    @Option(name: .customLong("pod-start-seconds"),
            help: ArgumentHelp("Seconds a scheduled pod takes to turn Ready on a Ready node.", visibility: .hidden))
    var podStartSeconds = ModelTimings().podStartSeconds

    @Option(name: .customLong("pod-termination-seconds"),
            help: ArgumentHelp("Seconds a deleted or evicted pod takes to disappear.", visibility: .hidden))
    var podTerminationSeconds = ModelTimings().podTerminationSeconds

    @Option(name: .long, help: ArgumentHelp("Air-gapped nodes (comma-separated): their k3s takes its images from agent/images and is not Ready at a version whose images tarball is missing there.",
                                            valueName: "NODE,…", visibility: .hidden))
    var airgap: String?

    @Option(name: .long, help: ArgumentHelp("Start as the twin of the cluster captured in FILE (written by `upkeep rehearse --keep DIR`): its node names, roles, versions, labels, taints, cordons, workloads, pods' nodes, disruption budgets, Longhorn volumes and replicas (docs/rehearse.md).",
                                            valueName: "FILE", visibility: .hidden))
    var twin: String?

    @Option(name: .customLong("offer-k3s"),
            help: ArgumentHelp("A k3s version the release server publishes besides those around the nodes' (repeatable; `upkeep rehearse` offers its target).",
                               valueName: "V", visibility: .hidden))
    var offerK3s: [String] = []

    @Option(name: .long, help: ArgumentHelp("Run the model's steps (pod start and termination, replica rebuild, snapshots) N times faster.",
                                            valueName: "N", visibility: .hidden))
    var speed = 1.0

    var airgapNodes: [String]? {
        airgap.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
    }

    /// The cluster to start: generated from the counts, or the twin of `--twin FILE`.
    func clusterSpec() throws -> ClusterSpec {
        var spec = ClusterSpec(servers: servers, agents: agents, volumes: volumes, replicas: replicas, k3sVersion: k3sVersion)
        if let twin {
            guard let data = FileManager.default.contents(atPath: twin) else {
                throw ValidationError("--twin \(twin) cannot be read: give the capture file `upkeep rehearse --keep DIR` wrote (DIR/capture.json)")
            }
            do { spec = ClusterSpec(twin: try ClusterCapture.decode(Array(data), source: twin)) } catch { throw ValidationError(error.description) }
        }
        if let bad = offerK3s.first(where: { !$0.hasPrefix("v") || !$0.contains("+k3s") }) {
            throw ValidationError("--offer-k3s \(bad): write a k3s version such as v1.31.4+k3s1")
        }
        spec.offeredK3sVersions = offerK3s.isEmpty ? nil : offerK3s
        return spec
    }

    func validate() throws {
        if twin != nil, servers != 1 || agents != 2 || volumes != 2 || replicas != 2 || k3sVersion != "v1.30.6+k3s1" {
            throw ValidationError("--twin takes nodes, volumes and versions from the capture; leave out --servers, --agents, --volumes, --replicas and --k3s-version")
        }
        guard speed >= 1, speed <= 1000 else { throw ValidationError("--speed must be between 1 and 1000") }
        let spec = try clusterSpec()
        if let problem = spec.problem { throw ValidationError(problem) }
        if join, noAgents { throw ValidationError("--join enrolls every node's agent; it cannot go with --no-agents") }
        guard (1...65535).contains(agentPort) else { throw ValidationError("--agent-port must be between 1 and 65535") }
        guard (1...3600).contains(readyTimeoutSeconds) else { throw ValidationError("--ready-timeout must be between 1 and 3600 seconds") }
        guard (1...3600).contains(nodeGraceSeconds) else { throw ValidationError("--node-grace must be between 1 and 3600 seconds") }
        guard (0...3600).contains(rebuildSeconds) else { throw ValidationError("--rebuild-seconds must be between 0 and 3600 seconds") }
        guard (0...3600).contains(podStartSeconds) else { throw ValidationError("--pod-start-seconds must be between 0 and 3600 seconds") }
        guard (0...3600).contains(podTerminationSeconds) else {
            throw ValidationError("--pod-termination-seconds must be between 0 and 3600 seconds")
        }
        if let unknown = airgapNodes?.first(where: { !spec.nodeNames.contains($0) }) {
            throw ValidationError("--airgap names \(unknown), which is not a node of this sandbox (\(spec.nodeNames.joined(separator: ", ")))")
        }
    }

    func run() async throws {
        let executable = SandboxCommandLine.executable
        let options = SandboxOptions(
            directory: directory.path,
            spec: try clusterSpec(),
            netns: netns, hostBinary: executable,
            agentBinary: noAgents ? nil : SandboxRunner.agentBinaryNextTo(executable: executable), agentPort: agentPort,
            timings: ModelTimings(nodeGraceSeconds: nodeGraceSeconds, podStartSeconds: podStartSeconds,
                                  podTerminationSeconds: podTerminationSeconds, rebuildSeconds: rebuildSeconds).scaled(by: speed),
            readyTimeoutSeconds: Double(readyTimeoutSeconds), airgapNodes: airgapNodes,
            controllerBinary: join ? SandboxRunner.controllerBinaryNextTo(executable: executable) : nil)
        let manifest = try await SandboxDaemon.launch(options)
        print("sandbox up in \(manifest.directory) (pid \(manifest.pid)): \(manifest.nodes.count) nodes Ready")
        print("  kubeconfig  \(manifest.kubeconfig)")
        print("  API         \(manifest.apiURL)")
        print("  releases    \(manifest.releaseURL)")
        print("  controller  \(manifest.directory)/upkeep.yaml")
        for node in manifest.nodes {
            print("  \(node.name) (\(node.role)) at \(node.address), agent \(node.agentAddress)")
        }
    }
}

