import ArgumentParser
import Foundation
import UpkeepSandbox

/// `upkeep sandbox down`: stops the sandbox (also one whose process was killed).
struct SandboxDown: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "down",
        abstract: "Stop the sandbox: its process, every node's k3s and agent, its network namespaces.",
        discussion: "Files in DIR stay (kubeconfig, pki, logs) unless --purge is given."
    )

    @OptionGroup var directory: SandboxDirectoryOption

    @Flag(name: .long, help: "Also remove DIR and everything in it.")
    var purge = false

    func run() async throws {
        let path = directory.path
        print(try await SandboxRunner.down(directory: path))
        if purge {
            guard FileManager.default.fileExists(atPath: path) else { return }
            guard FileManager.default.fileExists(atPath: SandboxDaemon.optionsFile(path)) else {
                throw ValidationError("\(path) does not look like a sandbox directory (no sandbox-options.json); not removing it")
            }
            try FileManager.default.removeItem(atPath: path)
            print("removed \(path)")
        }
    }
}
