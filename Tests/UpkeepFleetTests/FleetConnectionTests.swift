import Foundation
import Synchronization
import Testing
import UpkeepCore
import UpkeepFleet
import UpkeepHTTP
import UpkeepPKI
import UpkeepProtocol
import UpkeepRollout
import UpkeepTestSupport
import UpkeepTLS

/// `AgentFleet` keeps one mutual-TLS connection per agent for its life: the cross-check and
/// every request after it go over it, counted by the TLS handshakes each agent's real protocol
/// server completed; Pings keep it past the agent's idle timeout; a Hello from before a node's
/// upgrade is asked again; a lost connection is dialled again, with backoff while the agent is down.
@Suite struct FleetConnectionTests {
    /// Says Hello with the k3s version it runs now, and answers `reachPeers` (every peer reachable).
    final class Agent: RequestHandler, Sendable {
        let node: String
        let k3sVersion: Mutex<String>

        init(node: String, k3sVersion: String = v1) {
            self.node = node
            self.k3sVersion = Mutex(k3sVersion)
        }

        func agentInfo() -> AgentInfo {
            AgentInfo(agentVersion: "0.1.0-test", nodeName: node, arch: "amd64", role: .agent, k3sVersion: k3sVersion.withLock { $0 })
        }

        func handle(_ request: IncomingRequest) async throws -> Reply {
            guard case .reachPeers(let reach) = request.payload else { throw ErrorResponse(.notImplemented, "unknown method \(request.method)") }
            return Reply(.reachPeers(ReachPeersResult(peers: reach.peers.map {
                ReachPeerResult(node: $0.node, host: $0.host, port: $0.port, outcome: .reachable, message: "", elapsedMs: 0)
            })))
        }
    }

    static func serve(_ agent: Agent, pki: FleetPKI, context: TLSContext? = nil, port: Int = 0,
                      configuration: ServerConfiguration = ServerConfiguration()) async throws -> ProtocolServer {
        try await ProtocolServer.bind(host: "127.0.0.1", port: port, security: .tls(try context ?? pki.agentContext(agent.node), expecting: .roles([.controller])),
                                      handler: agent, configuration: configuration)
    }

    static let configuration = AgentFleet.Configuration(connectTimeoutSeconds: 10,
                                                        backoff: Backoff(initialDelay: .milliseconds(50), maximumDelay: .milliseconds(400), attemptsMax: 3))

    @Test func theCrossCheckAndEveryRequestAfterItShareOneConnectionPerAgent() async throws {
        let directory = try TemporaryDirectory()
        let pki = try FleetPKI(in: directory.file("pki"))
        let agents = ["server-1", "agent-1", "agent-2"].map { Agent(node: $0) }
        var servers: [ProtocolServer] = []
        var endpoints: [String: AgentEndpoint] = [:]
        for agent in agents {
            let server = try await Self.serve(agent, pki: pki)
            servers.append(server)
            endpoints[agent.node] = AgentEndpoint(host: "127.0.0.1", port: server.port)
        }
        let fleet = AgentFleet(security: try pki.controllerSecurity(), endpoints: endpoints, configuration: Self.configuration)
        let nodes = try agents.map { InventoryNode(name: $0.node, role: .agent, version: try K3sVersion(v1)) }
        // The cross-check (`upkeep agents`, apply's preflight), a validation's question to every
        // agent, the cross-check again (serve's next rollout), and the same address book read anew.
        let first = await fleet.inspect(nodes)
        let peers = Dictionary(uniqueKeysWithValues: agents.map { ($0.node, [ReachPeer(node: "other", host: "10.0.0.9", port: 10250)]) })
        let answers = await PeerReachability.ask(fleet, peers: peers, timeoutSeconds: 3)
        await fleet.setEndpoints(endpoints)
        let second = await fleet.inspect(nodes)
        let handshakes = servers.map(\.handshakesCompleted)
        await fleet.close()
        for server in servers { await server.shutdown() }

        #expect(first.map(\.verdict) == Array(repeating: .reachable, count: 3), "\(first.map(\.message))")
        #expect(second.map(\.verdict) == Array(repeating: .reachable, count: 3), "\(second.map(\.message))")
        #expect(second.allSatisfy { $0.latencyMilliseconds != nil }, "each warm check still makes a round trip")
        for agent in agents {
            guard case .answered = answers[agent.node] else {
                Issue.record("\(agent.node): \(String(describing: answers[agent.node]))")
                continue
            }
        }
        #expect(handshakes == [1, 1, 1], "TLS handshakes per agent: \(handshakes)")
    }

