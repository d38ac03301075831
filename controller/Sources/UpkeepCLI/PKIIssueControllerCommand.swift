import ArgumentParser
import UpkeepPKI

/// `upkeep pki issue controller [NAME] --dir DIR`.
struct PKIIssueController: PKIIssueRoleCommand {
    static let role = PeerRole.controller

    static let configuration = CommandConfiguration(
        commandName: "controller",
        abstract: "Issue a controller certificate (identity upkeep://controller/NAME)."
    )

    @Argument(help: ArgumentHelp("The controller's name.", valueName: "NAME"))
    var name: String = PKIDirectory.defaultControllerName

    @OptionGroup var options: PKIIssueOptions
}
