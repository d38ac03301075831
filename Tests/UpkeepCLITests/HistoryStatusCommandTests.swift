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

    /// What an outside probe tripped on (issue 19): an unknown id is a usage error as in
    /// `report`; a step a finished rollout never started is "not started", not "waiting".
    @Test func anUnknownIDIsAUsageErrorAndStepsNeverStartedSaySo() throws {
        let directory = try TemporaryDirectory()
        let config = try Self.recordedState(directory)
        let unknown = try UpkeepBinary.run(["history", "--config", config, "UNKNOWN-ID"])
        #expect(unknown.status == 2 && unknown.error.contains("no rollout UNKNOWN-ID"), "\(unknown.status) \(unknown.error)")

        // agent-1 fails and the rollout rolls back: agent-2 never started.
        let store = try StateStore(stateDirectory: directory.file("state"))
        var failing = RolloutFixtures.world()
        failing.failingInstalls["agent-1"] = RolloutFixtures.target
        try RolloutFixtures.record(try RolloutFixtures.engine("r3", world: failing), world: failing, in: store,
                                   start: Instant(milliseconds: Int64(Date().timeIntervalSince1970 * 1000) - 60_000))
        let detail = try UpkeepBinary.run(["history", "--config", config, "r3"])
        #expect(detail.status == 0, "\(detail.error)")
        let agent2 = detail.output.split(separator: "\n").first { $0.hasPrefix("agent-2") }
        #expect(agent2?.contains("not started") == true && agent2?.contains("pending") == false, "\(detail.output)")
        let list = try UpkeepBinary.run(["history", "--config", config])
        let r3 = list.output.split(separator: "\n").first { $0.hasPrefix("r3") }
        #expect(r3?.contains("1 not started") == true && r3?.contains("waiting") == false, "\(list.output)")
        let status = try UpkeepBinary.run(["status", "--config", config])
        #expect(status.output.contains("not started") && !status.output.contains("pending"), "\(status.output)")
    }

    /// `status`, `history` and `report` only read: the database and its WAL are byte for byte
    /// the same after them, and a missing database is not created.
    @Test func readOnlyCommandsDoNotWriteTheDatabase() throws {
        let directory = try TemporaryDirectory()
        let config = try Self.recordedState(directory)
        let state = directory.file("state")
        func snapshot() throws -> [String: Data] {
            var files: [String: Data] = [:]
            // SQLite's shared-memory index is not the database; a reader of a WAL database may
            // leave an empty -wal where none was (it cannot remove it): no page written.
            for name in try FileManager.default.contentsOfDirectory(atPath: state) where !name.hasSuffix("-shm") {
                let data = try Data(contentsOf: URL(fileURLWithPath: "\(state)/\(name)"))
                if !(name.hasSuffix("-wal") && data.isEmpty) { files[name] = data }
            }
            return files
        }
        let before = try snapshot()
        for arguments in [["status"], ["history"], ["history", "r1"], ["report", "r1"], ["report", "--since", "30d"]] {
            let result = try UpkeepBinary.run(arguments + ["--config", config])
            #expect(result.status == 0, "\(arguments): \(result.error)")
        }
        let after = try snapshot()
        let changed = Set(after.keys).union(before.keys).filter { after[$0] != before[$0] }.sorted()
        #expect(changed.isEmpty, "the read-only commands changed the state directory: \(changed)")

        let fresh = try directory.write("stateDir: untouched\n", to: "fresh.yaml")
        #expect(try UpkeepBinary.run(["status", "--config", fresh]).status == 0)
        #expect(!FileManager.default.fileExists(atPath: directory.file("untouched")), "status created a state directory")
    }

    /// A database another process holds (the sqlite3 shell in a write transaction): a command
    /// that writes says so and to retry, after the busy timeout, instead of "move it away"; a
    /// read-only one answers at once.
    @Test func aLockedDatabaseIsSaidToBeHeldAndStatusStillReads() throws {
        let directory = try TemporaryDirectory()
        let config = try Self.recordedState(directory)
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/bin/sh")
        holder.arguments = ["-c", "(echo 'BEGIN EXCLUSIVE; INSERT INTO grdb_migrations VALUES(\"held\");'; sleep 16) | sqlite3 '\(directory.file("state/upkeep.db"))'"]
        try holder.run()
        // Held for longer than the busy timeout (10 s) and the commands below; then it ends by itself.
        defer { holder.waitUntilExit() }
        Thread.sleep(forTimeInterval: 1)
        let status = try UpkeepBinary.run(["status", "--config", config])
        #expect(status.status == 0 && status.output.hasPrefix("last rollout: r2"), "\(status.error)")
        let writer = try UpkeepBinary.run(["backup", "list", "--config", config])
        #expect(writer.status == 9, "\(writer.status) \(writer.error)")
        #expect(writer.error.contains("is locked by another process") && writer.error.contains("then retry")
                && !writer.error.contains("move it away"), "\(writer.error)")
    }

    /// `resume` with nothing to resume says so, first and only, without reading the cluster.
    @Test func resumeWithNothingToResumeSaysSoFirst() throws {
        let directory = try TemporaryDirectory()
        let config = try Self.recordedState(directory)
        let resumed = try UpkeepBinary.run(["resume", "--config", config])
        #expect(resumed.status == 2 && resumed.output.isEmpty, "\(resumed.status) \(resumed.output)")
        #expect(resumed.error.hasPrefix("Error: no unfinished rollout to resume"), "\(resumed.error)")
        let finished = try UpkeepBinary.run(["resume", "--config", config, "r1"])
        #expect(finished.status == 2 && finished.error.contains("rollout r1 already finished"), "\(finished.error)")
    }

    @Test func periodsConfigFilesAndTheirBytesAreExplained() throws {
        let directory = try TemporaryDirectory()
        let config = try directory.write("stateDir: fresh\n", to: "upkeep.yaml")
        let zero = try UpkeepBinary.run(["history", "--config", config, "--since", "0d"])
        #expect(zero.status == 2 && zero.error.contains("a period of 0 holds no rollouts; give at least 1d"), "\(zero.error)")
        let device = try UpkeepBinary.run(["status", "--config", "/dev/zero"])
        #expect(device.status == 2 && device.error.contains("/dev/zero: (file): is larger than 1 MiB (or has no end"), "\(device.error)")
        let escape = try directory.write("stateDir: fresh\nsur\u{1B}[31mprise: 1\n", to: "escape.yaml")
        let escaped = try UpkeepBinary.run(["status", "--config", escape])
        #expect(escaped.status == 2 && escaped.error.contains("sur\\u{1B}[31mprise") && !escaped.error.contains("\u{1B}"), "\(escaped.error)")
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
