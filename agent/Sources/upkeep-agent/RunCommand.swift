import ArgumentParser
import NIOCore
import NIOPosix
import Logging
import UpkeepAgent
import UpkeepCore
import UpkeepPKI
import UpkeepProtocol
import UpkeepPOSIX

#if canImport(Glibc)
import Glibc
#endif

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the agent daemon (the default). Tells systemd READY=1 once the journal is resolved.")

    @OptionGroup var options: ConfigOptions

    func run() async throws { try await Self.daemon(configPath: options.config) }

    /// The daemon itself; `AgentMain` calls it directly for the command line systemd gives.
    static func daemon(configPath: String) async throws {
        // Before any OpenSSL use: the idle daemon does not keep OpenSSL's error strings.
        OpenSSLErrorStrings.loadOnFirstError()
        StreamAllocator.configure()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let environment = try ConfigOptions.environment(path: configPath, group: group)
        let logger = environment.logger
        let service = try await AgentService.start(environment)
        let server = try await AgentServer.start(service: service, group: group, logger: logger, configuration: environment.config.server)
        logger.notice("serving controllers on \(server.localAddress)")
        // In a child process: its Kubernetes client does not stay in the idle daemon's memory.
        let port = server.port
        let announcing = Task { await AnnounceCommand.runChild(configPath: configPath, port: port, limits: environment.limits) }
        let notifier = SystemdNotifier.fromProcessEnvironment()
        let daemon = AgentDaemon(service: service, notifier: notifier, logger: logger)
        // Start-up's temporary allocations are not kept by the idle daemon (its trim threshold is high).
        StreamAllocator.returnFreeMemory()
        try await daemon.run(until: Signals.listen(for: [SIGTERM, SIGINT]))
        announcing.cancel()
        await server.shutdown()
        try? await group.shutdownGracefully()
    }
}
