import NIOCore
import NIOHTTP1
import UpkeepCore
import UpkeepHTTP
import UpkeepKube
import UpkeepProtocol
import UpkeepRollout

/// The gates of `upkeep.yaml` (`gates:`), as the reader needs them; docs/planning.md, "Gates".
public struct GateSettings: Equatable, Sendable {
    public struct Prometheus: Equatable, Sendable {
        /// The server's base URL; the alerts are `GET <url>/api/v1/alerts`.
        public var url: String
        /// Only alerts whose name this regular expression finds hold (kured's
        /// `--alert-filter-match-only`); nil: every firing alert.
        public var include: String?
        /// Alerts whose name this regular expression finds never hold (kured's `--alert-filter-regexp`).
        public var exclude: String?
        /// Bound on one read, connection included.
        public var timeoutSeconds: Int
        /// Trust only these CAs (PEM) for https; nil: the system's.
        public var caFile: String?

        public init(url: String, include: String? = nil, exclude: String? = nil, timeoutSeconds: Int = 10, caFile: String? = nil) {
            self.url = url
            self.include = include
            self.exclude = exclude
            self.timeoutSeconds = timeoutSeconds
            self.caFile = caFile
        }
    }

    public var prometheus: Prometheus?
    /// Label selectors of pods that hold every wave while one runs anywhere.
    public var podsAnywhere: [String]
    /// Label selectors of pods that hold a wave while one runs on a node of that wave.
    public var podsOnNode: [String]
    /// Ask the server agents for etcd health before every wave.
    public var etcd: Bool
    /// Bound on each agent's etcd answer (each member's health: a third of it).
    public var etcdTimeoutSeconds: Int

    public init(prometheus: Prometheus? = nil, podsAnywhere: [String] = [], podsOnNode: [String] = [], etcd: Bool = true,
                etcdTimeoutSeconds: Int = 10) {
        self.prometheus = prometheus
        self.podsAnywhere = podsAnywhere
        self.podsOnNode = podsOnNode
        self.etcd = etcd
        self.etcdTimeoutSeconds = etcdTimeoutSeconds
    }

    /// The gates these settings turn on.
    public var kinds: [GateKind] {
        var kinds: [GateKind] = []
        if prometheus != nil { kinds.append(.prometheus) }
        if !podsAnywhere.isEmpty || !podsOnNode.isEmpty { kinds.append(.blockingPods) }
        if etcd { kinds.append(.etcd) }
        return kinds
    }
}

/// Reads the configured gates for the rollout runtime (`GateReader`): Prometheus's alerts over
/// the project's HTTP client, blocking pods through the Kubernetes API, etcd health through the
/// server agents (`etcdHealth`, PROTOCOL.md). The gates are read at once, each bounded; one
/// that cannot be read is reported unread, never left out, so the engine holds on it.
public struct ClusterGateReader: GateReader {
    public let settings: GateSettings
    public let kube: KubeClient
    public let fleet: AgentFleet
    /// For Prometheus; nil when it is not configured.
    public let http: HTTPClient?

    /// Pods reported per read at most (the reason names five; the rest are counted).
    public static let podsMax = 50

    public init(settings: GateSettings, kube: KubeClient, fleet: AgentFleet, http: HTTPClient?) {
        self.settings = settings
        self.kube = kube
        self.fleet = fleet
        self.http = http
    }

    public func read(_ question: GateQuestion) async -> GateReport {
        async let prometheus = question.kinds.contains(.prometheus) ? readPrometheus() : nil
        async let pods = question.kinds.contains(.blockingPods) ? readBlockingPods() : nil
        async let etcd = question.kinds.contains(.etcd) ? readEtcd(question.etcdNodes) : nil
        return GateReport(prometheus: await prometheus, blockingPods: await pods, etcd: await etcd)
    }

    // MARK: - Prometheus

