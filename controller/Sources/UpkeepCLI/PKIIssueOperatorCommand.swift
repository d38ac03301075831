import ArgumentParser
import UpkeepPKI

/// `upkeep pki issue operator NAME --dir DIR`.
struct PKIIssueOperator: PKIIssueRoleCommand {
    static let role = PeerRole.operator

    static let configuration = CommandConfiguration(
        commandName: "operator",
        abstract: "Issue a certificate for a person reading `upkeep serve`'s status API from another machine (identity upkeep://operator/NAME).",
        discussion: "It opens `upkeep serve`'s /v1/ and /metrics when serve listens beyond loopback (docs/serve.md); agents refuse it."
    )

    @Argument(help: ArgumentHelp("Who holds it, e.g. alice or grafana.", valueName: "NAME"))
    var name: String

    @OptionGroup var options: PKIIssueOptions
}
