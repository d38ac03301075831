import ArgumentParser
import Foundation

/// The command line `upkeep sandbox …` has always had, carried by this program so that the
/// production `upkeep` does not link the simulator (scripts/check-links): `upkeep sandbox ARGS`
/// runs `upkeep-sandbox ARGS`. The tree is the one the controller had, a root named `upkeep` (with
/// its version) whose one subcommand is `sandbox`, and `["sandbox"] + ARGS` is parsed against it,
/// so help, usage errors and exit codes read exactly as before (`Usage: upkeep sandbox up …`).
struct SandboxCommandLine: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upkeep",
        version: "0.1.0",  // upkeep's (controller/Sources/UpkeepCLI/Upkeep.swift): they ship together
        subcommands: [Sandbox.self]
    )

    /// The exit code for a usage error (unknown option, missing argument, invalid value), as `upkeep`'s.
    static let usageExitCode: Int32 = 2

    /// Runs `upkeep sandbox ARGS` and exits as every `upkeep` command does: 0 on success and for
    /// --help, 2 with the usage on stderr for usage errors (ArgumentParser's own is 64), 1 with
    /// "Error: ..." on stderr when the command itself fails.
    static func run(_ arguments: [String]) async -> Never {
        do {
            var command = try parseAsRoot([Sandbox.configuration.commandName ?? "sandbox"] + arguments)
            if var asyncCommand = command as? any AsyncParsableCommand { try await asyncCommand.run() } else { try command.run() }
            Foundation.exit(0)
        } catch where exitCode(for: error) == .validationFailure {
            FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
            Foundation.exit(usageExitCode)
        } catch {
            exit(withError: error)
        }
    }

    /// This program's own path (it is also every node's fake k3s and systemctl).
    static var executable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }
}

/// `upkeep sandbox`: a k3s cluster stand-in on this machine (docs/sandbox.md).
struct Sandbox: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sandbox",
        abstract: "Run a sandbox k3s cluster (simulated API, fake k3s nodes, release server, agents) on this machine.",
        discussion: "DIR holds kubeconfig, sandbox.json, upkeep.yaml, pki/, faults.json, nodes/<node>/ and sandbox.log. See docs/sandbox.md.",
        subcommands: [SandboxUp.self, SandboxStatus.self, SandboxFault.self, SandboxDown.self]
    )
}

/// `--dir DIR`, shared by every sandbox subcommand; made absolute.
struct SandboxDirectoryOption: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The sandbox's directory.", valueName: "DIR"))
    var dir: String

    var path: String {
        let absolute = dir.hasPrefix("/") ? dir : FileManager.default.currentDirectoryPath + "/" + dir
        return URL(fileURLWithPath: absolute).standardizedFileURL.path
    }
}
