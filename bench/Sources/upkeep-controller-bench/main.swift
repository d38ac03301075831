// Measurement driver for the controller's bench/ scripts. Each mode prints one
// `key=value ...` line that the scripts turn into ratios against a baseline from the same run.
import Foundation
import UpkeepRollout
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

/// Runs seeds `first..<first+count` of the deterministic rollout simulation; prints each
/// failure's report (its seed reproduces it) and a summary line.
func simulate(first: UInt64, count: UInt64, verbose: Bool) -> Bool {
    let clock = ContinuousClock()
    let start = clock.now
    var failures = 0
    var outcomes: [String: Int] = [:]
    var events = 0
    for seed in first..<(first + count) {
        let result = Simulation.run(seed: seed, traceLines: verbose ? 100_000 : 60)
        events += result.events
        let outcome = result.outcome.map { outcome -> String in
            switch outcome {
            case .completed: "completed"
            case .rolledBack: "rolled_back"
            case .failed: "failed"
            case .abandoned: "abandoned"
            }
        } ?? "unfinished"
        outcomes[outcome, default: 0] += 1
        if !result.passed {
            failures += 1
            print(result.report)
            print("")
        }
        if verbose {
            print("seed \(seed): \(outcome) after \(result.events) events, \(result.simulatedSeconds) simulated s")
            print(result.trace.joined(separator: "\n"))
        }
    }
    let elapsed = start.duration(to: clock.now)
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    let summary = outcomes.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
    print("seeds=\(count) first=\(first) failures=\(failures) \(summary) events=\(events) seconds=\(String(format: "%.2f", seconds))")
    return failures == 0
}

let mode = CommandLine.arguments.dropFirst().first ?? ""
switch mode {
case "plan-scale":
    try planScale(nodes: Int(argument("--nodes", default: "5000")) ?? 5000,
                  volumes: Int(argument("--volumes", default: "20000")) ?? 20000,
                  concurrency: Int(argument("--concurrency", default: "10")) ?? 10,
                  repeats: Int(argument("--repeats", default: "3")) ?? 3)
case "engine-scale":
    let nodes = Int(argument("--nodes", default: "5000")) ?? 5000
    try engineScale(nodes: nodes, volumes: Int(argument("--volumes", default: "\(nodes * 4)")) ?? nodes * 4,
                    concurrency: Int(argument("--concurrency", default: "10")) ?? 10,
                    stateDirectory: argument("--state", default: NSTemporaryDirectory() + "/upkeep-engine-scale-\(getpid())"))
case "simulate":
    let single = argument("--seed", default: "")
    let ok = single.isEmpty
        ? simulate(first: UInt64(argument("--from", default: "1")) ?? 1, count: UInt64(argument("--seeds", default: "1000")) ?? 1000, verbose: false)
        : simulate(first: UInt64(single) ?? 1, count: 1, verbose: true)
    exit(ok ? 0 : 1)
default:
    print("usage: upkeep-controller-bench plan-scale [--nodes N] [--volumes V] [--concurrency C] [--repeats R]")
    print("       upkeep-controller-bench engine-scale [--nodes N] [--volumes V] [--concurrency C] [--state DIR]")
    print("       upkeep-controller-bench simulate [--seeds N] [--from S] | --seed S")
    exit(2)
}
