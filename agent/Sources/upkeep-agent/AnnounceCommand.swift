import ArgumentParser
import NIOPosix
import UpkeepAgent

#if canImport(Glibc)
import Glibc
#endif

/// `upkeep-agent announce`: annotates this node's Node with the agent's address
/// (`AddressAnnouncer`), then exits. The daemon runs it as a child at start, so that the
/// Kubernetes client's memory leaves with the child instead of staying resident in an idle agent
/// (docs/decisions/2026-12-07-agent-announces-its-address.md). Not listed in the help.
struct AnnounceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "announce",
        abstract: "Annotate this node's Node with the agent's address (upkeep.io/agent-address); the daemon runs it at start.",
        shouldDisplay: false)

    @OptionGroup var options: ConfigOptions

    @Option(help: "The port the agent listens on (default: listen.port from the configuration).")
    var port: Int?

    func run() async throws {
        let environment = try options.environment(group: MultiThreadedEventLoopGroup(numberOfThreads: 1))
        let parent = getppid()
        // Tries stop when the daemon that started this child is gone.
        let announcer = AddressAnnouncer(access: environment.kube, nodeName: environment.config.nodeName,
                                         listenAddress: environment.config.listenAddress, logger: environment.logger) { seconds in
            var left = seconds
            while left > 0, getppid() == parent {
                try? await Task.sleep(for: .milliseconds(Int64(min(left, 1) * 1000)))
                left -= 1
            }
        }
        guard await announcer.run(port: port ?? environment.config.listenPort) else { throw ExitStatus.negative }
    }

    /// The daemon's side: runs `announce` for `port` as a child (`AnnouncementChild`), passing
    /// what it printed (its log lines) to the daemon's stderr as they are, and counting a child
    /// that did not annotate the Node in `limits`. Cancelling the calling task stops the child.
    static func runChild(configPath: String, port: Int, limits: AgentLimits) async {
        await AnnouncementChild.run(executable: executablePath(), arguments: ["announce", "--config", configPath, "--port", "\(port)"],
                                    limits: limits, relay: relay)
    }

    /// This program, as the kernel started it.
    static func executablePath() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard count > 0 else { return CommandLine.arguments[0] }
        return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func relay(_ text: String) {
        guard !text.isEmpty else { return }
        var bytes = Array(text.utf8)
        if bytes.last != UInt8(ascii: "\n") { bytes.append(UInt8(ascii: "\n")) }
        bytes.withUnsafeBytes { _ = write(2, $0.baseAddress, $0.count) }
    }
}
