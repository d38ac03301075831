import ArgumentParser
import UpkeepAgent

/// `upkeep-agent`: the node agent. Without a subcommand it runs the daemon.
@main
struct UpkeepAgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upkeep-agent",
        abstract: "The Upkeep node agent: verified k3s binary swaps, health probes, drains and self-rollback.",
        version: AgentVersion.current,
        subcommands: [RunCommand.self, ProbeCommand.self, StatusCommand.self, VersionCommand.self, LocalCommand.self],
        defaultSubcommand: RunCommand.self)
}
