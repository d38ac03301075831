import Logging
import NIOCore

/// The agent program's version.
public enum AgentVersion {
    public static let current = "0.1.0"
}

/// Builds the service's environment from a configuration: the resolved unit, the artifact
/// store, systemctl, the probes and the logger.
public enum AgentBootstrap {
    public static func environment(config: AgentConfig, group: any EventLoopGroup, logger: Logger,
                                   unitDirectories: [String] = UnitDetection.directories,
                                   readiness: (any NodeReadinessChecking)? = nil) throws(ConfigError) -> AgentEnvironment {
        let unit = try config.resolvedUnit(unitDirectories: unitDirectories)
        let systemctl = Systemctl(path: config.systemctl, unit: unit, timeoutSeconds: Double(config.systemctlTimeoutSeconds))
        let kube = KubeAccess(kubeconfigPath: config.resolvedKubeconfig(isServer: unit == "k3s"))
        let probes = HealthProbes(config: config.probes, nodeName: config.nodeName, isServer: unit == "k3s", systemctl: systemctl,
                                  group: group, readiness: readiness ?? KubeNodeReadiness(access: kube))
        return AgentEnvironment(config: config, unit: unit, store: ArtifactStore(dataDir: config.dataDir, livePath: config.k3sBinary),
                                systemctl: systemctl, probes: probes, kube: kube, logger: logger)
    }

    public static func logger(level: LogLevelName) -> Logger {
        var logger = Logger(label: "upkeep-agent") { label in StderrLogHandler(label: label, level: .trace) }
        logger.logLevel = Logger.Level(rawValue: level.rawValue) ?? .info
        return logger
    }
}