    @Test func keepAlivePingsHoldTheConnectionPastTheAgentsIdleTimeout() async throws {
        let directory = try TemporaryDirectory()
        let pki = try FleetPKI(in: directory.file("pki"))
        let agent = Agent(node: "agent-1")
        var idle = ServerConfiguration()
        idle.idleTimeout = .seconds(4)
        let server = try await Self.serve(agent, pki: pki, configuration: idle)
        var configuration = Self.configuration
        configuration.keepAliveSeconds = 1
        let fleet = AgentFleet(security: try pki.controllerSecurity(), endpoints: ["agent-1": AgentEndpoint(host: "127.0.0.1", port: server.port)],
                               configuration: configuration)
        let node = InventoryNode(name: "agent-1", role: .agent, version: try K3sVersion(v1))
        let before = await fleet.inspect([node])
        // Past two of the agent's idle timeouts (it closes an idle connection within two,
        // PROTOCOL.md 11) with no request: only the fleet's Pings.
        try await Task.sleep(for: .seconds(10))
        let after = await fleet.inspect([node])
        let handshakes = server.handshakesCompleted
        await fleet.close()
        await server.shutdown()

        #expect(before.first?.verdict == .reachable && after.first?.verdict == .reachable, "\([before, after].compactMap(\.first?.message))")
        #expect(handshakes == 1, "the idle connection was kept: \(handshakes) handshakes")
    }

    @Test func aHelloFromBeforeTheNodesUpgradeIsAskedAgainOnANewConnection() async throws {
        let directory = try TemporaryDirectory()
        let pki = try FleetPKI(in: directory.file("pki"))
        let agent = Agent(node: "agent-1")
        let server = try await Self.serve(agent, pki: pki)
        let fleet = AgentFleet(security: try pki.controllerSecurity(), endpoints: ["agent-1": AgentEndpoint(host: "127.0.0.1", port: server.port)],
                               configuration: Self.configuration)
        let before = await fleet.inspect([InventoryNode(name: "agent-1", role: .agent, version: try K3sVersion(v1))])
        // The rollout upgraded the node: the open connection's Hello still names v1.
        agent.k3sVersion.withLock { $0 = v2 }
        let upgraded = InventoryNode(name: "agent-1", role: .agent, version: try K3sVersion(v2))
        let after = await fleet.inspect([upgraded])
        let again = await fleet.inspect([upgraded])
        let handshakes = server.handshakesCompleted
        await fleet.close()
        await server.shutdown()

        #expect(before.first?.verdict == .reachable && after.first?.verdict == .reachable && again.first?.verdict == .reachable,
                "\([before, after, again].compactMap(\.first?.message))")
        #expect(after.first?.agent?.k3sVersion == v2)
        #expect(handshakes == 2, "one connection before the upgrade, one after: \(handshakes)")
    }

    @Test func aLostConnectionIsDialledAgainWithBackoffWhileTheAgentIsDown() async throws {
        let directory = try TemporaryDirectory()
        let pki = try FleetPKI(in: directory.file("pki"))
        let agent = Agent(node: "agent-1")
        let context = try pki.agentContext(agent.node)
        let first = try await Self.serve(agent, pki: pki, context: context)
        let port = first.port
        // A backoff long enough that the dial after a failed one waits, however slow this machine is.
        var configuration = Self.configuration
        configuration.backoff = Backoff(initialDelay: .seconds(4), maximumDelay: .seconds(4), attemptsMax: 3)
        let fleet = AgentFleet(security: try pki.controllerSecurity(), endpoints: ["agent-1": AgentEndpoint(host: "127.0.0.1", port: port)],
                               configuration: configuration)
        let node = InventoryNode(name: "agent-1", role: .agent, version: try K3sVersion(v1))
        #expect(await fleet.inspect([node]).first?.verdict == .reachable)

        // The agent goes away: its connection is lost and the next dial refused.
        await first.shutdown()
        let down = await fleet.inspect([node]).first?.verdict
        let waitsBefore = ProtocolClient.limits.count(.reconnectBackoff)
        let stillDown = await fleet.inspect([node]).first?.verdict
        let waitsAfter = ProtocolClient.limits.count(.reconnectBackoff)
        guard case .unreachable = down, case .unreachable = stillDown else {
            Issue.record("the agent is down, yet: \(String(describing: down)), \(String(describing: stillDown))")
            await fleet.close()
            return
        }
        #expect(waitsAfter > waitsBefore, "the dial after a failed one waited its backoff, counted as reconnect_backoff")

        // The agent is back on its port: the fleet dials it again, once.
        let second = try await Self.serve(agent, pki: pki, context: context, port: port)
        var verdict = await fleet.inspect([node]).first?.verdict
        for _ in 0..<300 where verdict != .reachable {
            try await Task.sleep(for: .milliseconds(100))
            verdict = await fleet.inspect([node]).first?.verdict
        }
        let peers = await PeerReachability.ask(fleet, peers: ["agent-1": [ReachPeer(node: "other", host: "10.0.0.9", port: 10250)]], timeoutSeconds: 3)
        let handshakes = second.handshakesCompleted
        await fleet.close()
        await second.shutdown()

        #expect(verdict == .reachable, "\(String(describing: verdict))")
        guard case .answered = peers["agent-1"] else {
            Issue.record("reachPeers after the reconnect: \(String(describing: peers["agent-1"]))")
            return
        }
        #expect(handshakes == 1, "the agent back up was dialled once: \(handshakes)")
    }
}
