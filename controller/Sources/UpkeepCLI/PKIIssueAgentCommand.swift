import ArgumentParser
import UpkeepPKI

/// `upkeep pki issue agent NODE --dir DIR`.
struct PKIIssueAgent: PKIIssueRoleCommand {
    static let role = PeerRole.agent

    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Issue the certificate for the agent on NODE (identity upkeep://agent/NODE)."
    )

    @Argument(help: ArgumentHelp("The Kubernetes node name.", valueName: "NODE"))
    var node: String

    @OptionGroup var options: PKIIssueOptions

    var name: String { node }
}
