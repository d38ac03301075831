import Foundation
import Testing
import UpkeepRollout
import UpkeepRuntimeTestSupport
import UpkeepStore
import UpkeepTestSupport
import UpkeepCore

/// `upkeep history` and `upkeep status` as the built binary prints them, over a real state
/// database that a rollout was recorded into.
@Suite struct HistoryStatusCommandTests {
    /// A state directory holding one completed rollout and one that failed and rolled back,
    /// and the upkeep.yaml that points at it.
    static func recordedState(_ directory: TemporaryDirectory) throws -> String {
        let store = try StateStore(stateDirectory: directory.file("state"))
        let start = Instant(milliseconds: Int64(Date().timeIntervalSince1970 * 1000) - 3_600_000)
        func record(_ id: String, world: WorldModel, at start: Instant) throws {
            try RolloutFixtures.record(try RolloutFixtures.engine(id, world: world), world: world, in: store, start: start)
        }
        try record("r1", world: RolloutFixtures.world(), at: start)
        var failing = RolloutFixtures.world()
        failing.failingInstalls["agent-2"] = RolloutFixtures.target
        try record("r2", world: failing, at: start.adding(milliseconds: 600_000))
        return try directory.write("stateDir: state\n", to: "upkeep.yaml")
    }

    @Test func historyListsRolloutsNewestFirstWithOutcomes() throws {
        let directory = try TemporaryDirectory()
        let config = try Self.recordedState(directory)
        let table = try UpkeepBinary.run(["--config", config, "history"])
        #expect(table.status == 0, "\(table.error)")
        let lines = table.output.split(separator: "\n")
        #expect(lines.first?.hasPrefix("ID") == true)
        #expect(lines.count == 3, "\(table.output)")
        #expect(lines[1].hasPrefix("r2") && lines[1].contains("rolled back"), "\(table.output)")
        #expect(lines[2].hasPrefix("r1") && lines[2].contains("completed") && lines[2].contains("3 done"), "\(table.output)")

        let json = try UpkeepBinary.run(["history", "--config", config, "-o", "json", "--since", "1d"])
        #expect(json.status == 0, "\(json.error)")
        let records = try JSONDecoder().decode([RolloutRecord].self, from: Data(json.output.utf8))
        #expect(records.map(\.id) == ["r2", "r1"])
        #expect(records[1].outcome == .completed)

        let detail = try UpkeepBinary.run(["history", "--config", config, "r2"])
        #expect(detail.status == 0, "\(detail.error)")
        #expect(detail.output.contains("rollout r2: ") && detail.output.contains("agent-2"), "\(detail.output)")
    }

    @Test func statusShowsTheLastRolloutNodeByNode() throws {
        let directory = try TemporaryDirectory()
        let config = try Self.recordedState(directory)
        let result = try UpkeepBinary.run(["status", "--config", config])
        #expect(result.status == 0, "\(result.error)")
        #expect(result.output.hasPrefix("last rollout: r2"), "\(result.output)")
        for node in ["server-1", "agent-1", "agent-2"] { #expect(result.output.contains(node)) }
    }

    @Test func badInputIsAUsageErrorAndAMissingDatabaseIsEmpty() throws {
        let directory = try TemporaryDirectory()
        let config = try directory.write("stateDir: fresh\n", to: "upkeep.yaml")
        let empty = try UpkeepBinary.run(["history", "--config", config])
        #expect(empty.status == 0 && empty.output.contains("no rollouts recorded"), "\(empty.output)\(empty.error)")
        let badAge = try UpkeepBinary.run(["history", "--config", config, "--since", "yesterday"])
        #expect(badAge.status == 2 && badAge.error.contains("30d"), "\(badAge.error)")
        let badConfig = try directory.write("stateDir: fresh\nsurprise: 1\n", to: "bad.yaml")
        let refused = try UpkeepBinary.run(["status", "--config", badConfig])
        #expect(refused.status == 2 && refused.error.contains("surprise"), "\(refused.error)")
    }
}
