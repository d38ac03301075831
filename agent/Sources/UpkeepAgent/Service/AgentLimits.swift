import Logging
import Synchronization
import UpkeepCore
import UpkeepHTTP
import UpkeepProtocol

/// The agent's own bounds (its HTTP client counts its own, `UpkeepHTTP.ClientLimit`), as
/// `AgentLimits` counts them.
public enum AgentLimit: String, CaseIterable, Hashable, Sendable {
    /// `DatastoreRestore.timeoutSeconds` (600 s): `k3s server --cluster-reset` ran that long and
    /// was stopped, so the restore failed.
    case clusterReset = "cluster_reset_timeout"
    /// `AddressAnnouncement.attemptsMax` (10 tries over about 2.5 minutes), or the child's time
    /// bound above them: the agent's Node was not annotated with its address this start.
    case announcement = "announcement_attempts"
    /// The drain's `timeoutSeconds` passed while a pod's eviction was still refused (429, a
    /// PodDisruptionBudget): its retries were given up and the drain failed (counted per pod; each
    /// retry is routine and only a progress event).
    case evictionRetries = "eviction_retries"
    /// `DNSMessage.udpBytesMax` (512): the cluster DNS answered `clusterDNS`'s query with a
    /// longer datagram, which RFC 1035 (section 4.2.1) does not allow over UDP without EDNS(0);
    /// the answer was not read and the request answered that it was too long.
    case dnsAnswerBytes = "dns_answer_bytes"
    /// A `reachPeers` request's deadline came before every peer was tried (`PeerReach`): the
    /// rest were answered untried.
    case reachPeersDeadline = "reach_peers_deadline"
}

/// Makes each bound the agent reaches visible: a log line, at most one per bound a minute
/// (`LimitLog`, as the HTTP client's bounds), and a counter in a Prometheus text file that
/// node_exporter's textfile collector reads (`metrics.textfile` in agent.yaml):
///
///     upkeep_agent_limit_reached_total{limit="cluster_reset_timeout"} 1
///     upkeep_agent_limit_reached_total{limit="handshakes_per_source"} 1093
///     upkeep_agent_refused_total{reason="tls_refused"} 3
///     upkeep_agent_tls_handshakes_total{result="completed"} 12
///
/// The protocol server's bounds (`ProtocolServerLimit`: its TLS handshake budget, connection
/// limit, …) are counted in `server`, beside the agent's own; its refusals of peers (a refused
/// certificate, a protocol violation) are the second metric; the bounds its HTTP clients reached
/// (`HTTPClient.processLimits`: probes, the Kubernetes API, etcd) the third; how the server's
/// TLS handshakes ended (`handshakes`: completed, failed, displaced) the fourth.
///
/// The file is written at start (every bound at 0) and after each count, beside its name and
/// renamed over it, mode 0644; the server's counts, which a flood of connections raises many
/// times a second, at most once per `writeIntervalSeconds`. The counts start at 0 with each
/// agent process, as a counter does. A file that cannot be written is logged (once per bound
/// reached) and never stops the agent.
public final class AgentLimits: Sendable {
    public static let metricName = "upkeep_agent_limit_reached_total"
    public static let refusalMetricName = "upkeep_agent_refused_total"
    public static let httpClientMetricName = "upkeep_agent_http_client_limit_reached_total"
    public static let handshakeMetricName = "upkeep_agent_tls_handshakes_total"

    public let textfile: String
    /// The protocol server's bounds and refusals (`ProtocolServer.bind(limits:)`).
    public let server: LimitLog<ProtocolServerLimit>
    /// How the protocol server's TLS handshakes ended (`ProtocolServer.bind(handshakes:)`).
    public let handshakes = LimitTally<HandshakeOutcome>()
    public let writeIntervalSeconds: Double
    private let log: LimitLog<AgentLimit>
    private let logger: Logger
    private let relay: WriteRelay

    public init(textfile: String, logger: Logger, intervalSeconds: Double = 60, writeIntervalSeconds: Double = 1) {
        self.textfile = textfile
        self.logger = logger
        self.writeIntervalSeconds = writeIntervalSeconds
        log = LimitLog(logger: logger, intervalSeconds: intervalSeconds)
        let relay = WriteRelay()
        self.relay = relay
        server = LimitLog(logger: logger, intervalSeconds: intervalSeconds, counted: { _ in relay.countedSince() })
        relay.owner.withLock { $0 = Owner(limits: self) }
        handshakes.observe { relay.countedSince() }
        HTTPClient.processLimits.observe { relay.countedSince() }
        ProcessRunner.limits.observe { relay.countedSince() }
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
        let server = server.counts
        for (limit, count) in server where !limit.isRefusal { text += "\(Self.metricName){limit=\"\(limit.rawValue)\"} \(count)\n" }
        for (limit, count) in ProcessRunner.limits.counts { text += "\(Self.metricName){limit=\"\(limit.rawValue)\"} \(count)\n" }
        text += "# HELP \(Self.refusalMetricName) Connections the agent refused: a TLS handshake it refused, or a protocol violation (docs/agent.md, \"Bounds\").\n"
            + "# TYPE \(Self.refusalMetricName) counter\n"
        for (limit, count) in server where limit.isRefusal { text += "\(Self.refusalMetricName){reason=\"\(limit.rawValue)\"} \(count)\n" }
        text += "# HELP \(Self.httpClientMetricName) Times the agent's HTTP clients (probes, Kubernetes API, etcd) reached a bound (docs/http.md, \"Client bounds\").\n"
            + "# TYPE \(Self.httpClientMetricName) counter\n"
        for (limit, count) in HTTPClient.processLimits.counts {
            text += "\(Self.httpClientMetricName){limit=\"\(limit.rawValue)\"} \(count)\n"
        }
        text += "# HELP \(Self.handshakeMetricName) TLS handshakes at the agent's port by how they ended: completed, failed (refused, timed out, closed), displaced (docs/metrics.md).\n"
            + "# TYPE \(Self.handshakeMetricName) counter\n"
        for (result, count) in handshakes.counts { text += "\(Self.handshakeMetricName){result=\"\(result.rawValue)\"} \(count)\n" }
        return text
    }

    /// The owner the server's counts write through; weak, as the owner holds the relay.
    private struct Owner: Sendable {
        weak var limits: AgentLimits?
    }

    /// Writes the server's counts at most once per `writeIntervalSeconds`: the first count
    /// after a quiet interval at once, later ones by one write at the end of the interval.
    private final class WriteRelay: Sendable {
        let owner = Mutex<Owner?>(nil)
        private let pending = Mutex<(scheduled: Bool, lastWrite: ContinuousClock.Instant?)>((false, nil))

        func countedSince() {
            guard let limits = owner.withLock({ $0?.limits }) else { return }
            let interval = Duration.milliseconds(Int64(max(0, limits.writeIntervalSeconds) * 1000))
            let now = ContinuousClock.now
            let delay: Duration? = pending.withLock { state in
                if state.scheduled { return nil }
                if let last = state.lastWrite, now - last < interval {
                    state.scheduled = true
                    return interval - (now - last)
                }
                state.lastWrite = now
                return .zero
            }
            guard let delay else { return }
            if delay == .zero {
                limits.write()
                return
            }
            Task { [weak limits] in
                try? await Task.sleep(for: delay)
                self.pending.withLock { $0 = (false, ContinuousClock.now) }
                limits?.write()
            }
        }
    }
}
