import Foundation
import Testing
import UpkeepProcess
import UpkeepRollout
import UpkeepCore
import UpkeepSandbox
import UpkeepStore

/// The commands around `apply`, end to end against a sandbox: `agents` and `plan` read without
/// changing anything, `apply --dry-run` stops after its preflight, and `rollback --to-previous`
/// refuses to take a server down a minor by binaries.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct PlanAgentsRollbackTests {
    @Test func agentsPlanDryRunApplyThenRollbackToPreviousRefusesAcrossAMinor() async throws {
        let start = EndToEndTests.start
        let target = EndToEndTests.nextMinor
        try #require(target != start, "the sandbox offers no next minor: \(EndToEndTests.offered)")
        try await EndToEndSandbox.with(servers: 1, agents: 1, k3sVersion: start) { sandbox in
            let agents = try await sandbox.controller(["agents", "-o", "json"])
            #expect(agents.status == 0, "\(agents.output)")
            let rows = try JSONSerialization.jsonObject(with: Data(agents.output.utf8)) as? [[String: Any]] ?? []
            #expect(Set(rows.compactMap { $0["node"] as? String }) == ["server-1", "agent-1"], "\(agents.output)")
            #expect(rows.allSatisfy { $0["state"] as? String == "ok" && $0["k3sVersion"] as? String == start }, "\(agents.output)")

            let plan = try await sandbox.controller(["plan", "--to", target, "-o", "json"])
            #expect(plan.status == 0, "\(plan.output)")
            let planned = try JSONSerialization.jsonObject(with: Data(plan.output.utf8)) as? [String: Any]
            #expect(planned?["blocked"] as? Bool == false, "\(plan.output)")

            let dry = try await sandbox.controller(["apply", "--to", target, "--dry-run"])
            #expect(dry.status == 0 && dry.output.contains("dry run"), "\(dry.output)")
            try await sandbox.expectAllNodes(at: start, "after a dry run")
            #expect(try await sandbox.history().isEmpty, "a dry run records no rollout")

            // Outside its maintenance windows apply refuses before touching anything (the dry run
            // says it would); the window used is one that cannot be open now: a minute, three days away.
            let closedDay = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(Int(Date().timeIntervalSince1970 / 86_400) + 3) % 7]
            let windowed = "\(sandbox.directory)/upkeep-window.yaml"
            try (String(contentsOfFile: sandbox.config, encoding: .utf8) + "\nmaintenance:\n  windows: [\"\(closedDay) 00:00-00:01\"]\n")
                .write(toFile: windowed, atomically: true, encoding: .utf8)
            let refused = try await ProcessRun.run(sandbox.upkeep, ["--config", windowed, "apply", "--to", target, "--yes"], timeoutSeconds: 120)
            #expect(refused.status == 5 && refused.output.contains("outside the maintenance windows (\(closedDay) 00:00-00:01 UTC)"),
                    "\(refused.output)")
            let windowDry = try await ProcessRun.run(sandbox.upkeep, ["--config", windowed, "apply", "--to", target, "--dry-run"], timeoutSeconds: 120)
            #expect(windowDry.status == 0 && windowDry.output.contains("apply would refuse now"), "\(windowDry.output)")
            let overridden = try await ProcessRun.run(sandbox.upkeep, ["--config", windowed, "apply", "--to", target, "--dry-run", "--ignore-window"],
                                                      timeoutSeconds: 120)
            #expect(overridden.status == 0 && overridden.output.contains("going ahead (--ignore-window)"), "\(overridden.output)")
            // Inside a window (one opened an hour ago in Berlin, three hours long) apply says until
            // when, in Berlin time (Foundation's calendar as the independent clock).
            let opened = Date().addingTimeInterval(-3600)
            var berlin = Calendar(identifier: .gregorian)
            berlin.timeZone = try #require(TimeZone(identifier: "Europe/Berlin"))
            let parts = berlin.dateComponents([.weekday, .hour, .minute], from: opened)
            let day = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"][parts.weekday! - 1]
            let from = String(format: "%02d:%02d", parts.hour!, parts.minute!)
            let until = String(format: "%02d:%02d", (parts.hour! + 3) % 24, parts.minute!)
            let open = "\(sandbox.directory)/upkeep-open.yaml"
            try (String(contentsOfFile: sandbox.config, encoding: .utf8) + "\nmaintenance:\n  windows: [\"\(day) \(from)-\(until) Europe/Berlin\"]\n")
                .write(toFile: open, atomically: true, encoding: .utf8)
            let inside = try await ProcessRun.run(sandbox.upkeep, ["--config", open, "apply", "--to", target, "--dry-run"], timeoutSeconds: 120)
            let abbreviation = berlin.timeZone.secondsFromGMT(for: opened.addingTimeInterval(3 * 3600)) == 7200 ? "CEST" : "CET"
            #expect(inside.status == 0 && inside.output.contains("inside the maintenance windows (\(day) \(from)-\(until) Europe/Berlin) until ")
                    && inside.output.contains("\(until) \(abbreviation) ("), "\(inside.output)")
            let recorded = (try await sandbox.history().count, try await sandbox.backups().count)
            #expect(recorded == (0, 0), "a refused apply records nothing: \(recorded)")
            try await sandbox.expectAllNodes(at: start, "after the refused apply")

            let apply = try await sandbox.controller(["apply", "--to", target, "--yes"], timeoutSeconds: 240)
            #expect(apply.status == 0, "\(apply.output)")
            try await sandbox.expectAllNodes(at: target, "after the upgrade")

            // One server: the backup is kine's SQLite datastore and the token, as a tar that the
            // real tar unpacks and whose database the real sqlite3 reads.
            let backups = try await sandbox.backups()
            try #require(backups.count == 1 && backups[0].format == "sqliteTar", "\(backups)")
            let tarball = try await sandbox.openBackup(backups[0])
            let unpacked = "\(sandbox.directory)/unpacked"
            try FileManager.default.createDirectory(atPath: unpacked, withIntermediateDirectories: true)
            let tar = try await ProcessRun.run("tar", ["-xf", tarball, "-C", unpacked], timeoutSeconds: 30)
            #expect(tar.status == 0, "\(tar.output)")
            // The API keeps its objects there: the Nodes among them.
            let kine = try await ProcessRun.run("sqlite3", ["\(unpacked)/server/db/state.db",
                                                            "SELECT DISTINCT name FROM kine WHERE name LIKE '/registry/minions/%' ORDER BY name"],
                                                timeoutSeconds: 30)
            #expect(kine.status == 0 && kine.output.split(separator: "\n").map(String.init) == sandbox.manifest.nodes.map { "/registry/minions/\($0.name)" }.sorted(),
                    "kine's table: \(kine.output)")
            let server = try #require(sandbox.manifest.nodes.first { $0.name == "server-1" })
            #expect(FileManager.default.contents(atPath: "\(unpacked)/server/token") == FileManager.default.contents(atPath: "\(server.dataDir)/server/token"))

            // Binaries alone never take a server down a minor: the rollback is refused before it
            // touches anything, and names the restore that does it (https://docs.k3s.io/upgrades/roll-back).
            let rollback = try await sandbox.controller(["rollback", "--to-previous", "--yes"], timeoutSeconds: 240)
            #expect(rollback.status == 5 && rollback.output.contains("`upkeep rollback --restore`"), "\(rollback.output)")
            try await sandbox.expectAllNodes(at: target, "after the refused rollback --to-previous")
            let snapshot = try #require(backups.first)
            #expect(snapshot.kind == .hop && snapshot.hop == 1 && snapshot.k3sVersion?.description == start, "\(backups)")
            // What `rollback --restore` would do: the hop, the snapshot and its time, and what is
            // lost; off a terminal without --yes it asks nothing and changes nothing.
            let dryRun = try await sandbox.controller(["rollback", "--restore", "--dry-run"])
            #expect(dryRun.status == 0 && dryRun.output.contains("hop 1 (to \(target)), by restoring its datastore snapshot")
                    && dryRun.output.contains("backup \(snapshot.id): sqliteTar of server-1 at \(start), taken ")
                    && dryRun.output.contains("every object written to the cluster since") && dryRun.output.contains("dry run: nothing was changed"),
                    "\(dryRun.output)")
            let unconfirmed = try await sandbox.controller(["rollback", "--restore"])
            #expect(unconfirmed.status == 2 && unconfirmed.output.contains("--yes"), "\(unconfirmed.output)")
            let status = try await sandbox.controller(["status"])
            #expect(status.output.contains("hop 1 to \(target): rollback restore, snapshot \(snapshot.id)")
                    && status.output.contains("`upkeep rollback --restore` would undo hop 1 with backup \(snapshot.id)"), "\(status.output)")
            try await sandbox.expectAllNodes(at: target, "after the restore that was not confirmed")
            // `backup now` with backups.kept: 1 keeps the newest backup and the newest rollout's
            // hop snapshot (a restore needs it); a second `backup now` removes the first, record and file.
            let keepOne = "\(sandbox.directory)/upkeep-keep1.yaml"
            try (String(contentsOfFile: sandbox.config, encoding: .utf8) + "\nbackups: {kept: 1}\n").write(toFile: keepOne, atomically: true, encoding: .utf8)
            var manual: [[BackupRecord]] = []
            for _ in 0..<2 {
                let now = try await ProcessRun.run(sandbox.upkeep, ["--config", keepOne, "backup", "now"], timeoutSeconds: 120)
                #expect(now.status == 0 && now.output.contains("sqliteTar"), "\(now.output)")
                manual.append(try await sandbox.backups().filter { $0.kind == .manual })
                try await Task.sleep(for: .seconds(1.1))  // backup ids carry the second
            }
            let kept = try await sandbox.backups()
            #expect(kept.count == 2 && kept.contains { $0.id == snapshot.id } && manual.map(\.count) == [1, 1]
                    && manual[1].first?.id.hasPrefix("b") == true && manual[0].first?.id != manual[1].first?.id, "\(kept.map(\.id))")
            #expect(FileManager.default.fileExists(atPath: snapshot.path), "the newest rollout's snapshot is kept")
            if let pruned = manual[0].first {
                #expect(!FileManager.default.fileExists(atPath: pruned.path), "the pruned backup's sealed file is gone")
            }
            if let newest = manual[1].first { _ = try await sandbox.openBackup(newest) }
            let history = try await sandbox.history()
            #expect(history.count == 1 && history.allSatisfy { $0.outcome == .completed }, "\(history.map { "\($0.id) \($0.status)" })")

            // An agent that does not answer is flagged, and `agents` says so in its exit code.
            try await sandbox.fault(["agent-1", "agent-down"])
            let down = try await sandbox.controller(["agents"])
            #expect(down.status == 5 && down.output.contains("unreachable"), "\(down.output)")
        }
    }
}
