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
}
