import Foundation
import UpkeepFleet
import UpkeepRollout

/// `upkeep-fleet-bench --warm`: the cross-check as a rollout and `upkeep serve` run it, on the
/// fleet's kept connections. Each round: every agent checked on a new fleet (cold: each dialled,
/// TCP, TLS 1.3 handshake, Hello, Ping; 64 at once), then again on the same fleet (warm: a Ping
/// each, all at once), then each agent alone on its warm connection. Prints, as key=value
/// (medians of the rounds):
///   cold_seconds                the cold check of every agent
///   warm_seconds                the warm check of every agent
///   slowest_rtt_seconds         the longest Ping round trip an agent reported in the warm check
///   slowest_single_warm_seconds the slowest warm check of one agent alone
///   warm_handshakes             TLS handshakes the agents completed during warm checks (0: none dialled)
enum WarmFanout {
    static func check(_ fleet: AgentFleet, _ nodes: [InventoryNode]) async -> (seconds: Double, slowestRTTSeconds: Double) {
        let clock = ContinuousClock()
        let started = clock.now
        let results = await fleet.inspect(nodes)
        let elapsed = seconds(clock.now - started)
        let bad = results.filter(\.blocksRollout)
        precondition(results.count == nodes.count && bad.isEmpty, "agents not reachable: \(bad.prefix(3).map(\.message))")
        let rtt = results.compactMap(\.latencyMilliseconds)
        precondition(rtt.count == nodes.count, "\(nodes.count - rtt.count) agents answered no Ping")
        return (elapsed, (rtt.max() ?? 0) / 1000)
    }

    static func run(_ bench: BenchFleet, rounds: Int) async {
        // Warm-up: code paths and the allocator, not measured.
        let warmUp = AgentFleet(security: bench.security, endpoints: bench.endpoints)
        _ = await check(warmUp, Array(bench.nodes.prefix(10)))
        _ = await check(warmUp, Array(bench.nodes.prefix(10)))
        await warmUp.close()
        var cold: [Double] = [], warm: [Double] = [], rtt: [Double] = [], single: [Double] = []
        var warmHandshakes = 0
        for _ in 0..<rounds {
            let fleet = AgentFleet(security: bench.security, endpoints: bench.endpoints)
            cold.append(await check(fleet, bench.nodes).seconds)
            let before = bench.handshakes
            let all = await check(fleet, bench.nodes)
            warm.append(all.seconds)
            rtt.append(all.slowestRTTSeconds)
            var worst = 0.0
            for node in bench.nodes { worst = max(worst, await check(fleet, [node]).seconds) }
            single.append(worst)
            warmHandshakes += bench.handshakes - before
            await fleet.close()
        }
        await bench.shutdown()
        let (coldMedian, warmMedian, rttMedian) = (median(cold), median(warm), median(rtt))
        print(String(format: "agents=%d cold_seconds=%.4f warm_seconds=%.4f slowest_rtt_seconds=%.4f slowest_single_warm_seconds=%.4f "
                     + "warm_handshakes=%d warm_ratio=%.2f", bench.nodes.count, coldMedian, warmMedian, rttMedian, median(single), warmHandshakes,
                     warmMedian / rttMedian))
    }
}
