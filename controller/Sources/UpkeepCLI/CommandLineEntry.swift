import ArgumentParser
import Foundation

extension Upkeep {
    /// The exit code for a usage error (unknown option, missing argument, invalid value).
    public static let usageExitCode: Int32 = 2

    /// Parses `arguments` (nil: the process's own), runs the command and returns the exit
    /// code: 0 on success and for --help/--version, 2 with the usage on stderr for usage
    /// errors, 1 with "Error: ..." on stderr when the command itself fails.
    public static func runReturningExitCode(_ arguments: [String]? = nil) async -> Int32 {
        do {
            let arguments = liftingRootConfig(arguments ?? Array(CommandLine.arguments.dropFirst()))
            // Every argument after `sandbox`, `--help` included, is the sandbox program's (Sandbox).
            if arguments.first == "sandbox" {
                try SandboxProgram.replaceProcess(arguments: Array(arguments.dropFirst()))
            } else if arguments.starts(with: ["help", "sandbox"]) {
                try SandboxProgram.replaceProcess(arguments: Array(arguments.dropFirst(2)) + ["--help"])
            }
            var command = try parseAsRoot(arguments)
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
            return 0
        } catch let failure as CommandFailure {
            // stdout is buffered when it is a file: what the command printed goes out first, so
            // an error after it stays after it when both go to one file.
            fflush(nil)
            FileHandle.standardError.write(Data("Error: \(failure.message)\n".utf8))
            return failure.code
        } catch {
            let code = exitCode(for: error)
            let message = fullMessage(for: error)
            if code == .success {
                if !message.isEmpty { print(message) }
                return 0
            }
            fflush(nil)
            if !message.isEmpty { FileHandle.standardError.write(Data((message + "\n").utf8)) }
            return code == .validationFailure ? usageExitCode : code.rawValue
        }
    }
}

extension Upkeep {
    /// `upkeep --config FILE <command> …` names the configuration for every command. The parser
    /// takes options only after the command's name, so a leading `--config` is moved into
    /// `UPKEEP_CONFIG`, which every command reads (docs/configuration.md).
    static func liftingRootConfig(_ arguments: [String]) -> [String] {
        var rest = arguments
        var path: String?
        if rest.first == "--config", rest.count >= 2 {
            path = rest[1]
            rest.removeFirst(2)
        } else if let first = rest.first, first.hasPrefix("--config=") {
            path = String(first.dropFirst("--config=".count))
            rest.removeFirst()
        }
        if let path { setenv("UPKEEP_CONFIG", path, 1) }
        return rest
    }
}
