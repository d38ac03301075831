import Foundation
import Testing
@testable import UpkeepCLI
import UpkeepCore
import UpkeepFleet
import UpkeepPKI
import UpkeepProtocol
import UpkeepRollout
import UpkeepTestSupport
import UpkeepTLS

/// A command's `ClusterSession` reaches every agent over one mutual-TLS connection, whoever in
/// the command asks (the cross-check of `agents`/`plan`/`apply`, the rollout, the validation),
/// and closes them with the session; a fleet lent by `serve` outlives the session.
@Suite struct SessionAgentsTests {
    struct Agent: RequestHandler {
        let node: String
        func agentInfo() -> AgentInfo { AgentInfo(agentVersion: "0.1.0-test", nodeName: node, arch: "amd64", role: .agent, k3sVersion: "v1.30.6+k3s1") }
        func handle(_ request: IncomingRequest) async throws -> Reply { throw ErrorResponse(.notImplemented, "not served here: \(request.method)") }
    }

    /// Two agents on 127.0.0.1, a configuration naming their CA and the controller's identity,
    /// and the reading that gives their addresses. The API's address is unreachable: nothing here reads it.
    struct World {
        let directory: TemporaryDirectory
        let config: ControllerConfig
        let servers: [ProtocolServer]
        let reading: FleetReading

        static func make() async throws -> World {
            let directory = try TemporaryDirectory()
            let pki = PKIDirectory(path: directory.file("pki"))
            _ = try pki.initialize(validity: PKIDirectory.validity(days: 2))
            try pki.issue(try PeerIdentity(role: .controller, name: "controller"), validity: PKIDirectory.validity(days: 1))
            var servers: [ProtocolServer] = []
            var nodes: [FleetNode] = []
            for node in ["server-1", "agent-1"] {
                let identity = try pki.issue(try PeerIdentity(role: .agent, name: node), validity: PKIDirectory.validity(days: 1))
                let context = try TLSContext.internal(ca: try Certificate.loadChain(pemFile: pki.caCertificatePath), chain: [identity.certificate],
                                                      key: identity.key)
                let server = try await ProtocolServer.bind(host: "127.0.0.1", port: 0, security: .tls(context, expecting: .roles([.controller])),
                                                           handler: Agent(node: node))
                servers.append(server)
                nodes.append(FleetNode(node: InventoryNode(name: node, role: .agent, version: try K3sVersion("v1.30.6+k3s1")),
                                       agent: AgentEndpoint(host: "127.0.0.1", port: server.port)))
            }
            // An API nothing here reads: the session opens its client, the test never asks it.
            _ = try directory.writeUnreachableKubeconfig(to: "kubeconfig")
            let config = try ControllerConfig.parse("""
                kubeconfig: kubeconfig
                pki: {ca: pki/ca.crt, certificate: pki/controllers/controller.crt, key: pki/controllers/controller.key}
                stateDir: state
                releases: {githubAPI: "http://127.0.0.1:1/", channelServer: "http://127.0.0.1:1/v1-release/channels", insecure: true}
                """, file: directory.file("upkeep.yaml"))
            return World(directory: directory, config: config, servers: servers, reading: FleetReading(nodes: nodes, volumes: []))
        }

        /// Polls (up to 60 s) until no agent holds a connection from the controller.
        func everyConnectionClosed() async throws -> Bool {
            for _ in 0..<600 {
                if servers.allSatisfy({ $0.connectionCount == 0 }) { return true }
                try await Task.sleep(for: .milliseconds(100))
            }
            return false
        }

        func shutdown() async {
            for server in servers { await server.shutdown() }
        }
    }

    @Test func aCommandReachesEachAgentOverOneConnectionAndClosesItWithTheSession() async throws {
        let world = try await World.make()
        let (first, second, same) = try await ClusterSession.with(world.config) { session in
            // The preflight's cross-check, then the rollout's and the validation's fleet, then
            // the cross-check again (as `apply --all` runs one per stage).
            let first = try await session.inspectAgents(world.reading)
            let rollout = try await session.fleet(for: world.reading)
            let validation = try await session.fleet(for: world.reading)
            _ = try await rollout.client(for: "server-1").connection()
            let second = try await session.inspectAgents(world.reading)
            return (first, second, rollout === validation)
        }
        let handshakes = world.servers.map(\.handshakesCompleted)
        let closed = try await world.everyConnectionClosed()
        await world.shutdown()

        let good = first.allSatisfy(\.isGood) && second.allSatisfy(\.isGood)
        #expect(good, "\(first.map(\.state)) \(second.map(\.state))")
        #expect(same, "one fleet for the session")
        #expect(handshakes == [1, 1], "TLS handshakes per agent: \(handshakes)")
        #expect(closed, "the session closed its connections")
    }

    @Test func aFleetLentBySessionsOutlivesThem() async throws {
        let world = try await World.make()
        let lent = AgentFleet(security: try ClusterSession.fleetSecurity(world.config))
        for _ in 0..<3 {
            let rows = try await ClusterSession.with(world.config, agents: lent) { try await $0.inspectAgents(world.reading) }
            let good = rows.allSatisfy(\.isGood)
            #expect(good, "\(rows.map(\.state))")
        }
        let handshakes = world.servers.map(\.handshakesCompleted)
        let open = world.servers.map(\.connectionCount)
        await lent.close()
        let closed = try await world.everyConnectionClosed()
        await world.shutdown()

        #expect(handshakes == [1, 1], "three sessions, one connection per agent: \(handshakes)")
        #expect(open == [1, 1], "still open after the sessions ended: \(open)")
        #expect(closed)
    }
}
