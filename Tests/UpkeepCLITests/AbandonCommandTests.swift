import Foundation
import Testing
import UpkeepRollout
import UpkeepRuntimeTestSupport
import UpkeepStore
import UpkeepTestSupport
import UpkeepCore

/// `upkeep abandon` as the built binary runs it, over a real state database holding a rollout
/// that a controller left in the middle (a node cordoned, requests unanswered).
@Suite struct AbandonCommandTests {
    /// Records rollout r1 up to the moment its first node is cordoned and being drained, as a
    /// controller that then died would leave it. Returns the config path and the cordoned node.
    static func unfinishedState(_ directory: TemporaryDirectory) throws -> (config: String, cordoned: String) {
        let store = try StateStore(stateDirectory: directory.file("state"))
        let start = Instant(milliseconds: Int64(Date().timeIntervalSince1970 * 1000) - 60_000)
        let left = try RolloutFixtures.record(try RolloutFixtures.engine("r1"), world: RolloutFixtures.world(), in: store,
                                              holder: "dead controller", start: start) { engine in
            !engine.cordonedByUpkeep.isEmpty && engine.unansweredRequests.contains { $0.command.name == "drain" }
        }
        let cordoned = try #require(left.cordonedByUpkeep.first)
        #expect(left.status == .running)
        return (try directory.write("stateDir: state\n", to: "upkeep.yaml"), cordoned)
    }

    @Test func abandonRecordsTheOutcomeListsWhatIsLeftAndFreesTheWayForANewRollout() throws {
        let directory = try TemporaryDirectory()
        let (config, cordoned) = try Self.unfinishedState(directory)

        // Not on a terminal and no --yes: refused, nothing recorded.
        let unconfirmed = try UpkeepBinary.run(["abandon", "--config", config])
        #expect(unconfirmed.status == 2 && unconfirmed.error.contains("--yes"), "\(unconfirmed.output)\(unconfirmed.error)")
        let store = try StateStore(stateDirectory: directory.file("state"))
        #expect(try store.unfinishedRollout()?.id == "r1")

        // A live controller holds the lease: refused with the lease code, nothing recorded.
        try store.acquireLease(holder: "live controller", ttlMilliseconds: 600_000, now: Instant(milliseconds: Int64(Date().timeIntervalSince1970 * 1000)))
        let raced = try UpkeepBinary.run(["abandon", "--config", config, "--yes"])
        #expect(raced.status == 6 && raced.error.contains("live controller"), "\(raced.output)\(raced.error)")
        #expect(try store.unfinishedRollout()?.id == "r1")
        try store.releaseLease(holder: "live controller")

        let abandoned = try UpkeepBinary.run(["abandon", "--config", config, "--yes", "--reason", "node rebuilt by hand"])
        #expect(abandoned.status == 0, "\(abandoned.output)\(abandoned.error)")
        #expect(abandoned.output.contains("warning: \(cordoned): left cordoned by Upkeep: `kubectl uncordon \(cordoned)`"), "\(abandoned.output)")
        #expect(abandoned.output.contains("drain was sent and not answered"), "\(abandoned.output)")
        #expect(abandoned.output.contains("rollout r1 abandoned: node rebuilt by hand"), "\(abandoned.output)")
        #expect(try store.unfinishedRollout() == nil)
        #expect(try store.currentLease() == nil, "abandon gives the lease back")
        #expect(try store.history(limit: 1).first?.outcome == .abandoned(reason: "node rebuilt by hand"))
        let status = try UpkeepBinary.run(["status", "--config", config])
        #expect(status.output.hasPrefix("last rollout: r1") && status.output.contains("abandoned: node rebuilt by hand"), "\(status.output)")
        #expect(status.output.contains("cordoned by upkeep: \(cordoned)"), "\(status.output)")
        let metrics = try UpkeepBinary.run(["metrics", "--config", config])
        #expect(metrics.output.contains(#"upkeep_rollouts_total{outcome="abandoned"} 1"#), "\(metrics.output)")

        // Nothing left to abandon or resume; a new rollout may be recorded.
        let again = try UpkeepBinary.run(["abandon", "--config", config, "--yes"])
        #expect(again.status == 2 && again.error.contains("no unfinished rollout"), "\(again.error)")
        let byID = try UpkeepBinary.run(["abandon", "r1", "--config", config, "--yes"])
        #expect(byID.status == 2 && byID.error.contains("already finished (abandoned: node rebuilt by hand)"), "\(byID.error)")
        let unknown = try UpkeepBinary.run(["abandon", "r9", "--config", config, "--yes"])
        #expect(unknown.status == 2 && unknown.error.contains("no rollout r9"), "\(unknown.error)")
        let resume = try UpkeepBinary.run(["resume", "--config", config])
        #expect(resume.status == 2, "\(resume.output)\(resume.error)")
        let now = Instant(milliseconds: Int64(Date().timeIntervalSince1970 * 1000))
        try store.acquireLease(holder: "test", ttlMilliseconds: 60_000, now: now)
        try store.createRollout(try RolloutFixtures.engine("r2"), holder: "test", now: now)
    }

    @Test func anEmptyReasonIsAUsageError() throws {
        let directory = try TemporaryDirectory()
        let (config, _) = try Self.unfinishedState(directory)
        let result = try UpkeepBinary.run(["abandon", "--config", config, "--yes", "--reason", "  "])
        #expect(result.status == 2 && result.error.contains("--reason is empty"), "\(result.error)")
    }
}
