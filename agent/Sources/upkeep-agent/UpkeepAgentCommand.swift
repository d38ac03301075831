import ArgumentParser
import Dispatch
import UpkeepAgent

/// `upkeep-agent`: the node agent. Without a subcommand it runs the daemon.
struct UpkeepAgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upkeep-agent",
        abstract: "The Upkeep node agent: verified k3s binary swaps, health probes, drains and self-rollback.",
        version: AgentVersion.current,
        subcommands: [RunCommand.self, ProbeCommand.self, StatusCommand.self, VersionCommand.self, LocalCommand.self, JoinCommand.self, AnnounceCommand.self],
        defaultSubcommand: RunCommand.self)
}

/// The entry point is synchronous on purpose. An `async` main ends the main thread through
/// `dispatch_main`, whose `pthread_exit` unwinds the main thread's stack: the unwinder's binary
/// searches of `.eh_frame_hdr` and its reads of `.eh_frame` kept about 0.6 MiB of the daemon
/// resident for good (docs/agent.md, "Measurements"). Here the main thread parses the command
/// line, hands an async command to the concurrency runtime and sleeps until it finishes.
@main
enum AgentMain {
    static func main() {
        if let configPath = DaemonCommandLine.configPath(Array(CommandLine.arguments.dropFirst())) {
            if let error = waitFor({ try await RunCommand.daemon(configPath: configPath) }) { UpkeepAgentCommand.exit(withError: error) }
            return
        }
        let command: any ParsableCommand
        do {
            command = try UpkeepAgentCommand.parseAsRoot()
        } catch {
            UpkeepAgentCommand.exit(withError: error)
        }
        guard let asyncCommand = command as? any AsyncParsableCommand else {
            do {
                var command = command
                try command.run()
            } catch {
                UpkeepAgentCommand.exit(withError: error)
            }
            return
        }
        let handOver = HandOver(command: asyncCommand)
        if let error = waitFor({ var command = handOver.command; try await command.run() }) { UpkeepAgentCommand.exit(withError: error) }
    }

    /// Runs `work` on the concurrency runtime while the main thread waits; its error, if any.
    private static func waitFor(_ work: @escaping @Sendable () async throws -> Void) -> (any Error)? {
        let finished = DispatchSemaphore(value: 0)
        let outcome = Outcome()
        Task.detached {
            do { try await work() } catch { outcome.error = error }
            finished.signal()
        }
        finished.wait()
        return outcome.error
    }

    /// The parsed command, moved once from the main thread to the task that runs it.
    private struct HandOver: @unchecked Sendable { let command: any AsyncParsableCommand }

    /// The command's error, written by the task before it signals and read after the wait.
    private final class Outcome: @unchecked Sendable { var error: (any Error)? }
}
