import Logging
import UpkeepCore
import UpkeepKube
import UpkeepPOSIX

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What the service works with, built once from the configuration.
public struct AgentEnvironment: Sendable {
    public var config: AgentConfig
    public var unit: String
    public var store: ArtifactStore
    public var systemctl: Systemctl
    public var probes: HealthProbes
    public var logger: Logger
    /// Wall-clock time (Unix milliseconds), so the watchdog deadline survives restarts.
    public var clock: @Sendable () -> Instant
    /// The Kubernetes API, for cordon, drain, uncordon and the node-Ready probe.
    public var kube: KubeAccess
    /// Called when the journal cannot be written: the agent must stop rather than act unrecorded.
    public var fatal: @Sendable (String) -> Void
    /// The agent's bounds reached: logged, rate-limited, and counted in `config.metricsTextfile`.
    public var limits: AgentLimits

    public init(config: AgentConfig, unit: String, store: ArtifactStore, systemctl: Systemctl, probes: HealthProbes,
                kube: KubeAccess, logger: Logger, clock: @escaping @Sendable () -> Instant = { Instant.wallClockNow() },
                fatal: @escaping @Sendable (String) -> Void = AgentEnvironment.exitOnFatal, limits: AgentLimits? = nil) {
        self.config = config
        self.unit = unit
        self.store = store
        self.systemctl = systemctl
        self.probes = probes
        self.kube = kube
        self.logger = logger
        self.clock = clock
        self.fatal = fatal
        self.limits = limits ?? AgentLimits(textfile: config.resolvedMetricsTextfile, logger: logger)
    }

    public var isServer: Bool { unit == "k3s" }
    /// k3s's images directory and the tarballs kept aside for a revert.
    public var images: AirgapImages { AirgapImages(k3sDataDir: config.k3sDataDir, dataDir: config.dataDir) }
    /// k3s on this node imports its images from `images.directory` (configured, or detected).
    public var airgapped: Bool { images.inUse(configured: config.airgapImages) }
    /// k3s's role on this node, from the unit that runs it.
    public var role: UpkeepCore.NodeRole { isServer ? .server : .agent }

    public static let exitOnFatal: @Sendable (String) -> Void = { message in
        StderrLogHandler(label: "upkeep-agent", level: .critical).log(event: LogEvent(level: .critical, message: "\(message)", metadata: nil,
                                                                                         source: "UpkeepAgent", file: #fileID, function: #function, line: #line))
        exit(70)
    }

    /// Returns at `instant` by `clock` (at once when that has passed).
    func sleep(until instant: Instant) async {
        let waitMs = instant.milliseconds(since: clock())
        if waitMs > 0 { try? await Task.sleep(for: .milliseconds(waitMs)) }
    }
}
