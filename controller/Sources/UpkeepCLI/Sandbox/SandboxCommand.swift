import ArgumentParser

/// `upkeep sandbox`: runs the sandbox program, `upkeep-sandbox`, with the same arguments
/// (docs/sandbox.md). That program carries the `up / status / fault / down` command line, so
/// help, output and exit codes are its own; `Upkeep.runReturningExitCode` hands it every argument
/// after `sandbox` (`--help` included) before this parser sees them. This entry lists the command
/// in `upkeep --help`.
struct Sandbox: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sandbox",
        abstract: "Run a sandbox k3s cluster (simulated API, fake k3s nodes, release server, agents) on this machine.",
        discussion: "Runs \(SandboxProgram.name), installed beside upkeep. See docs/sandbox.md."
    )

    @Argument(parsing: .captureForPassthrough, help: "up, status, fault or down, and their arguments.")
    var arguments: [String] = []

    func run() throws {
        try SandboxProgram.replaceProcess(arguments: arguments)
    }
}
