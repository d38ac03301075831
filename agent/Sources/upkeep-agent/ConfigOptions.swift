import UpkeepYAML
import ArgumentParser
import NIOCore
import NIOPosix
import UpkeepAgent

/// `--config PATH`, shared by every subcommand that reads the node's configuration.
struct ConfigOptions: ParsableArguments {
    @Option(name: .long, help: "The agent's configuration file.")
    var config: String = AgentConfig.defaultPath

    func load() throws -> AgentConfig { try Self.load(path: config) }

    /// The configuration and the service environment built from it, on a one-thread event loop.
    func environment(group: any EventLoopGroup) throws -> AgentEnvironment { try Self.environment(path: config, group: group) }

    static func load(path: String) throws -> AgentConfig {
        do {
            return try ConfigLoader.load(path: path)
        } catch {
            throw ValidationError(error.description)
        }
    }

    static func environment(path: String, group: any EventLoopGroup) throws -> AgentEnvironment {
        let config = try load(path: path)
        do {
            return try AgentBootstrap.environment(config: config, group: group, logger: AgentBootstrap.logger(level: config.logLevel))
        } catch {
            throw ValidationError(error.description)
        }
    }
}

/// Exit codes beyond ArgumentParser's: 1 means "done, but the answer is no" (unhealthy, failed).
enum ExitStatus {
    static let negative = ExitCode(1)
}
