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

struct ProbeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probe",
        abstract: "Run the node's health checks once and report them.",
        discussion: "Exit status 0 when every check passed, 1 otherwise.")

    @OptionGroup var options: ConfigOptions
    @Option(help: "Also require the node to report this k3s version (kubeletVersion).")
    var expectVersion: String?
    @Flag(help: "Print the report as JSON.")
    var json = false

    func run() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let environment = try options.environment(group: group)
        let report = await environment.probes.run(expectedK3sVersion: expectVersion)
        try? await group.shutdownGracefully()
        if json {
            try ReportFormat.printJSON(report)
        } else {
            print(ReportFormat.probe(report), terminator: "")
        }
        if !report.healthy { throw ExitStatus.negative }
    }
}
