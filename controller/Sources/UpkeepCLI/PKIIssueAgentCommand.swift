import ArgumentParser
import UpkeepPKI

/// `upkeep pki issue agent NODE --dir DIR`.
struct PKIIssueAgent: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Issue the certificate for the agent on NODE (identity upkeep://agent/NODE)."
    )

    @Argument(help: ArgumentHelp("The Kubernetes node name.", valueName: "NODE"))
    var node: String

    @OptionGroup var options: PKIIssueOptions

    func validate() throws {
        _ = try identityArgument(.agent, node)
    }

    func run() throws {
        try options.issue(identityArgument(.agent, node))
    }
}
