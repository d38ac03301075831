import ArgumentParser
import Foundation

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

/// The directory of the running `upkeep` executable, where SwiftPM also puts
/// `upkeep-sandbox-host` and `upkeep-agent`.
enum SiblingExecutables {
    static var upkeep: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }
}
