import Foundation
import Testing
import UpkeepProcess
import UpkeepSandbox
import UpkeepStore

/// The compatibility table enforced (issue 18, items 5 and 3) against a sandbox, from outside:
/// the built `upkeep` binary, real `kubectl` and `git` as witnesses. The built-in table states
/// no Longhorn maximum and the sandbox's Flux releases all support its Kubernetes, so each test
/// hands `--compatibility FILE` entries that forbid a pair, as an operator's support matrix would.
@Suite(.serialized) struct CompatibilityEndToEndTests {
    static let matrix = "https://example.test/longhorn-support-matrix"
    static let fluxPrerequisites = "https://example.test/flux-prerequisites"

    func writeTable(_ sandbox: EndToEndSandbox, _ entries: String) throws -> String {
        let path = "\(sandbox.directory)/compatibility.json"
        try "{\"entries\":[\(entries)]}".write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func gitLog(_ sandbox: EndToEndSandbox) async throws -> [String] {
        let log = try await ProcessRun.run("git", ["--git-dir", "\(sandbox.directory)/git/fleet.git", "log", "--format=%an %s"], timeoutSeconds: 30)
        try #require(log.status == 0, "git log failed: \(log.output)")
        return log.output.split(separator: "\n").map(String.init)
    }

    func updates(_ sandbox: EndToEndSandbox) async throws -> [ComponentUpdateRecord] {
        let listed = try await sandbox.controller(["history", "--updates", "-o", "json"], timeoutSeconds: 30)
        try #require(listed.status == 0, "history --updates failed: \(listed.output)")
        return try JSONDecoder().decode([ComponentUpdateRecord].self, from: Data(listed.output.utf8))
    }

    @Test func aK3sTargetTheInstalledLonghornDoesNotSupportIsRefusedUntilIgnoredWithItsVersionTyped() async throws {
        try await EndToEndSandbox.with(servers: 1, agents: 1, k3sVersion: EndToEndTests.start) { sandbox in
            let target = EndToEndTests.nextMinor
            let table = try writeTable(sandbox, """
                {"component":"longhorn","from":"v1.7.0","before":"v1.8.0","kubernetesMin":"v1.21","kubernetesMax":"v1.31","source":"\(Self.matrix)"}
                """)
            let plain = try await sandbox.controller(["plan", "--to", target])
            #expect(plain.status == 0, "the built-in table states no Longhorn maximum: \(plain.output)")

            let plan = try await sandbox.controller(["plan", "--to", target, "--compatibility", table])
            #expect(plan.status == 5, "\(plan.output)")
            #expect(plan.output.contains("Longhorn v1.7.2 supports Kubernetes up to v1.31"), "\(plan.output)")
            #expect(plan.output.contains(Self.matrix), "the entry's source is named: \(plan.output)")
            #expect(plan.output.contains("update Longhorn first") && plan.output.contains("--ignore-compatibility"), "\(plan.output)")
            let shown = try await sandbox.controller(["plan", "--to", target, "--compatibility", table, "--ignore-compatibility", "-o", "json"])
            #expect(shown.status == 0 && shown.output.contains("\"compatibilityRefusal\""), "a plan changes nothing: shown with the refusal: \(shown.output)")

            let refused = try await sandbox.controller(["apply", "--to", target, "--compatibility", table, "--yes"])
            #expect(refused.status == 5 && refused.output.contains(Self.matrix), "\(refused.output)")
            let untyped = try await sandbox.controller(["apply", "--to", target, "--compatibility", table, "--yes", "--ignore-compatibility"])
            #expect(untyped.status == 2 && untyped.output.contains("--confirm-ignore-compatibility=\(target)"),
                    "--yes is no confirmation of this, and there is no terminal: \(untyped.output)")
            let mistyped = try await sandbox.controller(["apply", "--to", target, "--compatibility", table, "--yes", "--ignore-compatibility",
                                                         "--confirm-ignore-compatibility=\(EndToEndTests.start)"])
            #expect(mistyped.status == 2 && mistyped.output.contains("does not name the target"), "\(mistyped.output)")
            #expect(try await sandbox.history().isEmpty, "nothing was started by the refused runs")
            try await sandbox.expectAllNodes(at: EndToEndTests.start, "after the refusals")

            let applied = try await sandbox.controller(["apply", "--to", target, "--compatibility", table, "--yes", "--ignore-compatibility",
                                                        "--confirm-ignore-compatibility=\(target)"], timeoutSeconds: 300)
            #expect(applied.status == 0, "\(applied.output)")
            try await sandbox.expectAllNodes(at: target, "after the rollout that ignored the table")
            let rollout = try #require(try await sandbox.history().first)
            let detail = try await sandbox.controller(["history", rollout.id], timeoutSeconds: 30)
            let line = detail.output.split(separator: "\n").first { $0.contains("ignore-compatibility by ") }
            #expect(line?.contains(Self.matrix) == true && line?.contains("\(target) confirmed") == true,
                    "history names who ignored which entry: \(detail.output)")
        }
    }

    @Test func aFluxVersionThatDoesNotSupportTheNodesCommitsNothingAndAnUpdateTakesABackupFirst() async throws {
        try await EndToEndSandbox.with(servers: 1, agents: 1, k3sVersion: EndToEndTests.start) { sandbox in
            let table = try writeTable(sandbox, """
                {"component":"flux","from":"v2.0.0","before":"v2.5.0","kubernetesMin":"v1.24","source":"\(Self.fluxPrerequisites)"},
                {"component":"flux","from":"v2.5.0","kubernetesMin":"v1.32","source":"\(Self.fluxPrerequisites)"}
                """)
            let seeded = try await gitLog(sandbox)
            let refused = try await sandbox.controller(["update", "--component", "flux", "--to", "v2.5.1", "--yes", "--compatibility", table])
            #expect(refused.status == 5, "\(refused.output)")
            #expect(refused.output.contains("Flux v2.5.1 needs Kubernetes v1.32 or newer") && refused.output.contains(Self.fluxPrerequisites),
                    "\(refused.output)")
            #expect(refused.output.contains("run Kubernetes v1.31") && refused.output.contains("upgrade k3s first"), "\(refused.output)")
            #expect(try await gitLog(sandbox) == seeded, "nothing committed")
            #expect(try await updates(sandbox).isEmpty, "nothing recorded")
            #expect(try await sandbox.backups().isEmpty, "no backup for a refused update")

            // A failed backup refuses the update too (backups.beforeUpdate, on by default).
            let server = try #require(sandbox.manifest.nodes.first { $0.role == "server" }?.name)
            try await sandbox.fault([server, "agent-down"])
            let noBackup = try await sandbox.controller(["update", "--component", "longhorn", "--to", "v1.8.2", "--yes"], timeoutSeconds: 240)
            #expect(noBackup.status == 5 && noBackup.output.contains("backup before the update failed"), "\(noBackup.output)")
            #expect(try await gitLog(sandbox) == seeded, "nothing committed without the backup")
            try await sandbox.fault([server, "clear"])

            let ignored = try await sandbox.controller(["update", "--component", "flux", "--to", "v2.5.1", "--yes", "--compatibility", table,
                                                        "--ignore-compatibility", "--confirm-ignore-compatibility=v2.5.1"], timeoutSeconds: 240)
            #expect(ignored.status == 0, "\(ignored.output)")
            #expect(try await gitLog(sandbox).first == "upkeep flux: upgrade to v2.5.1")
            let record = try #require(try await updates(sandbox).first)
            #expect(record.outcome == .completed)
            #expect(record.ignoredCompatibility?.detail?.contains(Self.fluxPrerequisites) == true, "\(String(describing: record.ignoredCompatibility))")
            let backupID = try #require(record.backupID, "the update names its backup")
            let backup = try #require(try await sandbox.backups().first { $0.id == backupID }, "upkeep backup list shows \(backupID)")
            #expect(backup.takenAt <= record.startedAt, "taken before the commit (the record is written after it)")
            let listed = try await sandbox.controller(["history", "--updates"], timeoutSeconds: 30)
            #expect(listed.output.contains(backupID) && listed.output.contains("ignore-compatibility by "), "\(listed.output)")
        }
    }
}
