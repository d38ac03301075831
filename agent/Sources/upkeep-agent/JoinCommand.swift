import ArgumentParser
import UpkeepAgent

/// `upkeep-agent join`: enrolls this node with a bootstrap token from `upkeep token create`
/// (docs/enrollment.md).
struct JoinCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "join",
        abstract: "Enroll this node: make its key here, get its certificate for a bootstrap token, write agent.yaml, start the agent.",
        discussion: "The CA is pinned by --ca-hash before the token is sent. Copy the whole command from 'upkeep token create'.")

    @Option(help: ArgumentHelp("The join server, as 'upkeep token create' printed it.", valueName: "HOST:PORT"))
    var controller: String

    @Option(help: ArgumentHelp("The bootstrap token.", valueName: "ID.SECRET"))
    var token: String

    @Option(name: .customLong("ca-hash"), help: ArgumentHelp("The cluster CA's public key hash.", valueName: "sha256:HEX"))
    var caHash: String

    @Flag(help: "Enroll again although this node holds an enrollment (a new key and certificate).")
    var force = false

    @Option(name: .customLong("node-name"), help: "The node's Kubernetes name (default: node-name in /etc/rancher/k3s/config.yaml, else the host name).")
    var nodeName: String?

    @Option(help: ArgumentHelp("Where the agent listens.", valueName: "HOST:PORT"))
    var listen = "0.0.0.0:9660"

    @Option(help: ArgumentHelp("The systemctl the agent uses (for k3s) and join uses to start it.", valueName: "PATH"))
    var systemctl = "/usr/bin/systemctl"

    @Option(name: .customLong("probe-host"), help: ArgumentHelp("Where k3s's health endpoints answer.", valueName: "HOST"))
    var probeHost = "127.0.0.1"

    @Option(name: .customLong("etcd-endpoint"), help: ArgumentHelp("Where a server's embedded etcd answers (for the etcd gate).", valueName: "URL"))
    var etcdEndpoint = EtcdConfig().endpoint

    @Option(name: .customLong("cluster-dns"), help: ArgumentHelp("The cluster DNS address this node resolves Service names through (k3s's --cluster-dns).",
                                                                  valueName: "IP[:PORT]"))
    var clusterDNS = "10.43.0.10"

    @Option(help: ArgumentHelp("The node's filesystem root (a sandbox node's directory).", valueName: "DIR"))
    var root = "/"

    @Flag(name: .customLong("no-start"), help: "Write the files but do not start the agent.")
    var noStart = false

    func validate() throws {
        guard ConfigLoader.clusterDNSAddress(clusterDNS) != nil else {
            throw ValidationError("--cluster-dns \(clusterDNS.prefix(100)): \(ConfigLoader.clusterDNSRule)")
        }
    }

    func run() async throws {
        var options = NodeEnrollment.Options(controller: controller, token: token, caHash: caHash)
        options.force = force
        options.nodeName = nodeName
        options.listen = listen
        options.systemctl = systemctl
        options.probeHost = probeHost
        options.etcdEndpoint = etcdEndpoint
        options.clusterDNS = clusterDNS
        options.root = root
        options.start = !noStart
        // A JoinError is printed as "Error: <what to do>" with exit status 1.
        let outcome = try await NodeEnrollment.join(options)
        print("node \(outcome.config.nodeName) enrolled: certificate valid until \(outcome.certificateNotAfter)")
        print("wrote \(outcome.configPath), \(outcome.config.certificateFile), \(outcome.config.keyFile) (0600), \(outcome.config.caFile)")
        print(noStart ? "start the agent with: systemctl enable --now \(NodeEnrollment.agentUnit)" : "started \(NodeEnrollment.agentUnit)")
    }
}
