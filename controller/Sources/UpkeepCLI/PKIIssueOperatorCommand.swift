import ArgumentParser
import UpkeepPKI

/// `upkeep pki issue operator NAME --dir DIR`.
struct PKIIssueOperator: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "operator",
        abstract: "Issue a certificate for a person reading `upkeep serve`'s status API from another machine (identity upkeep://operator/NAME).",
        discussion: "It opens `upkeep serve`'s /v1/ and /metrics when serve listens beyond loopback (docs/serve.md); agents refuse it."
    )

    @Argument(help: ArgumentHelp("Who holds it, e.g. alice or grafana.", valueName: "NAME"))
    var name: String

    @OptionGroup var options: PKIIssueOptions

    func validate() throws {
        _ = try identityArgument(.operator, name)
    }

    func run() throws {
        try options.issue(identityArgument(.operator, name))
    }
}
