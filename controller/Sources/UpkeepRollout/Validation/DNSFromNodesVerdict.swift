/// What `networking/dns-from-nodes` read: every node's agent asked to resolve the API's Service
/// name through the cluster DNS address it is configured with (`clusterDNS`, PROTOCOL.md), and
/// the address the answer must be: the Service `default/kubernetes`'s `spec.clusterIP`
/// (https://kubernetes.io/docs/concepts/services-networking/dns-pod-service/).
public struct DNSFromNodesObservations: Equatable, Sendable {
    /// What one node's agent said.
    public enum Answer: Equatable, Sendable {
        /// The cluster DNS answered: its response code as dig prints it (`NOERROR`, `NXDOMAIN`,
        /// `SERVFAIL`, …) and the name's IPv4 addresses.
        case answered(code: String, addresses: [String])
        /// No answer came from the cluster DNS; the agent says why (its bound reached, a
        /// malformed or over-long answer).
        case noAnswer(String)
        /// The agent could not be asked (unreachable, refused the request): nothing is known
        /// about that node's DNS.
        case agentUnreachable(String)
    }

    public struct Node: Equatable, Sendable {
        public var name: String
        /// The cluster DNS address the agent asked (`host:port`); empty when it did not say.
        public var server: String
        public var answer: Answer

        public init(name: String, server: String = "", answer: Answer) {
            self.name = name
            self.server = server
            self.answer = answer
        }
    }

    /// The name asked, `kubernetes.default.svc.cluster.local`.
    public var name: String
    /// The Service `default/kubernetes`'s `spec.clusterIP`.
    public var expected: ValidationReading<String>
    /// Unreadable when the nodes could not be read (nor their agents found).
    public var nodes: ValidationReading<[Node]>

    public init(name: String, expected: ValidationReading<String>, nodes: ValidationReading<[Node]>) {
        self.name = name
        self.expected = expected
        self.nodes = nodes
    }
}

extension ValidationVerdicts {
    /// `networking/dns-from-nodes`: healthy when every node's agent resolved the name to the
    /// Service's clusterIP. A node whose DNS answered wrong, or not at all, is named with why;
    /// a node whose agent could not be asked makes the check unknown (never a pass) unless
    /// another node already failed it.
    public static func dnsFromNodes(_ observed: DNSFromNodesObservations) -> ValidationResult {
        let check = "dns-from-nodes"
        guard case .read(let nodes) = observed.nodes else {
            return cannotRead(.networking, check, "the nodes, so no agent was asked", observed.nodes,
                              action: "check that the Kubernetes API answers (`kubectl get nodes`)")
        }
        guard case .read(let clusterIP) = observed.expected else {
            return cannotRead(.networking, check, "the Service default/kubernetes (its clusterIP is the answer expected)", observed.expected,
                              action: "`kubectl -n default get service kubernetes`: the apiserver keeps it; check the kubeconfig's rights")
        }
        guard !nodes.isEmpty else {
            return ValidationResult(area: .networking, check: check, verdict: .unknown, summary: "no nodes to ask",
                                    action: "check that upkeep.yaml's kubeconfig points at the right cluster")
        }
        enum Finding { case resolves, wrong, noAnswer, unknown }
        var failing: [(node: String, line: String, finding: Finding)] = []
        var passing: [String] = []
        for node in nodes {
            let via = node.server.isEmpty ? node.name : "\(node.name) (via \(node.server))"
            switch node.answer {
            case .answered(let code, let addresses) where code == "NOERROR" && addresses.contains(clusterIP):
                passing.append("\(via): \(addresses.joined(separator: ", "))")
            case .answered(let code, let addresses) where code == "NOERROR":
                let got = addresses.isEmpty ? "NOERROR with no address" : addresses.joined(separator: ", ")
                failing.append((node.name, "\(via): answered \(got), not \(clusterIP) (the clusterIP of Service default/kubernetes)", .wrong))
            case .answered(let code, _):
                failing.append((node.name, "\(via): answered \(code)", .wrong))
            case .noAnswer(let why):
                failing.append((node.name, "\(via): no answer: \(why)", .noAnswer))
            case .agentUnreachable(let why):
                failing.append((node.name, "\(node.name): unknown, its agent could not be asked: \(why)", .unknown))
            }
        }
        let evidence = failing.map(\.line) + passing
        let broken = failing.filter { $0.finding != .unknown }
        let unknown = failing.filter { $0.finding == .unknown }
        guard broken.isEmpty else {
            var steps: [String] = []
            if broken.contains(where: { $0.finding == .noAnswer }) {
                steps.append("no answer: check that CoreDNS runs (`kubectl -n kube-system get deployment coredns`) and its Service has endpoints "
                             + "(`kubectl -n kube-system get endpointslices -l kubernetes.io/service-name=kube-dns`); when only some nodes fail, "
                             + "their path to the Service does (`journalctl -u k3s` or `-u k3s-agent` on the node: kube-proxy, flannel)")
            }
            if broken.contains(where: { $0.finding == .wrong }) {
                steps.append("a wrong answer: `kubectl -n kube-system logs deployment/coredns` and its ConfigMap coredns "
                             + "(https://coredns.io/plugins/kubernetes/); the node's agent.yaml clusterDNS must be the cluster DNS address "
                             + "(k3s's --cluster-dns, https://docs.k3s.io/cli/server#networking)")
            }
            let asked = broken.compactMap { failed in nodes.first { $0.name == failed.node && !$0.server.isEmpty } }.first
            let host = asked.map { String($0.server.split(separator: ":").first ?? "") } ?? "10.43.0.10"
            steps.append("from the node: `dig @\(host) \(observed.name)`")
            return ValidationResult(area: .networking, check: check, verdict: .unhealthy,
                                    summary: "\(observed.name) does not resolve to \(clusterIP) from \(broken.count) of \(nodes.count) nodes: "
                                        + listed(broken.map(\.node)) + (unknown.isEmpty ? "" : "; unknown from \(listed(unknown.map(\.node)))"),
                                    evidence: evidence, action: steps.joined(separator: "; "))
        }
        guard unknown.isEmpty else {
            return ValidationResult(area: .networking, check: check, verdict: .unknown,
                                    summary: "the agents of \(unknown.count) of \(nodes.count) nodes could not be asked: \(listed(unknown.map(\.node)))",
                                    evidence: evidence,
                                    action: "`upkeep agents` shows which agents answer; an agent older than the clusterDNS request answers notImplemented")
        }
        return ValidationResult(area: .networking, check: check, verdict: .healthy,
                                summary: "\(observed.name) resolves to \(clusterIP) from \(nodes.count) of \(nodes.count) nodes", evidence: evidence)
    }
}
