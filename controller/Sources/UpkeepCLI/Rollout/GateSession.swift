import ArgumentParser
import Foundation
import UpkeepCore
import UpkeepFleet
import UpkeepHTTP
import UpkeepKube
import UpkeepPKI
import UpkeepRollout
import UpkeepTLS
import UpkeepYAML

/// The drain flags of `apply`, kubectl drain's options under the same names where they cannot be
/// mistaken for something else (https://kubernetes.io/docs/reference/kubectl/generated/kubectl_drain/).
/// Each overrides its field of `policy.drain`.
struct DrainFlags: ParsableArguments {
    @Option(name: .customLong("drain-timeout"), help: ArgumentHelp("Bound on each node's drain: 90s, 15m (default: policy.drainTimeoutSeconds).",
                                                                   valueName: "DURATION"))
    var timeout: String?

    @Option(name: .customLong("drain-grace-period"), help: ArgumentHelp("Seconds each drained pod gets to stop, over its own terminationGracePeriodSeconds (kubectl --grace-period).",
                                                                        valueName: "SECONDS"))
    var gracePeriod: Int?

    @Option(name: .customLong("drain-pod-selector"), help: ArgumentHelp("Drain only pods matching this label selector (kubectl --pod-selector).",
                                                                         valueName: "SELECTOR"))
    var podSelector: String?

    @Flag(name: .customLong("delete-emptydir-data"), inversion: .prefixedNo,
          help: "Drain pods that use emptyDir volumes, losing that data (kubectl --delete-emptydir-data); without it such a pod refuses the drain (default: policy.drain.deleteEmptyDirData).")
    var deleteEmptyDirData: Bool?

    @Option(name: .customLong("skip-wait-for-delete-timeout"),
            help: ArgumentHelp("Do not wait for a pod more than this many seconds past its deletionTimestamp (kubectl --skip-wait-for-delete-timeout).",
                               valueName: "SECONDS"))
    var skipWaitForDeleteTimeout: Int?

    @Flag(name: .customLong("disable-eviction"), help: "Delete pods instead of evicting them: PodDisruptionBudgets are not consulted (kubectl --disable-eviction).")
    var disableEviction = false

    func validate() throws {
        if let timeout, (DurationText.seconds(timeout).map { !(1...604_800).contains($0) } ?? true) {
            throw ValidationError("--drain-timeout \(timeout): write a duration of 1s to 7d, e.g. 90s, 15m")
        }
        if let gracePeriod, !(0...86_400).contains(gracePeriod) { throw ValidationError("--drain-grace-period must be 0...86400") }
        if let skipWaitForDeleteTimeout, !(1...86_400).contains(skipWaitForDeleteTimeout) {
            throw ValidationError("--skip-wait-for-delete-timeout must be 1...86400")
        }
        if let podSelector {
            do { _ = try LabelSelector.parse(podSelector) } catch { throw ValidationError("--drain-pod-selector \(podSelector): \(error)") }
        }
    }

    /// `policy` with these flags over `policy.drain` and its timeout.
    func apply(to policy: inout RolloutPolicy) {
        var drain = policy.drain ?? DrainPolicy()
        if let gracePeriod { drain.gracePeriodSeconds = gracePeriod }
        if let podSelector { drain.podSelector = podSelector }
        if let deleteEmptyDirData { drain.deleteEmptyDirData = deleteEmptyDirData }
        if let skipWaitForDeleteTimeout { drain.skipWaitForDeleteTimeoutSeconds = skipWaitForDeleteTimeout }
        if disableEviction { drain.disableEviction = true }
        policy.drain = drain
        if let seconds = timeout.flatMap(DurationText.seconds) { policy.drainTimeoutSeconds = seconds }
    }
}

/// The configured gates, read with the session's API client, its agents and (for Prometheus)
/// an HTTP client of their own: the rollout's `GateReader`, and the look `plan` and `apply`
/// take before anything starts.
struct GateSession {
    let reader: ClusterGateReader
    private let prometheus: HTTPClient?

    init(session: ClusterSession, fleet: AgentFleet) throws {
        let settings = session.config.gates
        if let gate = settings.prometheus {
            do {
                prometheus = try HTTPClient.oneShot(caFile: gate.caFile, timeoutSeconds: gate.timeoutSeconds, responseBytesMax: 16 << 20)
            } catch {
                throw CommandFailure(code: RolloutExitCode.usage, message: "gates.prometheus.caFile: \(error)")
            }
        } else {
            prometheus = nil
        }
        reader = ClusterGateReader(settings: settings, kube: session.kube, fleet: fleet, http: prometheus)
    }

    func close() async { await prometheus?.shutdown() }

    /// Reads every configured gate once, as the first wave's gate would.
    static func look(_ session: ClusterSession, reading: FleetReading) async throws -> GateReport? {
        let kinds = session.config.rollout.gates?.kinds ?? []
        guard !kinds.isEmpty else { return nil }
        let fleet = try await session.fleet(for: reading)
        let gates = try GateSession(session: session, fleet: fleet)
        let etcd = reading.nodes.map(\.node).filter { $0.role == .server && $0.etcd }.map(\.name)
        let report = await gates.reader.read(GateQuestion(kinds: kinds, etcdNodes: etcd))
        await gates.close()
        return report
    }

    /// The look as `plan` and `apply` print it, saying what a hold would do.
    static func text(_ report: GateReport, policy: GatePolicy, firstWave: [String]) -> String {
        var text = "gates (read now; before every wave):\n" + report.lines.map { "  \($0)\n" }.joined()
        let holds = report.holds(policy, going: firstWave)
        if !holds.isEmpty {
            text += "  they would hold the first wave now; a rollout waits up to \(DurationText.text(policy.holdTimeoutSeconds)) "
                + "(gates.holdTimeout) for them, then blocks\n"
        }
        return text
    }
}

extension HTTPClient {
    /// A client for one bounded question to one origin (a gate's Prometheus, a declared URL):
    /// no retry, `timeoutSeconds` for the connection and for the answer; https trusts the CAs
    /// of `caFile` (PEM) only, or the system's.
    static func oneShot(caFile: String?, timeoutSeconds: Int, responseBytesMax: Int) throws -> HTTPClient {
        let trust: TrustRoots = try caFile.map { .certificates(try Certificate.loadChain(pemFile: $0)) } ?? .system
        let seconds = Double(timeoutSeconds)
        return try HTTPClient(configuration: HTTPClient.Configuration(connectTimeoutSeconds: seconds, responseTimeoutSeconds: seconds,
                                                                      responseBytesMax: responseBytesMax, connectionsPerOriginMax: 1,
                                                                      retry: .never, userAgent: "upkeep/0.1"),
                              trust: trust)
    }
}
