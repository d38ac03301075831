import Logging
import UpkeepCore
import UpkeepHTTP

/// The agent's own bounds (its HTTP client counts its own, `UpkeepHTTP.ClientLimit`), as
/// `AgentLimits` counts them.
public enum AgentLimit: String, CaseIterable, Hashable, Sendable {
    /// `DatastoreRestore.timeoutSeconds` (600 s): `k3s server --cluster-reset` ran that long and
    /// was stopped, so the restore failed.
    case clusterReset = "cluster_reset_timeout"
    /// `AddressAnnouncement.attemptsMax` (10 tries over about 2.5 minutes), or the child's time
    /// bound above them: the agent's Node was not annotated with its address this start.
    case announcement = "announcement_attempts"
}

/// Makes each bound the agent reaches visible: a log line, at most one per bound a minute
/// (`LimitLog`, as the HTTP client's bounds), and a counter in a Prometheus text file that
/// node_exporter's textfile collector reads (`metrics.textfile` in agent.yaml):
///
///     upkeep_agent_limit_reached_total{limit="cluster_reset_timeout"} 1
///
/// The file is written at start (every bound at 0) and after each count, beside its name and
/// renamed over it, mode 0644. The counts start at 0 with each agent process, as a counter does.
/// A file that cannot be written is logged (once per bound reached) and never stops the agent.
public final class AgentLimits: Sendable {
    public static let metricName = "upkeep_agent_limit_reached_total"

    public let textfile: String
    private let log: LimitLog<AgentLimit>
    private let logger: Logger

    public init(textfile: String, logger: Logger, intervalSeconds: Double = 60) {
        self.textfile = textfile
        self.logger = logger
        log = LimitLog(logger: logger, intervalSeconds: intervalSeconds)
    }

    /// Counts `limit`, logs `detail` (rate-limited) and writes the counts.
    public func record(_ limit: AgentLimit, _ detail: @autoclosure () -> String) {
        log.record(limit, detail())
        write()
    }

    public func count(_ limit: AgentLimit) -> Int { log.count(limit) }

    /// Writes the counts now (at start: every bound at 0).
    public func write() {
        do {
            try FileSystem.makeDirectories(PathName.directory(textfile), mode: 0o755)
            try FileSystem.writeAtomically(Array(exposition.utf8), to: textfile, mode: 0o644)
        } catch {
            logger.warning("could not write the agent's metrics to \(textfile) (set metrics.textfile in agent.yaml): \(error)")
        }
    }

    /// The counts in the Prometheus text format.
    public var exposition: String {
        var text = "# HELP \(Self.metricName) Times the agent reached one of its bounds (docs/agent.md, \"Bounds\").\n"
            + "# TYPE \(Self.metricName) counter\n"
        for (limit, count) in log.counts { text += "\(Self.metricName){limit=\"\(limit.rawValue)\"} \(count)\n" }
        return text
    }
}
