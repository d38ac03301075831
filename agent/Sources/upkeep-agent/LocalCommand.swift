import ArgumentParser
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NIOCore
import NIOPosix
import UpkeepAgent
import UpkeepAgentCore
import UpkeepProtocol

/// Operator commands that act on this node without a controller, through the same journal and
/// code paths as the daemon. They take the data-directory lock, so they refuse to run while
/// the daemon does.
struct LocalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "local",
        abstract: "Stage, install, roll back or commit on this node without a controller (the daemon must be stopped).",
        subcommands: [LocalStageCommand.self, LocalInstallCommand.self, LocalRollbackCommand.self, LocalCommitCommand.self])
}

/// Options every local operation takes.
struct LocalOperationOptions: ParsableArguments {
    @OptionGroup var config: ConfigOptions
    @Option(help: "The operation id; repeating a finished id prints its recorded result and does nothing.")
    var operationID: String
    @Flag(help: "Print the recorded outcome as JSON.")
    var json = false

    /// The protocol's rule for operation ids (PROTOCOL.md), so an id the controller could never
    /// send is not recorded in the journal either.
    func validate() throws {
        guard OperationID(rawValue: operationID) != nil else {
            throw ValidationError("--operation-id \"\(operationID.prefix(140))\" is not \(OperationID.format)")
        }
    }

    /// Starts the service (resolving the journal), runs `body`, prints the outcome.
    func perform(_ body: (AgentService) async throws -> OperationOutcome) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let environment = try config.environment(group: group)
        let outcome: OperationOutcome
        do {
            let service = try await AgentService.start(environment)
            outcome = try await body(service)
        } catch let failure as AgentFailure {
            // The node refused the operation: not a usage error (no usage text, exit 1), and
            // said in the operator's words, without the protocol's error code.
            try? await group.shutdownGracefully()
            throw LocalRefusal(message: failure.message)
        } catch let rejection as UpgradeMachine.Rejection {
            try? await group.shutdownGracefully()
            throw LocalRefusal(message: rejection.message)
        }
        try? await group.shutdownGracefully()
        if json {
            try ReportFormat.printJSON(outcome)
        } else {
            print(ReportFormat.outcome(operationID, outcome), terminator: "")
        }
        if outcome.state != .succeeded { throw ExitStatus.negative }
    }
}

/// A local operation the node refused (exit 1, "Error: " and the message on stderr).
struct LocalRefusal: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

struct LocalStageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stage", abstract: "Stage a k3s binary from a file, verifying its sha256.")
    @OptionGroup var options: LocalOperationOptions
    @Option(help: "The k3s binary to stage.") var file: String
    @Option(help: "Its expected sha256 (from the release's sha256sum file).") var sha256: String
    @Option(help: "The version it must report (k3s --version).") var k3sVersion: String

    func run() async throws {
        let path = file
        let size = try FileSystem.fileStatus(path).st_size
        let reader = try FileSystem.Chunks(path: path)
        try await options.perform { service in
            try await service.stage(operationID: options.operationID, sha256: sha256, bytes: Int64(size), k3sVersion: k3sVersion,
                                    next: { try reader.next().map(Array.init) })
        }
    }
}

struct LocalInstallCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "install", abstract: "Install a staged k3s binary, reverting when it does not become healthy.")
    @OptionGroup var options: LocalOperationOptions
    @Option(help: "The staged binary's sha256.") var sha256: String
    @Option(help: "How long the probes may take to pass after the restart.") var healthTimeoutSeconds = 300
    @Option(help: "How long the watchdog waits for `local commit` before checking health itself.") var watchdogTimeoutSeconds = 1800

    func run() async throws {
        try await options.perform { service in
            try await service.install(operationID: options.operationID, sha256: sha256, healthTimeoutMs: Int64(healthTimeoutSeconds) * 1000,
                                      watchdogTimeoutMs: Int64(watchdogTimeoutSeconds) * 1000)
        }
    }
}

struct LocalRollbackCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rollback", abstract: "Put the kept previous binary (or a staged one) back.")
    @OptionGroup var options: LocalOperationOptions
    @Option(help: "A staged binary's sha256 instead of the kept previous one.") var toSHA256: String?
    @Option(help: "How long the probes may take to pass after the restart.") var healthTimeoutSeconds = 300

    func run() async throws {
        try await options.perform { service in
            try await service.rollback(operationID: options.operationID, toSHA256: toSHA256, healthTimeoutMs: Int64(healthTimeoutSeconds) * 1000)
        }
    }
}

struct LocalCommitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "commit", abstract: "End the watchdog of an install: the new version stays.")
    @OptionGroup var options: LocalOperationOptions
    @Option(help: "The install's operation id.") var installOperationID: String

    func run() async throws {
        try await options.perform { service in
            try await service.commit(operationID: options.operationID, installOperationID: installOperationID)
        }
    }
}
