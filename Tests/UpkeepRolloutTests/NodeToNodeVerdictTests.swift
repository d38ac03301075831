import Testing
import UpkeepRollout

/// `networking/node-to-node` from what the agents answered: healthy when every pair connects; a
/// node no other node reaches named as such; single failing pairs listed; an agent that cannot
/// be asked, or is too old to know the request, unknown. And which peers each agent is asked for.
@Suite struct NodeToNodeVerdictTests {
    typealias Observations = NodeToNodeObservations

    static let names = ["agent-1", "server-1", "server-2", "server-3"]
    static let targets = names.enumerated().map { Observations.Target(node: $1, host: "10.0.0.\($0 + 2)", port: 10250) }

    /// Every node asked for every other; `outcome` says how each pair ended (reachable unless said).
    static func observed(_ outcome: (String, String) -> Observations.Outcome = { _, _ in .reachable },
                         answer: [String: Observations.Answer] = [:]) -> Observations {
        Observations(targets: .read(targets), probers: names.map { from in
            Observations.Prober(node: from, answer: answer[from] ?? .answered(names.filter { $0 != from }.map { to in
                let result = outcome(from, to)
                return Observations.Pair(to: to, outcome: result, message: result == .refused ? "Connection refused (errno 111)" : "")
            }))
        })
    }

    @Test func everyPairConnectingIsHealthy() {
        let result = ValidationVerdicts.nodeToNode(Self.observed())
        #expect(result.name == "networking/node-to-node" && result.verdict == .healthy, "\(result)")
        #expect(result.summary == "4 nodes reach their peers' kubelet port (TCP 10250): 12 of 12 pairs connect")
        #expect(result.evidence.contains("server-2: reached 3 of 3 peers") && result.action == nil)
    }

    @Test func aNodeNoOtherReachesIsNamedWithItsPortAndFirewall() {
        let result = ValidationVerdicts.nodeToNode(Self.observed { _, to in to == "agent-1" ? .refused : .reachable })
        #expect(result.verdict == .unhealthy)
        #expect(result.summary == "agent-1 unreachable from every other node on the kubelet port (TCP 10250): its kubelet or host firewall", "\(result.summary)")
        #expect(result.evidence.contains("server-1 → agent-1 10.0.0.2:10250: refused (Connection refused (errno 111))"), "\(result.evidence)")
        #expect(result.evidence.count == 3)
        #expect(result.action?.contains("on agent-1, check that k3s runs and that the host firewall accepts TCP 10250 from every other node") == true)
        #expect(result.action?.contains("https://docs.k3s.io/installation/requirements#inbound-rules-for-k3s-nodes") == true, "\(result.action ?? "")")
    }

    @Test func aSingleFailingPairIsListedNotBlamedOnANode() {
        let result = ValidationVerdicts.nodeToNode(Self.observed { from, to in from == "server-1" && to == "server-3" ? .timeout : .reachable })
        #expect(result.verdict == .unhealthy)
        #expect(result.summary == "1 node pairs cannot connect: server-1 → server-3", "\(result.summary)")
        #expect(result.evidence == ["server-1 → server-3 10.0.0.5:10250: timeout"])
        #expect(result.action?.hasPrefix("check the firewalls and routes between each pair") == true)
    }

