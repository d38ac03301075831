import ArgumentParser
@preconcurrency import Dispatch
import NIOCore
import NIOPosix
import Logging
import UpkeepAgent
import UpkeepProtocol

#if canImport(Glibc)
import Glibc
#endif

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the agent daemon (the default). Tells systemd READY=1 once the journal is resolved.")

    @OptionGroup var options: ConfigOptions

    func run() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let environment = try options.environment(group: group)
        let logger = environment.logger
        let service = try await AgentService.start(environment)
        let server = try await AgentServer.start(service: service, group: group, logger: logger)
        logger.notice("serving controllers on \(server.localAddress)")
        let notifier = SystemdNotifier.fromProcessEnvironment()
        let daemon = AgentDaemon(service: service, notifier: notifier, logger: logger)
        try await daemon.run(until: TerminationSignal.wait())
        await server.shutdown()
        try? await group.shutdownGracefully()
    }
}

/// SIGTERM or SIGINT, delivered once through Dispatch.
enum TerminationSignal {
    static func wait() -> @Sendable () async -> Int32 {
        let stream = AsyncStream<Int32> { continuation in
            let sources = [SIGTERM, SIGINT].map { number in
                signal(number, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
                source.setEventHandler { continuation.yield(number) }
                source.resume()
                return source
            }
            continuation.onTermination = { _ in sources.forEach { $0.cancel() } }
        }
        return {
            for await number in stream { return number }
            return SIGTERM
        }
    }
}
