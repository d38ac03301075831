// Measurement driver for the controller's bench/ scripts. Each mode prints one
// `key=value ...` line that the scripts turn into ratios against a baseline from the same run.
import Foundation
import UpkeepController
import UpkeepCore
import UpkeepSimulation

func argument(_ name: String, default value: String) -> String {
    let arguments = CommandLine.arguments
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return value }
    return arguments[index + 1]
}

func version(_ text: String) -> K3sVersion {
    do { return try K3sVersion(text) } catch { fatalError("\(error)") }
}

/// Plans a synthetic cluster of `nodes` nodes and `volumes` volumes from v1.29 to v1.31 (two
/// hops, agents jumping once) `repeats` times and prints the fastest planning time.
func planScale(nodes: Int, volumes: Int, concurrency: Int, repeats: Int) throws {
    let inventory = SyntheticCluster.make(servers: 5, agents: nodes - 5, volumes: volumes, version: version("v1.29.9+k3s1"), seed: 42)
    let available = ["v1.29.9+k3s1", "v1.30.5+k3s1", "v1.30.6+k3s1", "v1.31.4+k3s1"].map(version)
    var best = Double.infinity
    var plan: Plan?
    for _ in 0..<repeats {
        let clock = ContinuousClock()
        let start = clock.now
        plan = try Planner.plan(inventory: inventory, target: version("v1.31.4+k3s1"), available: available,
                                policy: PlanPolicy(agentConcurrency: concurrency))
        let elapsed = start.duration(to: clock.now)
        best = min(best, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }
    guard let plan else { return }
    let agentWaves = plan.waves.filter { $0.role == .agent }.count
    print("nodes=\(nodes) volumes=\(volumes) seconds=\(String(format: "%.4f", best)) hops=\(plan.hops.count) "
          + "agent_waves=\(agentWaves) separations=\(plan.longhorn.separations)")
}

let mode = CommandLine.arguments.dropFirst().first ?? ""
switch mode {
case "plan-scale":
    try planScale(nodes: Int(argument("--nodes", default: "5000")) ?? 5000,
                  volumes: Int(argument("--volumes", default: "20000")) ?? 20000,
                  concurrency: Int(argument("--concurrency", default: "10")) ?? 10,
                  repeats: Int(argument("--repeats", default: "3")) ?? 3)
default:
    print("usage: upkeep-controller-bench plan-scale [--nodes N] [--volumes V] [--concurrency C] [--repeats R]")
    exit(2)
}