    @Test func anIsolatedNodeAndAnotherPairAreBothSaid() {
        let result = ValidationVerdicts.nodeToNode(Self.observed { from, to in
            to == "agent-1" || (from == "server-1" && to == "server-3") ? .unreachable : .reachable
        })
        #expect(result.summary.hasPrefix("agent-1 unreachable from every other node") && result.summary.hasSuffix("; 1 other node pairs cannot connect: server-1 → server-3"),
                "\(result.summary)")
    }

    @Test func anAgentThatCannotBeAskedIsUnknownAndAnOldOneIsToldToUpgrade() {
        let unasked = ValidationVerdicts.nodeToNode(Self.observed(answer: ["server-2": .notAsked("connection refused")]))
        #expect(unasked.verdict == .unknown && unasked.summary == "not every node could be asked: server-2; the 3 asked reach every peer", "\(unasked)")
        #expect(unasked.evidence.first == "server-2: not asked: connection refused" && unasked.action?.contains("`upkeep agents`") == true)

        let old = ValidationVerdicts.nodeToNode(Self.observed(answer: ["agent-1": .agentTooOld("it answered notImplemented")]))
        #expect(old.verdict == .unknown && old.action?.hasPrefix("upgrade the upkeep-agent on agent-1") == true, "\(old)")

        // A failure seen by the others is still a failure.
        let failing = ValidationVerdicts.nodeToNode(Self.observed({ _, to in to == "server-3" ? .refused : .reachable },
                                                                  answer: ["agent-1": .notAsked("connection refused")]))
        #expect(failing.verdict == .unhealthy && failing.summary.hasPrefix("server-3 unreachable from every other node"), "\(failing.summary)")
        #expect(failing.evidence.contains("agent-1: not asked: connection refused"))
    }

    /// In a cluster larger than the plan's bound, the healthy summary says that not every pair was tried.
    @Test func aSampledClusterSaysNotEveryPairWasTried() {
        let names = (0..<70).map { "node-\(String(100 + $0))" }
        let plan = NodeToNodePlan.peers(of: names)
        let observed = Observations(targets: .read(names.map { .init(node: $0, host: "10.0.1.\($0.suffix(2))", port: 10250) }),
                                    probers: names.map { name in .init(node: name, answer: .answered((plan[name] ?? []).map { .init(to: $0, outcome: .reachable) })) })
        let result = ValidationVerdicts.nodeToNode(observed)
        #expect(result.verdict == .healthy)
        #expect(result.summary == "70 nodes reach their peers' kubelet port (TCP 10250): 4480 of 4480 pairs connect "
                + "(of 4830: each node tries at most 64 peers, docs/validate.md)", "\(result.summary)")
    }

    @Test func unreadableNodesAreUnknownAndOneNodeHasNothingToReach() {
        let unread = ValidationVerdicts.nodeToNode(Observations(targets: .unreadable("503"), probers: []))
        #expect(unread.verdict == .unknown && unread.summary == "cannot read the nodes' addresses: 503")
        let single = ValidationVerdicts.nodeToNode(Observations(targets: .read([Self.targets[0]]), probers: []))
        #expect(single.verdict == .healthy && single.summary == "1 node: no other node to reach")
        let noAddress = ValidationVerdicts.nodeToNode(Observations(targets: .read(Self.targets + [.init(node: "agent-2", host: nil, port: 10250)]),
                                                                   probers: Self.observed().probers))
        #expect(noAddress.verdict == .unknown && noAddress.evidence.contains("agent-2: no InternalIP, so no other node was asked to reach it"), "\(noAddress)")
    }

    /// Up to 65 nodes every node asks every other; beyond, each asks the 64 after it in name
    /// order, so each is asked for by exactly 64 others.
    @Test func eachAgentAsksAtMost64PeersAndEveryNodeIsAskedForByAsMany() {
        let small = NodeToNodePlan.peers(of: ["c", "a", "b"])
        #expect(small == ["a": ["b", "c"], "b": ["c", "a"], "c": ["a", "b"]])
        #expect(NodeToNodePlan.peers(of: ["solo"]) == ["solo": []])

        let names = (0..<200).map { "node-\(String(1000 + $0))" }
        let plan = NodeToNodePlan.peers(of: names.shuffled())
        #expect(plan.count == 200 && plan.values.allSatisfy { $0.count == 64 })
        var askedFor: [String: Int] = [:]
        for (node, peers) in plan {
            #expect(!peers.contains(node) && Set(peers).count == 64)
            for peer in peers { askedFor[peer, default: 0] += 1 }
        }
        #expect(askedFor.count == 200 && askedFor.values.allSatisfy { $0 == 64 })
        #expect(plan["node-1199"]?.prefix(2) == ["node-1000", "node-1001"], "wraps round")
        #expect(NodeToNodePlan.peers(of: Array(names.prefix(65))).values.allSatisfy { $0.count == 64 })
    }
}
