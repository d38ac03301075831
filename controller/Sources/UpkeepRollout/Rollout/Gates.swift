import UpkeepCore

/// A gate the operator configures (`gates:` in upkeep.yaml): something outside the nodes and
/// volumes of the plan that must allow a wave before it starts (docs/planning.md, "Gates").
public enum GateKind: String, Codable, Sendable, CaseIterable, Comparable {
    /// No alert firing in Prometheus (as kured's `--prometheus-url`, https://kured.dev/docs/configuration/).
    case prometheus
    /// No pod matching a blocking selector running anywhere, or on a node about to go.
    case blockingPods
    /// Every etcd member healthy and the cluster with quorum, as the server agents see it.
    case etcd

    /// The order gates are read and reported in.
    private var rank: Int {
        switch self {
        case .prometheus: 0
        case .blockingPods: 1
        case .etcd: 2
        }
    }

    public static func < (lhs: GateKind, rhs: GateKind) -> Bool { lhs.rank < rhs.rank }
}

/// The gates a rollout asks for before every wave and how long it waits for them. Part of the
/// persisted `RolloutPolicy`, so a resumed rollout keeps what it was started with.
public struct GatePolicy: Codable, Equatable, Sendable {
    /// The gates configured, in `GateKind` order.
    public var kinds: [GateKind]
    /// How long a wave waits while a gate holds it before the rollout blocks with the reason.
    public var holdTimeoutSeconds: Int
    /// An unreachable Prometheus holds (fail closed) unless this is true.
    public var passWhenPrometheusUnreachable: Bool

    /// While held, the reason is repeated at most this often (and whenever it changes).
    public static let holdNoticeIntervalSeconds = 300

    public init(kinds: [GateKind], holdTimeoutSeconds: Int = 3600, passWhenPrometheusUnreachable: Bool = false) {
        self.kinds = Array(Set(kinds)).sorted()
        self.holdTimeoutSeconds = holdTimeoutSeconds
        self.passWhenPrometheusUnreachable = passWhenPrometheusUnreachable
    }
}

/// What the engine asks the runtime to read (`RolloutEngine.Action.checkGates`).
public struct GateQuestion: Equatable, Sendable {
    /// The gates to read.
    public var kinds: [GateKind]
    /// The etcd members' nodes (servers with embedded etcd), in the order their agents are asked;
    /// empty when the cluster runs no embedded etcd (the etcd gate then has nothing to read).
    public var etcdNodes: [String]

    public init(kinds: [GateKind], etcdNodes: [String]) {
        self.kinds = kinds
        self.etcdNodes = etcdNodes
    }
}

/// What the runtime read of the gates, as data: the engine decides what holds. A gate that was
/// asked for and could not be read says so (`unreachable`, `unreadable`, `unknown`) instead of
/// being left out, so an answer is never mistaken for a pass.
public struct GateReport: Codable, Equatable, Sendable {
    public var prometheus: PrometheusReading?
    public var blockingPods: BlockingPodsReading?
    public var etcd: EtcdReading?

    public init(prometheus: PrometheusReading? = nil, blockingPods: BlockingPodsReading? = nil, etcd: EtcdReading? = nil) {
        self.prometheus = prometheus
        self.blockingPods = blockingPods
        self.etcd = etcd
    }

    /// Every gate of `question` unread for `reason` (the read as a whole failed or timed out).
    public static func unread(_ question: GateQuestion, reason: String) -> GateReport {
        var report = GateReport()
        for kind in question.kinds {
            switch kind {
            case .prometheus: report.prometheus = .unreachable(reason)
            case .blockingPods: report.blockingPods = .unreadable(reason)
            case .etcd: report.etcd = question.etcdNodes.isEmpty ? .noEmbeddedEtcd : .unknown(reason)
            }
        }
        return report
    }
}

public enum PrometheusReading: Codable, Equatable, Sendable {
    /// The names of the alerts firing that the filter keeps (pending alerts are never counted).
    case firing([String])
    /// Prometheus did not answer, or answered something that is not its alerts API.
    case unreachable(String)
}

