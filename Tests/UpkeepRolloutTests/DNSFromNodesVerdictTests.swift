import Testing
import UpkeepRollout

/// `networking/dns-from-nodes` from what the agents said: healthy only when every node resolves
/// the API's Service name to its clusterIP; each way of failing names the node and why, and an
/// agent that could not be asked is unknown, never a pass.
@Suite struct DNSFromNodesVerdictTests {
    typealias Node = DNSFromNodesObservations.Node

    static let name = "kubernetes.default.svc.cluster.local"
    static let server = "10.43.0.10:53"

    static func nodes(_ change: (inout [Node]) -> Void = { _ in }) -> [Node] {
        var nodes = ["server-1", "agent-1", "agent-2"].map { Node(name: $0, server: server, answer: .answered(code: "NOERROR", addresses: ["10.43.0.1"])) }
        change(&nodes)
        return nodes
    }

    static func verdict(_ nodes: [Node] = nodes(), expected: ValidationReading<String> = .read("10.43.0.1")) -> ValidationResult {
        let result = ValidationVerdicts.dnsFromNodes(DNSFromNodesObservations(name: name, expected: expected, nodes: .read(nodes)))
        #expect(result.name == "networking/dns-from-nodes")
        return result
    }

    @Test func everyNodeResolvingTheServiceIsHealthy() {
        let result = Self.verdict()
        #expect(result.verdict == .healthy && result.action == nil, "\(result)")
        #expect(result.summary == "kubernetes.default.svc.cluster.local resolves to 10.43.0.1 from 3 of 3 nodes")
        #expect(result.evidence == ["server-1 (via 10.43.0.10:53): 10.43.0.1", "agent-1 (via 10.43.0.10:53): 10.43.0.1",
                                    "agent-2 (via 10.43.0.10:53): 10.43.0.1"])
    }

    @Test func aNodeWithoutAnAnswerIsNamedWithWhy() {
        let result = Self.verdict(Self.nodes { $0[1].answer = .noAnswer("no answer from 10.43.0.10:53 within 3 s") })
        #expect(result.verdict == .unhealthy, "\(result)")
        #expect(result.summary == "kubernetes.default.svc.cluster.local does not resolve to 10.43.0.1 from 1 of 3 nodes: agent-1")
        #expect(result.evidence.first == "agent-1 (via 10.43.0.10:53): no answer: no answer from 10.43.0.10:53 within 3 s")
        #expect(result.action?.contains("kubernetes.io/service-name=kube-dns") == true
                && result.action?.contains("`dig @10.43.0.10 kubernetes.default.svc.cluster.local`") == true, "\(result.action ?? "")")
    }

    @Test func errorCodesAndWrongAddressesAreNamed() {
        let result = Self.verdict(Self.nodes {
            $0[0].answer = .answered(code: "NXDOMAIN", addresses: [])
            $0[1].answer = .answered(code: "SERVFAIL", addresses: [])
            $0[2].answer = .answered(code: "NOERROR", addresses: ["10.43.0.99"])
        })
        #expect(result.verdict == .unhealthy && result.summary.hasSuffix("from 3 of 3 nodes: server-1, agent-1, agent-2"), "\(result)")
        #expect(result.evidence == ["server-1 (via 10.43.0.10:53): answered NXDOMAIN", "agent-1 (via 10.43.0.10:53): answered SERVFAIL",
                                    "agent-2 (via 10.43.0.10:53): answered 10.43.0.99, not 10.43.0.1 (the clusterIP of Service default/kubernetes)"])
        #expect(result.action?.contains("ConfigMap coredns") == true && result.action?.contains("endpointslices") == false)
        let empty = Self.verdict(Self.nodes { $0[2].answer = .answered(code: "NOERROR", addresses: []) })
        #expect(empty.verdict == .unhealthy && empty.evidence.first?.contains("answered NOERROR with no address") == true, "\(empty)")
    }

    @Test func anAgentNotAskedIsUnknownNeverAPass() {
        let unknown = Self.verdict(Self.nodes { $0[2].answer = .agentUnreachable("connection refused") })
        #expect(unknown.verdict == .unknown && unknown.summary == "the agents of 1 of 3 nodes could not be asked: agent-2", "\(unknown)")
        #expect(unknown.evidence.first == "agent-2: unknown, its agent could not be asked: connection refused")
        // Another node's failure decides: unhealthy, naming the unknown one too.
        let both = Self.verdict(Self.nodes {
            $0[1].answer = .noAnswer("no answer")
            $0[2].answer = .agentUnreachable("connection refused")
        })
        #expect(both.verdict == .unhealthy && both.summary.hasSuffix("from 1 of 3 nodes: agent-1; unknown from agent-2"), "\(both)")
    }

    @Test func whatCannotBeReadIsUnknown() {
        let noService = Self.verdict(expected: .unreadable("403 Forbidden"))
        #expect(noService.verdict == .unknown && noService.summary.contains("the Service default/kubernetes") && noService.summary.hasSuffix("403 Forbidden"))
        let noNodes = ValidationVerdicts.dnsFromNodes(DNSFromNodesObservations(name: Self.name, expected: .read("10.43.0.1"), nodes: .unreadable("timeout")))
        #expect(noNodes.verdict == .unknown && noNodes.summary.hasSuffix("timeout"), "\(noNodes)")
        #expect(Self.verdict([]).verdict == .unknown)
    }
}
