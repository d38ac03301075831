import ArgumentParser
import UpkeepSandbox

/// `upkeep sandbox status`: the nodes as the API, the systemctl stand-in and the agents see them.
struct SandboxStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the sandbox's nodes: version and Ready from the API, k3s unit, agent, faults.",
        discussion: "Exits 0 when the sandbox runs, 1 when it does not."
    )

    @OptionGroup var directory: SandboxDirectoryOption

    func run() async throws {
        let (running, text) = try await SandboxControl.status(directory: directory.path)
        print(text)
        if !running { throw ExitCode(1) }
    }
}
