import Foundation
import Testing
@testable import UpkeepCLI
import UpkeepRollout
import UpkeepRuntimeTestSupport
import UpkeepStore
import UpkeepTestSupport
import UpkeepCore

/// `upkeep report` as the built binary writes it, over a real state database holding a completed
/// rollout (with the backup taken before it) and one that failed and rolled back.
@Suite struct ReportCommandTests {
    static func recordedState(_ directory: TemporaryDirectory) throws -> String {
        let store = try StateStore(stateDirectory: directory.file("state"))
        let start = Instant(milliseconds: Int64(Date().timeIntervalSince1970 * 1000) - 3_600_000)
        try RolloutFixtures.record(try RolloutFixtures.engine("r1"), world: RolloutFixtures.world(), in: store, start: start)
        try store.recordBackup(BackupRecord(id: "b-r1", rolloutID: "r1", takenAt: start, node: "server-1", format: "etcd-snapshot",
                                            agentFile: "on-demand-server-1", path: directory.file("state/backups/b-r1.upkeep-backup"),
                                            bytes: 3 << 20, sha256: String(repeating: "ab", count: 32)))
        var failing = RolloutFixtures.world()
        failing.failingInstalls["agent-2"] = RolloutFixtures.target
        try RolloutFixtures.record(try RolloutFixtures.engine("r2", world: failing), world: failing, in: store,
                                   start: start.adding(milliseconds: 600_000))
        return try directory.write("stateDir: state\n", to: "upkeep.yaml")
    }

