import Foundation
import Testing
import UpkeepCore
import UpkeepFleet
import UpkeepPKI
import UpkeepProtocol
import UpkeepRollout
import UpkeepTestSupport
import UpkeepTLS

/// `PeerReachability` over mutual TLS to protocol servers on 127.0.0.1: each agent gets its own
/// peers and a connect bound, and its answer comes back as it was given; an agent older than
/// `reachPeers` (it answers `notImplemented`, as an agent that does not know a method does,
/// PROTOCOL.md) is told apart from one that cannot be reached at all.
@Suite struct PeerReachabilityTests {
    /// Answers `reachPeers` with every peer reachable and records what it was asked; `old` answers
    /// `notImplemented` instead.
    final class Agent: RequestHandler, @unchecked Sendable {
        let node: String
        let old: Bool
        private let lock = NSLock()
        private var asked: [ReachPeersRequest] = []

        init(node: String, old: Bool = false) {
            self.node = node
            self.old = old
        }

        var requests: [ReachPeersRequest] { lock.withLock { asked } }

        func agentInfo() -> AgentInfo { AgentInfo(agentVersion: "0.1.0-test", nodeName: node, arch: "amd64", role: .agent, k3sVersion: v1) }

        func handle(_ request: IncomingRequest) async throws -> Reply {
            guard case .reachPeers(let reach) = request.payload, !old else {
                throw ErrorResponse(.notImplemented, "unknown method \(request.method)")
            }
            lock.withLock { asked.append(reach) }
            return Reply(.reachPeers(ReachPeersResult(peers: reach.peers.map {
                ReachPeerResult(node: $0.node, host: $0.host, port: $0.port, outcome: .reachable, message: "", elapsedMs: 0)
            })))
        }
    }

    @Test func eachAgentIsAskedForItsPeersAndAnOldOneIsToldApart() async throws {
        let directory = try TemporaryDirectory()
        let pki = try FleetPKI(in: directory.file("pki"))
        let current = Agent(node: "server-1")
        let old = Agent(node: "agent-1", old: true)
        var servers: [ProtocolServer] = []
        var endpoints: [String: AgentEndpoint] = [:]
        for agent in [current, old] {
            let server = try await ProtocolServer.bind(host: "127.0.0.1", port: 0,
                                                       security: .tls(try pki.agentContext(agent.node), expecting: .roles([.controller])), handler: agent)
            servers.append(server)
            endpoints[agent.node] = AgentEndpoint(host: "127.0.0.1", port: server.port)
        }
        let fleet = AgentFleet(security: try pki.controllerSecurity(), endpoints: endpoints, configuration: AgentFleet.Configuration(connectTimeoutSeconds: 5))
        let peers: [String: [ReachPeer]] = [
            "server-1": [ReachPeer(node: "agent-1", host: "10.0.0.4", port: 10250), ReachPeer(node: "agent-2", host: "10.0.0.5", port: 10250)],
            "agent-1": [ReachPeer(node: "server-1", host: "10.0.0.2", port: 10250)],
            "agent-2": [ReachPeer(node: "server-1", host: "10.0.0.2", port: 10250)],
            "lonely": [],
        ]
        let answers = await PeerReachability.ask(fleet, peers: peers, timeoutSeconds: 3)
        await fleet.close()
        for server in servers { await server.shutdown() }

        #expect(current.requests == [ReachPeersRequest(peers: peers["server-1"] ?? [], timeoutSeconds: 3)])
        guard case .answered(let results) = answers["server-1"] else {
            Issue.record("server-1: \(String(describing: answers["server-1"]))")
            return
        }
        #expect(results.map(\.node) == ["agent-1", "agent-2"] && results.allSatisfy { $0.outcome == .reachable })
        guard case .agentTooOld(let why) = answers["agent-1"] else {
            Issue.record("agent-1: \(String(describing: answers["agent-1"]))")
            return
        }
        #expect(why.contains("notImplemented") && why.contains("older than the reachPeers request"), "\(why)")
        guard case .failed(let reason) = answers["agent-2"] else {
            Issue.record("agent-2 has no agent address: \(String(describing: answers["agent-2"]))")
            return
        }
        #expect(reason.hasPrefix("no answer from its agent: no agent address is known for this node"), "\(reason)")
        #expect(answers["lonely"] == nil, "a node with no peers is not asked")
        #expect(PeerReachability.deadlineSeconds(peers: 64, timeoutSeconds: 3) == 4 * 3 + 10)
    }
}
