import ArgumentParser

/// `upkeep token`: bootstrap tokens with which nodes enroll (`upkeep-agent join`, docs/enrollment.md).
struct TokenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Create, list and revoke the bootstrap tokens nodes join with.",
        subcommands: [TokenCreateCommand.self, TokenListCommand.self, TokenRevokeCommand.self])
}
