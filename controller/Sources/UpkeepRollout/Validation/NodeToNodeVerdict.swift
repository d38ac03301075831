/// What `upkeep validate --networking` read for `networking/node-to-node`: every node's kubelet
/// endpoint (its InternalIP and `status.daemonEndpoints.kubeletEndpoint.Port`), and what each
/// node's agent answered when asked to connect to its peers' (`reachPeers`, protocol/PROTOCOL.md).
/// k3s needs every node to reach every other's kubelet on TCP 10250
/// (https://docs.k3s.io/installation/requirements#inbound-rules-for-k3s-nodes).
public struct NodeToNodeObservations: Equatable, Sendable {
    /// A node's kubelet endpoint; `host` nil when the node reports no InternalIP.
    public struct Target: Equatable, Sendable {
        public var node: String
        public var host: String?
        public var port: Int

        public init(node: String, host: String?, port: Int) {
            self.node = node
            self.host = host
            self.port = port
        }

        /// `10.0.0.4:10250`, `[fd00::4]:10250`.
        public var address: String {
            guard let host else { return "no InternalIP" }
            return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        }
    }

    /// How one connect from one node to another ended, as the agent reports it.
    public enum Outcome: String, Equatable, Sendable {
        case reachable, refused, timeout, unreachable
    }

    public struct Pair: Equatable, Sendable {
        public var to: String
        public var outcome: Outcome
        /// The errno text or the bound; empty when reachable.
        public var message: String

        public init(to: String, outcome: Outcome, message: String = "") {
            self.to = to
            self.outcome = outcome
            self.message = message
        }
    }

    /// What one node's agent said.
    public enum Answer: Equatable, Sendable {
        case answered([Pair])
        /// The agent does not know `reachPeers` (it answered `notImplemented`): an older agent.
        case agentTooOld(String)
        /// The agent could not be asked (no address, unreachable, an error); why.
        case notAsked(String)
    }

    public struct Prober: Equatable, Sendable {
        public var node: String
        public var answer: Answer

        public init(node: String, answer: Answer) {
            self.node = node
            self.answer = answer
        }
    }

    public var targets: ValidationReading<[Target]>
    /// One per node whose agent was to be asked, in the nodes' order.
    public var probers: [Prober]

    public init(targets: ValidationReading<[Target]>, probers: [Prober]) {
        self.targets = targets
        self.probers = probers
    }
}

/// Which peers each node's agent is asked to connect to: every other node, or in a cluster of
/// more than `peersPerNodeMax + 1` nodes the `peersPerNodeMax` nodes after it in name order
/// (wrapping round), so each node is asked for by exactly that many others and the cost stays
/// N × `peersPerNodeMax` connects instead of N × (N − 1). Pure and deterministic.
public enum NodeToNodePlan {
    /// Peers one agent is asked to connect to at most.
    public static let peersPerNodeMax = 64

    /// The peers of each node, by name; `names` in any order.
    public static func peers(of names: [String], peersPerNodeMax: Int = peersPerNodeMax) -> [String: [String]] {
        let sorted = Array(Set(names)).sorted()
        let count = min(sorted.count - 1, max(1, peersPerNodeMax))
        var plan: [String: [String]] = [:]
        for (index, name) in sorted.enumerated() {
            plan[name] = count < 1 ? [] : (1...count).map { sorted[(index + $0) % sorted.count] }
        }
        return plan
    }
}

extension ValidationVerdicts {
    /// The k3s page that lists the ports every node must reach on the others.
    static let inboundRules = "https://docs.k3s.io/installation/requirements#inbound-rules-for-k3s-nodes"

