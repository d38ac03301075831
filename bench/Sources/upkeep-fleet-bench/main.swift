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
/// With `--warm`, the fleet's connections are kept between checks, as a rollout and `upkeep
/// serve` keep them (`WarmFanout.swift`).
/// Usage: upkeep-fleet-bench [--agents N] [--rounds R] [--warm]
///        upkeep-fleet-bench install … (bench/agent-install-overhead: InstallBench.swift)
///        upkeep-fleet-bench stage|backup … (bench/agent-peak: AgentPeakBench.swift)

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
let bench = try await BenchFleet.start(agents: agents)
let (security, endpoints, nodes) = (bench.security, bench.endpoints, bench.nodes)
if CommandLine.arguments.contains("--warm") {
    await WarmFanout.run(bench, rounds: rounds)
    exit(0)
}

let fleet = AgentFleet(security: security, endpoints: endpoints)
let clock = ContinuousClock()
/// One check on new connections: the fleet's from the check before are closed first.
func checkAll(_ nodes: [InventoryNode]) async -> Duration {
    await fleet.close()
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
await bench.shutdown()

let fanoutMedian = median(fanout), slowestMedian = median(slowest), sequentialMedian = median(sequential)
print(String(format: "agents=%d fanout_seconds=%.4f slowest_single_seconds=%.4f sequential_seconds=%.4f ratio=%.2f",
             agents, fanoutMedian, slowestMedian, sequentialMedian, fanoutMedian / slowestMedian))
