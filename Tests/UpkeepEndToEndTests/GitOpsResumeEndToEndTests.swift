import Foundation
import Testing
import UpkeepPOSIX
import UpkeepProcess
import UpkeepCore
import UpkeepStore

/// An `upkeep update` interrupted half-way is carried on by the next one, never left `running`
/// nor committed twice: killed (SIGKILL) after its push while Flux's GitRepository is suspended
/// (so Flux has not applied it), the next `upkeep update` of that version is refused while the
/// killed process's lease stands, then (the operator knowing it is gone) finds the commit on the
/// branch, waits for Flux and records the update completed: one commit in git log. A record
/// whose commit never reached the branch is recorded as not pushed, and a new attempt made.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct GitOpsResumeEndToEndTests {
    static let subject = "upkeep longhorn: upgrade to v1.8.2 (chart 1.7.2 → 1.8.2)"

    func suspendSource(_ sandbox: EndToEndSandbox, _ suspended: Bool) async throws {
        _ = try await GitOpsEndToEndTests().kubectl(sandbox, ["-n", "flux-system", "patch", "gitrepositories.source.toolkit.fluxcd.io", "flux-system",
                                                              "--type", "merge", "-p", #"{"spec":{"suspend":\#(suspended)}}"#])
    }

    func updates(_ sandbox: EndToEndSandbox, config: String) async throws -> [ComponentUpdateRecord] {
        let listed = try await sandbox.controller(["history", "--updates", "-o", "json"], config: config)
        return try JSONDecoder().decode([ComponentUpdateRecord].self, from: Data(listed.output.utf8))
    }

    @Test func anUpdateKilledAfterItsPushIsCarriedOnWithOneCommitAndAnUnpushedOneIsMadeAgain() async throws {
        try await EndToEndSandbox.with(servers: 1, agents: 1, k3sVersion: EndToEndTests.start) { sandbox in
            let gitOps = GitOpsEndToEndTests()
            let config = try sandbox.controllerConfig("resume")
            // `flux suspend source git flux-system`: the push lands, Flux fetches nothing.
            try await suspendSource(sandbox, true)
            let first = try sandbox.start(["update", "--to", "v1.8.2", "--yes"], config: config)
            _ = try await first.waitForLine("the push", timeoutSeconds: 60) { $0.contains("pushed ") && $0.contains("waiting for Flux") }
            kill(-first.pid, SIGKILL)
            _ = await first.exitCode(timeoutSeconds: 10)
            #expect(try await gitOps.log(sandbox).first == Self.subject)
            #expect(try await gitOps.longhornVersion(sandbox) == "v1.7.2", "Flux has not applied it")
            let left = try await updates(sandbox, config: config)
            #expect(left.map(\.outcome) == [.running], "\(left)")

            // The killed process's lease has not lapsed: refused, nothing touched.
            let early = try await sandbox.controller(["update", "--to", "v1.8.2", "--yes"], config: config)
            #expect(early.status == 6 && early.output.contains("update \(left.first?.id ?? "?") was left as it is"), "\(early.output)")
            // Another version is refused while it is unfinished.
            let other = try await sandbox.controller(["update", "--to", "v1.8.0", "--yes"], config: config)
            #expect(other.status == 5 && other.output.contains("carries it on"), "\(other.output)")

            try await suspendSource(sandbox, false)
            let carried = try await sandbox.controller(["update", "--to", "v1.8.2", "--yes", "--force-takeover"], config: config, timeoutSeconds: 120)
            #expect(carried.status == 0 && carried.output.contains("was interrupted") && carried.output.contains("done: Longhorn runs v1.8.2"),
                    "\(carried.output)")
            let log = try await gitOps.log(sandbox)
            #expect(log.filter { $0 == Self.subject }.count == 1 && log.first == Self.subject, "one commit, not reverted: \(log)")
            #expect(try await gitOps.longhornVersion(sandbox) == "v1.8.2")
            let finished = try await updates(sandbox, config: config)
            #expect(finished.map(\.outcome) == [.completed] && finished.first?.commit == left.first?.commit, "\(finished)")

            // A record whose commit never reached the branch (killed between the record and the push).
            let store = try StateStore(stateDirectory: "\(sandbox.directory)/resume")
            try store.saveComponentUpdate(ComponentUpdateRecord(id: "u20261207-000000", component: "longhorn", from: "v1.8.2", to: "v1.9.1",
                                                                repository: finished.first?.repository ?? "", file: finished.first?.file ?? "",
                                                                startedAt: .wallClockNow(), commit: String(repeating: "0123456789", count: 4)))
            let again = try await sandbox.controller(["update", "--to", "v1.9.1", "--yes"], config: config, timeoutSeconds: 120)
            #expect(again.status == 0 && again.output.contains("interrupted before its push") && again.output.contains("done: Longhorn runs v1.9.1"),
                    "\(again.output)")
            let all = try await updates(sandbox, config: config)
            #expect(all.map { "\($0.to) \($0.outcome.rawValue)" } == ["v1.9.1 completed", "v1.9.1 failed", "v1.8.2 completed"], "\(all)")
            #expect(all.first { $0.id == "u20261207-000000" }?.message.hasPrefix("not pushed: interrupted") == true)
            #expect(try await gitOps.longhornVersion(sandbox) == "v1.9.1")
        }
    }

    /// Serve killed after its push, before Flux applied it: restarted, it waits for the killed
    /// process's lease to lapse, carries the update on before anything else and records it
    /// completed: one commit in git log.
    @Test func serveKilledAfterItsPushCarriesTheUpdateOnAfterARestart() async throws {
        try await EndToEndSandbox.with(servers: 1, agents: 1, k3sVersion: EndToEndTests.start) { sandbox in
            let gitOps = GitOpsEndToEndTests()
            let config = try sandbox.controllerConfig("serve-resume", extra: "automation: {checkInterval: 1h, k3s: none, longhorn: minor}\n"
                                                          + ServeGitOpsEndToEndTests.window)
            let subject = "upkeep longhorn: upgrade to v1.8.0 (chart 1.7.2 → 1.8.0)"
            try await suspendSource(sandbox, true)
            let first = try sandbox.start(["serve", "--listen", "127.0.0.1:0"], config: config)
            _ = try await first.waitForLine("the push", timeoutSeconds: 60) { $0.contains("pushed ") && $0.contains("waiting for Flux") }
            kill(-first.pid, SIGKILL)
            _ = await first.exitCode(timeoutSeconds: 10)
            #expect(try await updates(sandbox, config: config).map(\.outcome) == [.running])
            try await suspendSource(sandbox, false)

            let second = try sandbox.start(["serve", "--listen", "127.0.0.1:0"], config: config)
            _ = try await second.waitForLine("the update carried on", timeoutSeconds: 75) { $0.contains("longhorn update to v1.8.0: done") }
            kill(second.pid, SIGTERM)
            #expect(await second.exitCode(timeoutSeconds: 30) == 0, "\(second.output)")
            #expect(second.output.contains("was interrupted"), "\(second.output)")
            let log = try await gitOps.log(sandbox)
            #expect(log.filter { $0 == subject }.count == 1 && log.first == subject, "one commit, not reverted: \(log)")
            #expect(try await gitOps.longhornVersion(sandbox) == "v1.8.0")
            let records = try await updates(sandbox, config: config)
            #expect(records.map { "\($0.to) \($0.outcome.rawValue)" } == ["v1.8.0 completed"], "\(records)")
        }
    }
}