    /// `GET /api/v1/alerts` (https://prometheus.io/docs/prometheus/latest/querying/api/#alerts):
    /// firing alerts only (pending ones have not held their `for:` yet), filtered by name.
    func readPrometheus() async -> PrometheusReading {
        guard let prometheus = settings.prometheus, let http else { return .unreachable("gates.prometheus is not configured") }
        let url: HTTPURL
        do { url = try HTTPURL(prometheus.url).appending(path: "api/v1/alerts") } catch {
            return .unreachable("gates.prometheus.url: \(error)")
        }
        let response: HTTPResponse
        do {
            response = try await http.send(HTTPRequest(url: url, timeoutSeconds: Double(prometheus.timeoutSeconds)))
        } catch {
            return .unreachable("\(error)")
        }
        guard response.status == 200 else {
            return .unreachable("\(url.origin) answered \(response.status) to /api/v1/alerts")
        }
        guard let json = try? JSON.parse(bytes: response.body), json["status"]?.string == "success",
              let alerts = json[path: "data", "alerts"]?.array else {
            return .unreachable("\(url.origin) answered something that is not Prometheus's alerts API")
        }
        let firing = alerts.filter { $0["state"]?.string == "firing" }.compactMap { $0[path: "labels", "alertname"]?.string }
        return .firing(Self.filter(firing, include: prometheus.include, exclude: prometheus.exclude))
    }

    /// The names `include` finds (all, without it) that `exclude` does not find. Unanchored, as
    /// kured's filter: write `^…$` to match a whole name. A pattern that does not compile keeps
    /// every name (the configuration is checked when it is read).
    public static func filter(_ names: [String], include: String?, exclude: String?) -> [String] {
        let included = include.flatMap { try? Regex($0) }
        let excluded = exclude.flatMap { try? Regex($0) }
        return names.filter { name in
            (included.map { name.firstMatch(of: $0) != nil } ?? true) && !(excluded.map { name.firstMatch(of: $0) != nil } ?? false)
        }
    }

    // MARK: - Blocking pods

    func readBlockingPods() async -> BlockingPodsReading {
        var found: [BlockingPod] = []
        let rules = settings.podsAnywhere.map { ($0, BlockingPod.Scope.anywhere) } + settings.podsOnNode.map { ($0, BlockingPod.Scope.node) }
        for (text, scope) in rules {
            let selector: LabelSelector
            do { selector = try LabelSelector.parse(text) } catch {
                return .unreadable("gates.blockingPods selector \(text): \(error)")
            }
            let pods: [Pod]
            do {
                pods = try await kube.list(Pod.self, labelSelector: selector)
            } catch {
                return .unreadable("\(error)")
            }
            // Running or about to (kured counts every phase but Succeeded, Failed and Unknown).
            for pod in pods where !["Succeeded", "Failed", "Unknown"].contains(pod.phase) {
                found.append(BlockingPod(namespace: pod.namespace ?? "default", name: pod.name, node: pod.nodeName, selector: text, scope: scope))
            }
        }
        found.sort { ($0.namespace, $0.name, $0.selector) < ($1.namespace, $1.name, $1.selector) }
        return .pods(Array(found.prefix(Self.podsMax)))
    }

    // MARK: - etcd

    /// Asks the server agents in turn until one answers; each is bounded.
    func readEtcd(_ nodes: [String]) async -> EtcdReading {
        guard !nodes.isEmpty else { return .noEmbeddedEtcd }
        var reasons: [String] = []
        let memberSeconds = max(1, settings.etcdTimeoutSeconds / 3)
        for node in nodes {
            let call = NodeCall(node: node, fleet: fleet, backoff: Backoff(initialDelay: .milliseconds(200), maximumDelay: .seconds(1), attemptsMax: 2),
                                deadline: .now + .seconds(settings.etcdTimeoutSeconds), progress: { _ in })
            do {
                let result = try await call.result(EtcdHealthRequest(timeoutSeconds: memberSeconds))
                return .members(result.members.map { member in
                    EtcdMemberHealth(name: member.name.isEmpty ? member.id : member.name, node: EtcdMemberHealth.node(ofMember: member.name),
                                     healthy: member.healthy, message: member.healthy ? nil : member.message)
                }, askedNode: node)
            } catch let refusal as ErrorResponse {
                reasons.append("\(node): \(refusal.code.rawValue): \(refusal.message)")
            } catch {
                reasons.append("\(node): \(error)")
            }
        }
        return .unknown(reasons.joined(separator: "; "))
    }
}
