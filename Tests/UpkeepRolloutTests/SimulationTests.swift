import Testing
import UpkeepRollout
import UpkeepSimulation

/// The rollout engine against a simulated cluster, agents, network and clock, seed by seed
/// (docs/planning.md, "Simulation"). A failure prints the seed's scenario and trace;
/// `scripts/simulate --seed N` replays it.
@Suite struct SimulationTests {
    static let chunks = 20
    static let seedsPerChunk: UInt64 = 100

    @Test("2,000 seeded rollouts keep every invariant and finish", arguments: 0..<chunks)
    func seededRollouts(chunk: Int) {
        let first = UInt64(chunk) * Self.seedsPerChunk + 1
        for seed in first..<(first + Self.seedsPerChunk) {
            let result = Simulation.run(seed: seed)
            #expect(result.passed, "\(result.report)")
            if !result.passed { return }
        }
    }

    @Test func aSeedReplaysExactly() {
        for seed: UInt64 in [7, 1101, 12899] {
            let first = Simulation.run(seed: seed, traceLines: 10_000)
            let second = Simulation.run(seed: seed, traceLines: 10_000)
            #expect(first.trace == second.trace && first.events == second.events, "seed \(seed) did not replay")
            #expect(first.events > 20)
        }
    }

    @Test func seedsCoverBothOutcomesAndEveryFault() {
        var completed = 0, rolledBack = 0
        for seed: UInt64 in 1...100 {
            switch Simulation.run(seed: seed).outcome {
            case .completed: completed += 1
            case .rolledBack: rolledBack += 1
            default: break
            }
        }
        #expect(completed > 50 && rolledBack > 5)
    }

    /// The invariants are only worth something if a broken world trips them.
    @Test(arguments: [Simulation.Sabotage.uncordonIsANoOp, .drainTakesEveryReplica, .installJumpsToTheTarget])
    func sabotageIsCaught(sabotage: Simulation.Sabotage) {
        let caught = (UInt64(1)...40).filter { !Simulation.run(seed: $0, sabotage: sabotage).passed }.count
        #expect(caught >= 4, "\(sabotage) went unnoticed in \(40 - caught) of 40 seeds")
    }

    /// The `installKills` fault reaches the points of an install the agent's recovery tells apart
    /// (the later ones, in probes that fail or in a revert, only where a version fails), and the
    /// seeds that had it pass: no kill started a rollback.
    @Test func agentsAreKilledAtEveryPointOfAnInstall() {
        let points = ["before the binary is placed", "while the new k3s starts", "while the new k3s is probed",
                      "while the previous binary is put back"]
        var hits = Dictionary(uniqueKeysWithValues: points.map { ($0, 0) })
        var completedAfterKills = 0
        for seed: UInt64 in 1...400 where Scenario.make(seed: seed).faults.installKills > 0 {
            let result = Simulation.run(seed: seed, traceLines: 100_000)
            #expect(result.passed, "\(result.report)")
            let kills = result.trace.filter { $0.contains("fault: agent on") && $0.contains(" killed during ") }
            for point in points { hits[point]! += kills.filter { $0.hasSuffix(point) }.count }
            if !kills.isEmpty, case .completed = result.outcome { completedAfterKills += 1 }
        }
        #expect(hits[points[0]]! >= 10 && hits[points[1]]! >= 10, "\(hits)")
        #expect(hits[points[2]]! + hits[points[3]]! >= 1, "\(hits)")
        #expect(completedAfterKills >= 20, "only \(completedAfterKills) rollouts completed after an agent was killed mid-install")
    }

    /// "No rollback without a probe failure of the new version": an agent whose restart reverts
    /// an install with the new binary live (the behaviour before #15) is caught.
    @Test func aVerdictFromAnAgentRestartIsCaught() {
        let seeds = Self.seeds(count: 8) { result in
            result.trace.contains { $0.contains(" killed during ") && ($0.hasSuffix("starts") || $0.hasSuffix("probed")) }
        }
        #expect(seeds.count == 8)
        var caught = 0
        for seed in seeds {
            let result = Simulation.run(seed: seed, sabotage: .restartedAgentRevertsInstall)
            if result.violations.contains(where: { $0.contains("no rollback without a probe failure of the new version") }) { caught += 1 }
        }
        #expect(caught >= 6, "only \(caught) of 8 sabotaged seeds broke the rule")
    }

    /// The first `count` seeds with install kills whose honest run passes and shows `applies`.
    static func seeds(count: Int, where applies: (Simulation.Result) -> Bool) -> [UInt64] {
        var found: [UInt64] = []
        for seed in UInt64(1)...2000 where found.count < count && Scenario.make(seed: seed).faults.installKills > 0 {
            let result = Simulation.run(seed: seed, traceLines: 100_000)
            if result.passed && applies(result) { found.append(seed) }
        }
        return found
    }
}