    @Test func aRolloutReportHasTheOutcomeTheBackupEachNodeAndTheTimeline() throws {
        let directory = try TemporaryDirectory()
        let config = try Self.recordedState(directory)
        let newest = try UpkeepBinary.run(["report", "--config", config])
        #expect(newest.status == 0, "\(newest.error)")
        #expect(newest.output.hasPrefix("# Rollout r2: v1.31.2+k3s1 (3 nodes) → v1.31.4+k3s1\n"), "\(newest.output)")
        #expect(newest.output.contains("| Outcome | rolled back: "), "\(newest.output)")
        #expect(newest.output.contains("| agent-2 | ") && newest.output.contains("| reverted"), "\(newest.output)")
        #expect(newest.output.contains("(way back)"), "the ways back are listed: \(newest.output)")
        #expect(newest.output.contains("| Backup | none recorded |"))

        let first = try UpkeepBinary.run(["report", "r1", "--config", config])
        #expect(first.status == 0, "\(first.error)")
        #expect(first.output.contains("| Outcome | completed |"), "\(first.output)")
        #expect(first.output.contains("| Backup | b-r1: etcd-snapshot of server-1, 3.0 MiB, sha256 abababababababab… |"), "\(first.output)")
        for node in ["server-1", "agent-1", "agent-2"] { #expect(first.output.contains("| \(node) | ")) }
        #expect(first.output.contains("## Timeline\n\n- ") && first.output.contains("**info** rollout r1: every node runs v1.31.4+k3s1"),
                "\(first.output)")

        let file = directory.file("report.md")
        let written = try UpkeepBinary.run(["report", "r1", "--config", config, "--output", file])
        #expect(written.status == 0 && written.output == "wrote \(file)\n", "\(written.output)\(written.error)")
        #expect(try String(contentsOfFile: file, encoding: .utf8) == first.output)

        let json = try UpkeepBinary.run(["report", "r1", "--config", config, "-o", "json"])
        let object = try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any]
        #expect((object?["backups"] as? [Any])?.count == 1 && object?["rollout"] != nil, "\(json.output.prefix(300))")
    }

    @Test func aPeriodReportCountsOutcomesFailingNodesAndBackups() throws {
        let directory = try TemporaryDirectory()
        let config = try Self.recordedState(directory)
        let json = try UpkeepBinary.run(["report", "--config", config, "--since", "1d", "-o", "json"])
        #expect(json.status == 0, "\(json.error)")
        let period = try #require(try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any])
        #expect(period["rollouts"] as? Int == 2)
        #expect(period["outcomes"] as? [String: Int] == ["completed": 1, "rolled back": 1])
        #expect(period["failingNodes"] as? [String: Int] == ["agent-2": 1])
        #expect(period["backups"] as? Int == 1)
        let markdown = try UpkeepBinary.run(["report", "--config", config, "--since", "1d"])
        #expect(markdown.output.contains("| Rollouts | 2 (1 completed, 1 rolled back) |"), "\(markdown.output)")
        #expect(markdown.output.contains("| Completed | 50 % of finished rollouts |"), "\(markdown.output)")
        #expect(markdown.output.contains("| Nodes that failed a step | agent-2 (1) |"), "\(markdown.output)")
        let none = try UpkeepBinary.run(["report", "--config", config, "--since", "1m", "-o", "json"])
        #expect((try JSONSerialization.jsonObject(with: Data(none.output.utf8)) as? [String: Any])?["rollouts"] as? Int == 0)
    }

    /// A period holds the rollouts created within it, whenever they finished: of four rollouts
    /// around the boundaries, the one created just before `since` (finished inside) is neither
    /// counted nor listed, the one created just before `until` (finished after it) is both.
    @Test func aPeriodCountsAndListsTheRolloutsCreatedWithinItAcrossItsBoundaries() throws {
        let directory = try TemporaryDirectory()
        let store = try StateStore(stateDirectory: directory.file("state"))
        let since = Instant(milliseconds: 1_800_000_000_000)
        let until = since.adding(milliseconds: 600_000)
        let created = [("r0", since.adding(milliseconds: -1_000)), ("r1", since.adding(milliseconds: 60_000)),
                       ("r2", until.adding(milliseconds: -1_000)), ("r3", until.adding(milliseconds: 1_000))]
        for (id, at) in created {
            try RolloutFixtures.record(try RolloutFixtures.engine(id), world: RolloutFixtures.world(), in: store, start: at)
        }
        let rollouts = try store.history(limit: 100)
        let finished = Dictionary(uniqueKeysWithValues: rollouts.map { ($0.id, $0.finishedAt) })
        #expect(try #require(finished["r0"] ?? nil) > since, "r0 straddles the start of the period")
        #expect(try #require(finished["r2"] ?? nil) > until, "r2 straddles the end of the period")

        let period = RolloutReport.period(since: since, until: until, rollouts: rollouts, updates: [], backups: [])
        #expect(period.rollouts == 2 && period.outcomes == ["completed": 2])
        #expect(Set(period.listed.map(\.id)) == ["r1", "r2"])
        let markdown = RolloutReport.markdown(period)
        #expect(markdown.contains("| Rollouts | 2 (2 completed) |"), "\(markdown)")
        let table = try #require(markdown.components(separatedBy: "## Rollouts\n\n").last)
        let listed = table.split(separator: "\n").dropFirst(2).compactMap { $0.split(separator: "|").first?.trimmingCharacters(in: .whitespaces) }
        #expect(Set(listed) == ["r1", "r2"] && listed.count == 2, "\(markdown)")
    }

    @Test func badInputIsAUsageError() throws {
        let directory = try TemporaryDirectory()
        let config = try Self.recordedState(directory)
        let unknown = try UpkeepBinary.run(["report", "r9", "--config", config])
        #expect(unknown.status == 2 && unknown.error.contains("no rollout r9"), "\(unknown.error)")
        let both = try UpkeepBinary.run(["report", "r1", "--since", "1d", "--config", config])
        #expect(both.status == 2 && both.error.contains("either a rollout id or --since"), "\(both.error)")
        let empty = try directory.write("stateDir: fresh\n", to: "fresh.yaml")
        let nothing = try UpkeepBinary.run(["report", "--config", empty])
        #expect(nothing.status == 2 && nothing.error.contains("no rollouts recorded yet"), "\(nothing.error)")
        let unwritable = try UpkeepBinary.run(["report", "r1", "--config", config, "--output", directory.file("missing/dir/report.md")])
        #expect(unwritable.status == 2 && unwritable.error.contains("cannot write"), "\(unwritable.error)")
    }

    @Test func formattingKeepsTablesIntact() {
        #expect(RolloutReport.clock(9) == "9s" && RolloutReport.clock(252) == "4m 12s" && RolloutReport.clock(3725) == "1h 02m 05s")
        #expect(RolloutReport.bytes(512) == "512 B" && RolloutReport.bytes(4096) == "4 KiB" && RolloutReport.bytes(5 << 19) == "2.5 MiB")
        #expect(RolloutReport.table(["a", "b"], [["x|y", "line\nbreak"]]) == "| a | b |\n|---|---|\n| x\\|y | line break |\n")
    }
}