/// A pod that matches a blocking selector.
public struct BlockingPod: Codable, Equatable, Sendable {
    public enum Scope: String, Codable, Sendable {
        /// Holds every wave while it runs anywhere in the cluster.
        case anywhere
        /// Holds a wave only when it runs on one of the wave's nodes.
        case node
    }

    public var namespace: String
    public var name: String
    /// Where it is scheduled; nil while it is not bound to a node.
    public var node: String?
    /// The label selector it matched, as configured.
    public var selector: String
    public var scope: Scope

    public init(namespace: String, name: String, node: String?, selector: String, scope: Scope) {
        self.namespace = namespace
        self.name = name
        self.node = node
        self.selector = selector
        self.scope = scope
    }
}

public enum BlockingPodsReading: Codable, Equatable, Sendable {
    /// Pods matching a blocking selector that have not finished (bounded by the reader).
    case pods([BlockingPod])
    /// The pods could not be listed.
    case unreadable(String)
}

/// One etcd member as an agent on a server saw it.
public struct EtcdMemberHealth: Codable, Equatable, Sendable {
    /// The member name (k3s names members `<node>-<8 hex digits>`).
    public var name: String
    /// The node it belongs to, from its name; nil when the name does not say.
    public var node: String?
    public var healthy: Bool
    /// Why it is not healthy (or what it answered).
    public var message: String?

    public init(name: String, node: String?, healthy: Bool, message: String? = nil) {
        self.name = name
        self.node = node
        self.healthy = healthy
        self.message = message
    }

    /// The node a k3s member name belongs to: the name without its `-<8 hex digits>` suffix.
    public static func node(ofMember name: String) -> String? {
        let parts = name.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count >= 2, let suffix = parts.last, suffix.count == 8,
              suffix.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }) else { return nil }
        return String(name.dropLast(9))
    }
}

public enum EtcdReading: Codable, Equatable, Sendable {
    /// The members and their health as the agent on `askedNode` saw them.
    case members([EtcdMemberHealth], askedNode: String)
    /// No server agent could say (why, per agent asked).
    case unknown(String)
    /// The cluster has no embedded etcd (one server on SQLite, or an external datastore).
    case noEmbeddedEtcd
}

/// Why a gate holds a wave, as `status`, the notices and the blocked message say it.
public struct GateHold: Codable, Equatable, Sendable {
    public var gate: GateKind
    public var reason: String

    public init(_ gate: GateKind, _ reason: String) {
        self.gate = gate
        self.reason = reason
    }

    public var text: String { "\(gate.rawValue): \(reason)" }
}

/// Where the gates hold the current wave, for `status` and the metrics.
public struct GateHoldState: Equatable, Sendable {
    public var wave: String
    public var holds: [GateHold]
    public var since: Instant
    /// When the rollout blocks if the gates still hold (`gates.holdTimeout` after `since`).
    public var blocksAt: Instant
    /// The hold outlasted its bound and the rollout is blocked on it.
    public var blocked: Bool
}

