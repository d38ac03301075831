import Foundation
import UpkeepCore
import UpkeepFleet
import UpkeepPKI
import UpkeepProtocol
import UpkeepRollout
import UpkeepTLS

/// An agent that only says hello: the cross-check needs nothing else.
struct HelloOnlyAgent: RequestHandler {
    let info: AgentInfo
    func agentInfo() -> AgentInfo { info }
    func handle(_ request: IncomingRequest) async throws -> Reply {
        throw ErrorResponse(.notImplemented, "this bench agent only answers Hello and Ping")
    }
}

/// `agents` protocol servers in this process on 127.0.0.1, each with its own
/// `upkeep://agent/node-N` certificate (ECDSA P-256) from one bench CA, and the controller's
/// identity from the same CA.
struct BenchFleet {
    let security: FleetSecurity
    let servers: [ProtocolServer]
    let endpoints: [String: AgentEndpoint]
    let nodes: [InventoryNode]

    static func start(agents: Int) async throws -> BenchFleet {
        let version = try K3sVersion("v1.30.6+k3s1")
        let validity = PKIDirectory.validity(days: 1)
        let authority = try CertificateAuthority.create(commonName: "upkeep bench CA", keyType: .ecdsaP256, validity: validity)
        let controller = try authority.issue(identity: try PeerIdentity(role: .controller, name: "bench"), keyType: .ecdsaP256, validity: validity)
        let security = FleetSecurity(context: try TLSContext.internal(ca: [authority.certificate], chain: [controller.certificate], key: controller.key))
        var servers: [ProtocolServer] = []
        var endpoints: [String: AgentEndpoint] = [:]
        var nodes: [InventoryNode] = []
        for index in 1...agents {
            let name = "node-\(index)"
            let identity = try authority.issue(identity: try PeerIdentity(role: .agent, name: name), keyType: .ecdsaP256, validity: validity)
            let context = try TLSContext.internal(ca: [authority.certificate], chain: [identity.certificate], key: identity.key)
            let info = AgentInfo(agentVersion: "bench", nodeName: name, arch: "amd64", role: .agent, k3sVersion: version.description)
            let server = try await ProtocolServer.bind(host: "127.0.0.1", port: 0, security: .tls(context, expecting: .roles([.controller])),
                                                       handler: HelloOnlyAgent(info: info))
            servers.append(server)
            endpoints[name] = AgentEndpoint(host: "127.0.0.1", port: server.port)
            nodes.append(InventoryNode(name: name, role: .agent, arch: .amd64, version: version))
        }
        return BenchFleet(security: security, servers: servers, endpoints: endpoints, nodes: nodes)
    }

    /// TLS handshakes the agents completed, all together.
    var handshakes: Int { servers.reduce(0) { $0 + $1.handshakesCompleted } }

    func shutdown() async {
        for server in servers { await server.shutdown(gracePeriod: .seconds(1)) }
    }
}