    /// `networking/node-to-node`: every node's agent connected to every peer's kubelet port it
    /// was asked for. A node that no other node reaches is named as such (its kubelet port or its
    /// host firewall); other failing pairs are listed. An agent that could not be asked, or is
    /// too old to know the request, makes the check unknown unless something failed.
    public static func nodeToNode(_ observed: NodeToNodeObservations) -> ValidationResult {
        let check = "node-to-node"
        guard case .read(let targets) = observed.targets else {
            return cannotRead(.networking, check, "the nodes' addresses", observed.targets, action: "`kubectl get nodes -o wide`")
        }
        guard targets.count >= 2 else {
            return ValidationResult(area: .networking, check: check, verdict: .healthy, summary: "\(targets.count) node: no other node to reach")
        }
        let byName = Dictionary(targets.map { ($0.node, $0) }, uniquingKeysWith: { first, _ in first })
        var failing: [(from: String, pair: NodeToNodeObservations.Pair)] = []
        var askers: [String: Int] = [:]
        var failedFrom: [String: Int] = [:]
        var reachedLines: [String] = []
        var unknownLines: [String] = []
        var tooOld: [String] = []
        var notAsked: [String] = []
        for prober in observed.probers {
            switch prober.answer {
            case .answered(let pairs):
                for pair in pairs {
                    askers[pair.to, default: 0] += 1
                    if pair.outcome != .reachable {
                        failedFrom[pair.to, default: 0] += 1
                        failing.append((prober.node, pair))
                    }
                }
                reachedLines.append("\(prober.node): reached \(pairs.filter { $0.outcome == .reachable }.count) of \(pairs.count) peers")
            case .agentTooOld(let why):
                tooOld.append(prober.node)
                unknownLines.append("\(prober.node): not asked: \(why)")
            case .notAsked(let why):
                notAsked.append(prober.node)
                unknownLines.append("\(prober.node): not asked: \(why)")
            }
        }
        let unaddressed = targets.filter { $0.host == nil }.map(\.node)
        unknownLines += unaddressed.map { "\($0): no InternalIP, so no other node was asked to reach it" }
        let ports = Set(targets.map(\.port)).sorted().map(String.init).joined(separator: ", ")

        guard failing.isEmpty else {
            // A node every asker failed to reach: its kubelet port or its host firewall.
            let isolated = targets.map(\.node).filter { name in
                let asked = askers[name] ?? 0
                return asked >= min(2, targets.count - 1) && failedFrom[name] == asked
            }
            let others = failing.filter { !isolated.contains($0.pair.to) }
            let evidence = failing.map { failure in
                "\(failure.from) → \(failure.pair.to) \(byName[failure.pair.to]?.address ?? "?"): \(failure.pair.outcome.rawValue)"
                    + (failure.pair.message.isEmpty ? "" : " (\(failure.pair.message))")
            } + unknownLines
            var summary: [String] = []
            var actions: [String] = []
            if !isolated.isEmpty {
                let ports = Set(isolated.compactMap { byName[$0]?.port }).sorted().map(String.init).joined(separator: ", ")
                summary.append("\(listed(isolated)) unreachable from every other node on the kubelet port (TCP \(ports)): "
                               + "\(isolated.count == 1 ? "its" : "their") kubelet or host firewall")
                actions.append("on \(listed(isolated)), check that k3s runs and that the host firewall accepts TCP \(ports) from every other node "
                               + "(`iptables -S`, `nft list ruleset`, `ufw status`)")
            }
            if !others.isEmpty {
                summary.append("\(others.count) \(isolated.isEmpty ? "" : "other ")node pairs cannot connect: "
                               + listed(others.map { "\($0.from) → \($0.pair.to)" }))
                actions.append("check the firewalls and routes between each pair: its first node must reach the second's kubelet port")
            }
            return ValidationResult(area: .networking, check: check, verdict: .unhealthy, summary: summary.joined(separator: "; "), evidence: evidence,
                                    action: actions.joined(separator: "; ") + ". k3s needs every node to reach every other's kubelet on TCP 10250, "
                                        + "and flannel's VXLAN on UDP 8472, which a TCP connect cannot prove (\(inboundRules))")
        }
        guard unknownLines.isEmpty else {
            var actions: [String] = []
            if !tooOld.isEmpty {
                actions.append("upgrade the upkeep-agent on \(listed(tooOld)): \(tooOld.count == 1 ? "its agent does" : "their agents do") not know the reachPeers request")
            }
            if !notAsked.isEmpty { actions.append("`upkeep agents` shows which agents answer (docs/agent.md)") }
            if !unaddressed.isEmpty { actions.append("a node without an InternalIP in status.addresses cannot be reached: `kubectl get node NODE -o wide`") }
            let asked = observed.probers.count - tooOld.count - notAsked.count
            return ValidationResult(area: .networking, check: check, verdict: .unknown,
                                    summary: "not every node could be asked: \(listed(tooOld + notAsked + unaddressed)); the \(asked) asked reach every peer",
                                    evidence: unknownLines + reachedLines, action: actions.joined(separator: "; "))
        }
        let pairs = askers.values.reduce(0, +)
        let every = targets.count * (targets.count - 1)
        // The bound of NodeToNodePlan, said where it applies: not every pair was tried.
        let sampled = pairs < every ? " (of \(every): each node tries at most \(NodeToNodePlan.peersPerNodeMax) peers, docs/validate.md)" : ""
        return ValidationResult(area: .networking, check: check, verdict: .healthy,
                                summary: "\(observed.probers.count) nodes reach their peers' kubelet port (TCP \(ports)): "
                                    + "\(pairs) of \(pairs) pairs connect\(sampled)",
                                evidence: reachedLines)
    }
}
