import Logging

/// The daemon's lifetime around an `AgentService`: READY=1 once started, WATCHDOG=1 at half the
/// interval systemd asks for (only while the service actor answers), STOPPING=1 on a signal.
public struct AgentDaemon: Sendable {
    public let service: AgentService
    public let notifier: SystemdNotifier
    public let logger: Logger

    public init(service: AgentService, notifier: SystemdNotifier, logger: Logger) {
        self.service = service
        self.notifier = notifier
        self.logger = logger
    }

    /// Runs until `stop` returns (a termination signal).
    public func run(until stop: @escaping @Sendable () async -> Int32) async throws {
        try? notifier.notify("READY=1\nSTATUS=serving")
        logger.notice("upkeep-agent \(AgentVersion.current) ready", metadata: ["node": "\(service.environment.config.nodeName)"])
        let pinger: Task<Void, Never>? = notifier.watchdogIntervalUs.map { interval in
            let notifier = notifier
            let service = service
            return Task {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .microseconds(Int64(interval / 2)))
                    guard await service.alive() else { continue }
                    try? notifier.notify("WATCHDOG=1")
                }
            }
        }
        let number = await stop()
        logger.notice("signal \(number): stopping")
        try? notifier.notify("STOPPING=1")
        pinger?.cancel()
        await service.close()
    }
}
