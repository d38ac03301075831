import ArgumentParser
import UpkeepAgent

struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "version", abstract: "Print the agent's version.")

    func run() {
        print("upkeep-agent \(AgentVersion.current)")
    }
}
