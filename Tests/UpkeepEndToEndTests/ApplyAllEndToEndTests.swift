import Foundation
import Testing
import UpkeepCore
import UpkeepPOSIX
import UpkeepProcess
import UpkeepRollout
import UpkeepSandbox
import UpkeepStore

/// `upkeep apply --all` (issue 18, item 4) against one sandbox whose Flux follows a real Git
/// repository, from outside: the built binary, `kubectl` and `git` as witnesses. A compatibility
/// file makes Flux v2.5 need Kubernetes v1.32, so the order is Longhorn, k3s, then Flux.
/// A Longhorn stage that fails stops the set there (reverted, k3s and Flux not run); a set
/// killed in its k3s stage is named by `status` and the next `apply --all`, and once `resume`
/// finished the rollout, `apply --all` carries the set on: one id, three stages done.
@Suite(.serialized, .timeLimit(.minutes(8)))
struct ApplyAllEndToEndTests {
    static let prerequisites = "https://example.test/flux-prerequisites"
    static let matrix = "https://example.test/longhorn-support-matrix"
    static let target = ServeEndToEndTests.stable

    func sets(_ sandbox: EndToEndSandbox, config: String) async throws -> [UpdateSetRecord] {
        let listed = try await sandbox.controller(["history", "--sets", "-o", "json"], config: config, timeoutSeconds: 30)
        try #require(listed.status == 0, "history --sets failed: \(listed.output)")
        return try JSONDecoder().decode([UpdateSetRecord].self, from: Data(listed.output.utf8))
    }

    func updates(_ sandbox: EndToEndSandbox, config: String) async throws -> [ComponentUpdateRecord] {
        let listed = try await sandbox.controller(["history", "--updates", "-o", "json"], config: config, timeoutSeconds: 30)
        try #require(listed.status == 0, "history --updates failed: \(listed.output)")
        return try JSONDecoder().decode([ComponentUpdateRecord].self, from: Data(listed.output.utf8))
    }

    @Test func oneSetMovesLonghornK3sAndFluxInTheTablesOrderStopsAtAFailedStageAndIsCarriedOnAfterAKill() async throws {
        try await EndToEndSandbox.with(servers: 1, agents: 1, k3sVersion: EndToEndTests.start) { sandbox in
            let gitOps = GitOpsEndToEndTests()
            let config = sandbox.config
            let table = "\(sandbox.directory)/compatibility.json"
            try """
                {"entries":[{"component":"flux","from":"v2.0.0","before":"v2.5.0","kubernetesMin":"v1.24","source":"\(Self.prerequisites)"},
                {"component":"flux","from":"v2.5.0","kubernetesMin":"v1.32","source":"\(Self.prerequisites)"}]}
                """.write(toFile: table, atomically: true, encoding: .utf8)
            let all = ["apply", "--all", "--channel", "stable", "--compatibility", table]
            let seeded = try await gitOps.log(sandbox)

            // The plan, in the table's order and why; nothing changed.
            let dry = try await sandbox.controller(all + ["--dry-run"], config: config, timeoutSeconds: 120)
            #expect(dry.status == 0, "\(dry.output)")
            let order = ["1. Longhorn v1.7.2 → v1.8.0", "2. k3s \(EndToEndTests.start) → \(Self.target)", "3. Flux v2.4.0 → v2.5.1"]
            let positions = order.map { dry.output.range(of: $0)?.lowerBound }
            #expect(positions.allSatisfy { $0 != nil } && positions.compactMap { $0 } == positions.compactMap { $0 }.sorted(), "\(dry.output)")
            #expect(dry.output.contains("Flux v2.5.1 needs Kubernetes v1.32 or newer") && dry.output.contains(Self.prerequisites)
                    && dry.output.contains("so after k3s"), "why Flux goes last: \(dry.output)")
            #expect(try await gitOps.log(sandbox) == seeded, "a dry run commits nothing")
            #expect(try await sets(sandbox, config: config).isEmpty, "a dry run records nothing")

            // A support matrix under which Longhorn fits on neither side of k3s: refused, naming it.
            let stuck = "\(sandbox.directory)/no-order.json"
            try """
                {"entries":[{"component":"longhorn","from":"v1.7.0","before":"v1.8.0","kubernetesMax":"v1.31","source":"\(Self.matrix)"},
                {"component":"longhorn","from":"v1.8.0","kubernetesMin":"v1.32","source":"\(Self.matrix)"}]}
                """.write(toFile: stuck, atomically: true, encoding: .utf8)
            let noOrder = try await sandbox.controller(["apply", "--all", "--channel", "stable", "--compatibility", stuck, "--yes"], config: config,
                                                       timeoutSeconds: 120)
            #expect(noOrder.status == 5 && noOrder.output.contains("allows no order for Longhorn v1.7.2 → v1.8.0 and k3s")
                    && noOrder.output.contains(Self.matrix) && noOrder.output.contains("nothing was changed"), "\(noOrder.output)")
            #expect(try await sets(sandbox, config: config).isEmpty, "a refused set records nothing")