/// The gates' verdict from one report. Pure.
enum GateVerdict {
    /// What holds the wave whose pending nodes are `going`. `retried` are nodes the wave takes up
    /// again after `resume`: an etcd member they are may be the one missing, and their own
    /// absence does not hold them.
    static func holds(_ report: GateReport, policy: GatePolicy, going: [String], retried: Set<String>) -> [GateHold] {
        var holds: [GateHold] = []
        for kind in policy.kinds {
            switch kind {
            case .prometheus:
                switch report.prometheus {
                case nil:
                    holds.append(GateHold(.prometheus, "not read yet"))
                case .firing(let names) where !names.isEmpty:
                    let unique = Array(Set(names)).sorted()
                    holds.append(GateHold(.prometheus, "alert\(unique.count == 1 ? "" : "s") firing: \(GateCheck.listed(unique))"))
                case .unreachable(let why) where !policy.passWhenPrometheusUnreachable:
                    holds.append(GateHold(.prometheus, "cannot read the alerts (\(why)); an unreachable Prometheus holds "
                                          + "(gates.prometheus.whenUnreachable: hold)"))
                case .firing, .unreachable:
                    break
                }
            case .blockingPods:
                switch report.blockingPods {
                case nil:
                    holds.append(GateHold(.blockingPods, "not read yet"))
                case .unreadable(let why):
                    holds.append(GateHold(.blockingPods, "cannot list pods (\(why))"))
                case .pods(let pods):
                    let nodes = Set(going)
                    let anywhere = pods.filter { $0.scope == .anywhere }
                    let here = pods.filter { $0.scope == .node && $0.node.map(nodes.contains) == true }
                    if !anywhere.isEmpty {
                        holds.append(GateHold(.blockingPods, "running: " + describe(anywhere)))
                    }
                    if !here.isEmpty {
                        holds.append(GateHold(.blockingPods, "running on a node about to go: " + describe(here)))
                    }
                }
            case .etcd:
                switch report.etcd {
                case nil:
                    holds.append(GateHold(.etcd, "not read yet"))
                case .unknown(let why):
                    holds.append(GateHold(.etcd, "health unknown: \(why)"))
                case .noEmbeddedEtcd:
                    break
                case .members(let members, let asked):
                    let healthy = members.filter(\.healthy).count
                    let counted = "\(healthy) of \(members.count) members healthy (asked \(asked))"
                    // A member the wave takes up again (after `resume`) may be the one missing:
                    // its own step is the fix, and taking it down again loses nothing more.
                    let sick = members.filter { !$0.healthy && !($0.node.map(retried.contains) ?? false) }
                    if members.isEmpty {
                        holds.append(GateHold(.etcd, "the agent on \(asked) reported no members"))
                    } else if sick.isEmpty {
                        break
                    } else if healthy * 2 <= members.count {
                        holds.append(GateHold(.etcd, "no quorum: \(counted)"))
                    } else {
                        let names = sick.map { member in
                            (member.node.map { "\(member.name) (\($0))" } ?? member.name) + (member.message.map { ": \($0)" } ?? "")
                        }
                        holds.append(GateHold(.etcd, "member\(sick.count == 1 ? "" : "s") not healthy: \(GateCheck.listed(names)); \(counted)"))
                    }
                }
            }
        }
        return holds
    }

    /// `namespace/name on node (selector)`, at most five.
    private static func describe(_ pods: [BlockingPod]) -> String {
        GateCheck.listed(pods.map { "\($0.namespace)/\($0.name)" + ($0.node.map { " on \($0)" } ?? "") + " (\($0.selector))" })
    }
}

extension GateReport {
    /// One line per gate read, as `plan`, `apply`, `status` and the transition log say it.
    public var lines: [String] {
        var lines: [String] = []
        switch prometheus {
        case .firing(let names)? where names.isEmpty: lines.append("prometheus: no alert firing")
        case .firing(let names)?: lines.append("prometheus: firing: \(GateCheck.listed(Array(Set(names)).sorted()))")
        case .unreachable(let why)?: lines.append("prometheus: unreachable: \(why)")
        case nil: break
        }
        switch blockingPods {
        case .pods(let pods)? where pods.isEmpty: lines.append("blockingPods: none running")
        case .pods(let pods)?:
            lines.append("blockingPods: " + GateCheck.listed(pods.map { "\($0.namespace)/\($0.name)" + ($0.node.map { " on \($0)" } ?? "")
                                                                   + " (\($0.scope == .node ? "onNode" : "anywhere") \($0.selector))" }))
        case .unreadable(let why)?: lines.append("blockingPods: cannot list pods: \(why)")
        case nil: break
        }
        switch etcd {
        case .members(let members, let asked)?:
            let sick = members.filter { !$0.healthy }.map { $0.name + ($0.message.map { ": \($0)" } ?? "") }
            lines.append("etcd: \(members.filter(\.healthy).count) of \(members.count) members healthy (asked \(asked))"
                         + (sick.isEmpty ? "" : "; not healthy: \(GateCheck.listed(sick))"))
        case .unknown(let why)?: lines.append("etcd: health unknown: \(why)")
        case .noEmbeddedEtcd?: lines.append("etcd: no embedded etcd")
        case nil: break
        }
        return lines
    }
}

extension GateReport {
    /// What would hold a wave whose pending nodes are `going`, as the engine decides it.
    public func holds(_ policy: GatePolicy, going: [String]) -> [GateHold] {
        GateVerdict.holds(self, policy: policy, going: going, retried: [])
    }
}
