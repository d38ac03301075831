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
import UpkeepCore

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Report the node's k3s binary, unit, staged artifacts and recent operations (offline: the daemon must be stopped).",
        discussion: "Reads the journal like a starting agent does, so an interrupted operation is resolved first.")

    @OptionGroup var options: ConfigOptions
    @Flag(help: "Print the status as JSON.")
    var json = false

    func run() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let environment = try options.environment(group: group)
        let service = try await AgentService.start(environment)
        _ = await service.settled(timeoutMs: 600_000)
        let status = await service.status()
        try? await group.shutdownGracefully()
        if json {
            try ReportFormat.printJSON(status)
            return
        }
        print("node:     \(status.nodeName) (\(status.isServer ? "server" : "agent"), \(status.arch))")
        print("k3s:      \(status.live?.k3sVersion ?? "unknown") at \(status.binaryPath) (sha256 \(status.live?.sha256 ?? "unreadable"))")
        print("unit:     \(status.unit) \(status.unitState.map { "\($0.activeState)/\($0.subState)" } ?? "unknown: \(status.unitError ?? "")")")
        print("free:     \(status.binaryFreeBytes) bytes beside the binary, \(status.dataFreeBytes) in \(status.dataDir)")
        for artifact in status.staged { print("staged:   \(artifact.k3sVersion) \(artifact.sha256) \(artifact.bytes) bytes") }
        if let watch = status.watch { print("watching: install \(watch.installID) until \(watch.deadline.milliseconds) (unix ms)") }
        for entry in status.recentOperations {
            print("op:       \(entry.id) \(entry.kind.rawValue) \(entry.outcome?.state.rawValue ?? "running") \(entry.outcome?.message ?? "")")
        }
    }
}