            // Helm fails the Longhorn upgrade: the first stage is reverted, k3s and Flux are not run.
            try await sandbox.fault(["longhorn", "upgrade-fails"])
            let failing = try await sandbox.controller(all + ["--yes"], config: config, timeoutSeconds: 240)
            #expect(failing.status == 1 && failing.output.contains("stopped at stage 1") && failing.output.contains("its commit was reverted")
                    && failing.output.contains("not run: k3s \(Self.target), flux v2.5.1"), "\(failing.output)")
            try await sandbox.expectAllNodes(at: EndToEndTests.start, "after the set stopped at Longhorn")
            #expect(try await gitOps.longhornVersion(sandbox) == "v1.7.2")
            let stopped = try #require(try await sets(sandbox, config: config).first)
            #expect(stopped.outcome == .failed && stopped.stages.map(\.state) == [.failed, .notRun, .notRun], "\(stopped)")
            let reverted = try #require(try await updates(sandbox, config: config).first)
            #expect(stopped.stages.first?.ref == reverted.id && reverted.outcome == .reverted && stopped.stages.first?.exitCode == 1, "\(reverted)")
            #expect(try await sandbox.history().isEmpty, "no rollout was started")
            try await sandbox.fault(["longhorn", "clear"])

            // Killed in its k3s stage: status and the next run name the set, its stage and what to do.
            // Killed once the agent's install began (the server is done, so the API answers): the rollout
            // cannot finish without this process, which must see the node Ready and uncordon it.
            let agent = try #require(sandbox.manifest.nodes.first { $0.role == "agent" }?.name)
            let killed = try sandbox.start(all + ["--yes"], config: config)
            _ = try await sandbox.waitForJournalStep(agent, of: "install", "previousKept", timeoutSeconds: 240)
            kill(-killed.pid, SIGKILL)
            _ = await killed.exitCode(timeoutSeconds: 10)
            let interrupted = try #require(try await sets(sandbox, config: config).first)
            #expect(interrupted.id != stopped.id && interrupted.outcome == .running
                    && interrupted.stages.map(\.state) == [.done, .running, .pending], "\(interrupted)")
            let rolloutID = try #require(interrupted.stages[1].ref, "the k3s stage names its rollout before it starts")
            let status = try await sandbox.controller(["status"], config: config, timeoutSeconds: 30)
            #expect(status.output.contains("set \(interrupted.id) (upkeep apply --all) has not finished: stage 2 of 3, k3s")
                    && status.output.contains("`upkeep resume` finishes rollout \(rolloutID)"), "\(status.output)")
            let refused = try await sandbox.controller(all + ["--yes", "--force-takeover"], config: config, timeoutSeconds: 120)
            #expect(refused.status == 5 && refused.output.contains("set \(interrupted.id) stopped in its k3s stage: rollout \(rolloutID) has not finished")
                    && refused.output.contains("`upkeep resume` carries it on"), "\(refused.output)")

            let resumed = try await sandbox.controller(["resume"], config: config, timeoutSeconds: 240)
            #expect(resumed.status == 0, "\(resumed.output)")
            try await sandbox.expectAllNodes(at: Self.target, "after the resume")
            let carried = try await sandbox.controller(all + ["--yes"], config: config, timeoutSeconds: 240)
            #expect(carried.status == 0 && carried.output.contains("rollout \(rolloutID) completed")
                    && carried.output.contains("set \(interrupted.id) done"), "\(carried.output)")
            #expect(carried.output.contains("post-update validation: healthy"), "validated once, at the end: \(carried.output)")
            #expect(try await gitOps.longhornVersion(sandbox) == "v1.8.0")
            #expect(try await gitOps.fluxState(sandbox).version == "v2.5.1")
            #expect(Array(try await gitOps.log(sandbox).prefix(2)) == ["upkeep flux: upgrade to v2.5.1",
                                                                        "upkeep longhorn: upgrade to v1.8.0 (chart 1.7.2 → 1.8.0)"])

            // One id, three stages, each pointing at its rollout or update, in the order run.
            let done = try #require(try await sets(sandbox, config: config).first)
            #expect(done.id == interrupted.id && done.outcome == .completed && done.stages.map(\.component) == ["longhorn", "k3s", "flux"]
                    && done.stages.allSatisfy { $0.state == .done }, "\(done)")
            let records = try await updates(sandbox, config: config)
            let longhorn = try #require(records.first { $0.id == done.stages[0].ref })
            let flux = try #require(records.first { $0.id == done.stages[2].ref })
            let rollout = try #require(try await sandbox.history().first { $0.id == rolloutID })
            #expect(longhorn.outcome == .completed && flux.outcome == .completed && rollout.outcome == .completed)
            #expect((longhorn.finishedAt ?? .init(milliseconds: .max)) <= rollout.createdAt
                    && (rollout.finishedAt ?? .init(milliseconds: .max)) <= flux.startedAt, "Longhorn, then k3s, then Flux")
            let listed = try await sandbox.controller(["history"], config: config, timeoutSeconds: 30)
            #expect(listed.output.contains(done.id) && listed.output.contains("longhorn done, k3s done, flux done")
                    && listed.output.contains(stopped.id), "\(listed.output)")
            let shown = try await sandbox.controller(["history", done.id], config: config, timeoutSeconds: 30)
            #expect(shown.status == 0 && shown.output.contains(rolloutID) && shown.output.contains(flux.id)
                    && shown.output.contains("validate by ") && shown.output.contains("healthy ("), "the set's validation is recorded on it: \(shown.output)")
            let current = try await sandbox.controller(all + ["--dry-run"], config: config, timeoutSeconds: 120)
            #expect(current.status == 0 && current.output.contains("nothing to do"), "\(current.output)")
        }
    }

    /// Killed after its Longhorn stage pushed (Flux's source suspended, so nothing was applied):
    /// the next `apply --all` carries that update on (one commit, not reverted) and runs the
    /// rest, Flux then k3s (the built-in table lets both releases go first), in the same set.
    @Test func aSetKilledInAGitOpsStageCarriesTheUpdateOnAndRunsTheRest() async throws {
        try await EndToEndSandbox.with(servers: 1, agents: 1, k3sVersion: EndToEndTests.start) { sandbox in
            let gitOps = GitOpsEndToEndTests()
            let resume = GitOpsResumeEndToEndTests()
            let config = sandbox.config
            let subject = "upkeep longhorn: upgrade to v1.8.0 (chart 1.7.2 → 1.8.0)"
            try await resume.suspendSource(sandbox, true)
            let killed = try sandbox.start(["apply", "--all", "--channel", "stable", "--yes"])
            _ = try await killed.waitForLine("the Longhorn stage's push", timeoutSeconds: 180) { $0.contains("pushed ") && $0.contains("waiting for Flux") }
            kill(-killed.pid, SIGKILL)
            _ = await killed.exitCode(timeoutSeconds: 10)
            let left = try #require(try await sets(sandbox, config: config).first)
            #expect(left.stages.map(\.component) == ["longhorn", "flux", "k3s"] && left.stages.map(\.state) == [.running, .pending, .pending], "\(left)")
            let update = try #require(left.stages[0].ref)
            let status = try await sandbox.controller(["status"], timeoutSeconds: 30)
            #expect(status.output.contains("stage 1 of 3, longhorn v1.7.2 → v1.8.0, is running")
                    && status.output.contains("`upkeep apply --all` carries update \(update)"), "\(status.output)")

            try await resume.suspendSource(sandbox, false)
            let carried = try await sandbox.controller(["apply", "--all", "--channel", "stable", "--yes", "--force-takeover"], timeoutSeconds: 300)
            #expect(carried.status == 0 && carried.output.contains("was interrupted; carrying it on") && carried.output.contains("set \(left.id) done"),
                    "\(carried.output)")
            let log = try await gitOps.log(sandbox)
            #expect(log.filter { $0 == subject }.count == 1 && log.first == "upkeep flux: upgrade to v2.5.1", "one Longhorn commit, not reverted: \(log)")
            let done = try #require(try await sets(sandbox, config: config).first)
            #expect(done.id == left.id && done.stages[0].ref == update && done.stages.allSatisfy { $0.state == .done }, "\(done)")
            #expect(try await updates(sandbox, config: config).first { $0.id == update }?.outcome == .completed)
            try await sandbox.expectAllNodes(at: Self.target, "after the set")
        }
    }
}
