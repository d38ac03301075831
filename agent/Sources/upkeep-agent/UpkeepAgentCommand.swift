import ArgumentParser
import Dispatch
import UpkeepAgent

/// `upkeep-agent`: the node agent. Without a subcommand it runs the daemon.
struct UpkeepAgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upkeep-agent",
        abstract: "The Upkeep node agent: verified k3s binary swaps, health probes, drains and self-rollback.",
        version: AgentVersion.current,
        subcommands: [RunCommand.self, ProbeCommand.self, StatusCommand.self, VersionCommand.self, LocalCommand.self],
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
        let finished = DispatchSemaphore(value: 0)
        let outcome = Outcome()
        let handOver = HandOver(command: asyncCommand)
        Task.detached {
            var command = handOver.command
            do { try await command.run() } catch { outcome.error = error }
            finished.signal()
        }
        finished.wait()
        if let error = outcome.error { UpkeepAgentCommand.exit(withError: error) }
    }

    /// The parsed command, moved once from the main thread to the task that runs it.
    private struct HandOver: @unchecked Sendable { let command: any AsyncParsableCommand }

    /// The command's error, written by the task before it signals and read after the wait.
    private final class Outcome: @unchecked Sendable { var error: (any Error)? }
}
