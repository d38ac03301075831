import Foundation
import NIOPosix
import UpkeepRollout
import UpkeepCore
import UpkeepFleet
import UpkeepPKI
import UpkeepProtocol
import UpkeepTLS

/// Measures `AgentFleet.inspect` (what `upkeep agents` and the preflight run) against many
/// agents over real mutual TLS: each agent is a protocol server in this process with its own
/// `upkeep://agent/node-N` certificate; the controller side dials each one afresh (TCP, TLS 1.3
/// handshake, Hello, Ping). Prints, as key=value:
///   fanout_seconds       one inspect of every agent at once (median of rounds)
///   slowest_single_seconds / sequential_seconds  the same check one agent at a time: the slowest
///                        single one, and all of them in a row
///   ratio                fanout_seconds / slowest_single_seconds
/// Usage: upkeep-fleet-bench [--agents N] [--rounds R]
///        upkeep-fleet-bench install … (bench/agent-install-overhead: InstallBench.swift)
///        upkeep-fleet-bench stage|backup … (bench/agent-peak: AgentPeakBench.swift)

/// An agent that only says hello: the cross-check needs nothing else.
struct HelloOnlyAgent: RequestHandler {
    let info: AgentInfo
    func agentInfo() -> AgentInfo { info }
    func handle(_ request: IncomingRequest) async throws -> Reply {
        throw ErrorResponse(.notImplemented, "this bench agent only answers Hello and Ping")
    }
}

switch CommandLine.arguments.dropFirst().first {
case "install": try await InstallBench.run(); exit(0)
case "stage": try await AgentPeakBench.stage(); exit(0)
case "backup": try await AgentPeakBench.backup(); exit(0)
default: break
}

func argument(_ name: String, default value: Int) -> Int {
    let arguments = CommandLine.arguments
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count, let number = Int(arguments[index + 1]) else { return value }
    return number
}

func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

let agents = max(1, argument("--agents", default: 200))
let rounds = max(1, argument("--rounds", default: 3))
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

let fleet = AgentFleet(security: security, endpoints: endpoints)
let clock = ContinuousClock()
func checkAll(_ nodes: [InventoryNode]) async -> Duration {
    let started = clock.now
    let results = await fleet.inspect(nodes)
    let elapsed = clock.now - started
    let bad = results.filter(\.blocksRollout)
    precondition(results.count == nodes.count && bad.isEmpty, "agents not reachable: \(bad.prefix(3).map(\.message))")
    return elapsed
}

// Warm-up: code paths and the allocator, not measured.
_ = await checkAll(Array(nodes.prefix(10)))
var fanout: [Double] = []
var slowest: [Double] = []
var sequential: [Double] = []
for _ in 0..<rounds {
    fanout.append(seconds(await checkAll(nodes)))
    var worst = 0.0
    var total = 0.0
    for node in nodes {
        let single = seconds(await checkAll([node]))
        worst = max(worst, single)
        total += single
    }
    slowest.append(worst)
    sequential.append(total)
}
for server in servers { await server.shutdown(gracePeriod: .seconds(1)) }

let fanoutMedian = median(fanout), slowestMedian = median(slowest), sequentialMedian = median(sequential)
print(String(format: "agents=%d fanout_seconds=%.4f slowest_single_seconds=%.4f sequential_seconds=%.4f ratio=%.2f",
             agents, fanoutMedian, slowestMedian, sequentialMedian, fanoutMedian / slowestMedian))
