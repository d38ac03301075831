import Foundation
import Testing
import UpkeepCore
import UpkeepRollout
import UpkeepSandbox
import UpkeepStore

#if canImport(Glibc)
import Glibc
#endif

/// An agent's crash is not a verdict on the version (#15, item 6): the node's upkeep-agent is
/// killed with SIGKILL at the two moments of an install that used to roll a whole cluster back,
/// and the sandbox restarts it (Restart=always). The rollout must complete; nothing is rolled
/// back.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct AgentKilledDuringInstallTests {
    static let start = EndToEndTests.start
    static let next = EndToEndTests.nextMinor

    /// Killed while the new k3s starts: the restarted agent restarts k3s on the new binary, probes
    /// it with a fresh deadline and answers the same operation id `installed`. The agent is killed
    /// while its `systemctl restart` runs; that stand-in carries on beside the one the restarted
    /// agent issues, and the unit must still end with one supervisor
    /// (HostTests.overlappingRestartsLeaveOneSupervisor), which `sandbox down` stops.
    @Test func killedWhileTheNewK3sStartsTheInstallCompletes() async throws {
        try await EndToEndSandbox.with(servers: 1, agents: 1, k3sVersion: Self.start) { sandbox in
            try await sandbox.fault(["agent-1", "slow-start", "4"])
            let before = try #require(try sandbox.agentPID("agent-1"), "agent-1's agent has no pid file")
            let apply = try sandbox.start(["apply", "--to", Self.next, "--yes"])
            let install = try await sandbox.waitForJournalStep("agent-1", of: "install", "restarting")
            #expect(kill(before, SIGKILL) == 0, "could not kill agent-1's agent (pid \(before))")

            let code = await apply.exitCode(timeoutSeconds: 240)
            #expect(code == 0, "apply should complete:\n\(apply.output)")
            try await expectCompletedWithoutRollback(sandbox, apply)
            let after = try sandbox.agentPID("agent-1")
            #expect(after != nil && after != before, "agent-1's agent was not restarted (pid \(String(describing: after)))")
            // The restarted agent finished the install it had begun: the same id, once.
            let installs = try sandbox.journalOperationIDs("agent-1").filter { $0.contains(":install:") }
            #expect(installs == [install], "agent-1 should have run \(install) only: \(installs)")
            try sandbox.expectNothingRanTwice()
        }
    }

    /// Killed just before the binary is placed: the agent is held in its copy of the staged binary
    /// (the staged file is swapped for a FIFO nobody writes, so opening it blocks) after it kept
    /// the live one, and killed there. The restarted agent records the install `interrupted`; the
    /// controller sends it again under the next attempt, which installs.
    @Test func killedJustBeforeTheBinaryIsPlacedTheInstallIsSentAgain() async throws {
        try await EndToEndSandbox.with(servers: 1, agents: 1, k3sVersion: Self.start) { sandbox in
            let node = try #require(sandbox.manifest.nodes.first { $0.name == "agent-1" })
            // server-1's slow start holds its wave while agent-1's binary is prefetched.
            try await sandbox.fault(["server-1", "slow-start", "6"])
            let before = try #require(try sandbox.agentPID("agent-1"), "agent-1's agent has no pid file")
            let apply = try sandbox.start(["apply", "--to", Self.next, "--yes"])

            let staged = try await waitForStaged(node, version: Self.next)
            let kept = "\(sandbox.directory)/staged-binary"
            #expect(rename(staged, kept) == 0 && mkfifo(staged, 0o600) == 0, "could not swap \(staged) for a FIFO")
            #expect(!(try sandbox.journalOperationIDs("agent-1").contains { $0.contains(":install:") }),
                    "agent-1's install began before its staged binary was swapped; the test lost its race")

            let install = try await sandbox.waitForJournalStep("agent-1", of: "install", "previousKept")
            try await Task.sleep(for: .milliseconds(300))
            #expect(!sandbox.journalLines("agent-1").contains { $0.contains(install) && $0.contains("{\"placed\":") },
                    "agent-1 placed the binary although opening the staged file blocks")
            #expect(kill(before, SIGKILL) == 0, "could not kill agent-1's agent (pid \(before))")
            #expect(unlink(staged) == 0 && rename(kept, staged) == 0, "could not put the staged binary back")

            let code = await apply.exitCode(timeoutSeconds: 240)
            #expect(code == 0, "apply should complete:\n\(apply.output)")
            try await expectCompletedWithoutRollback(sandbox, apply)
            let installs = try sandbox.journalOperationIDs("agent-1").filter { $0.contains(":install:") }
            #expect(installs.count == 2 && installs.first == install && installs.last?.hasSuffix(":2") == true,
                    "agent-1 should have run \(install), then its next attempt: \(installs)")
            #expect(apply.output.contains("no verdict on"), "the controller should say the restart is no verdict:\n\(apply.output)")
        }
    }

    // MARK: Helpers

    /// Waits (bounded) until `node`'s agent has `version` staged; returns the staged file's path.
    private func waitForStaged(_ node: SandboxNode, version: String) async throws -> String {
        let directory = "\(node.agentDataDir)/staging"
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where name.hasSuffix(".json") {
                let text = (try? String(contentsOfFile: "\(directory)/\(name)", encoding: .utf8)) ?? ""
                let binary = "\(directory)/\(name.dropLast(".json".count))"
                if text.contains("\"\(version)\""), FileManager.default.fileExists(atPath: binary) { return binary }
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw EndToEndFailure("\(node.name)'s agent did not stage \(version) within 120 s")
    }

    /// Every node Ready at the new version, the history says completed, and no rollback was ever
    /// sent to any agent.
    private func expectCompletedWithoutRollback(_ sandbox: EndToEndSandbox, _ apply: BackgroundRun) async throws {
        try await sandbox.expectAllNodes(at: Self.next, "after the rollout")
        let history = try await sandbox.history()
        #expect(history.count == 1 && history.first?.outcome == .completed, "history: \(history.map { "\($0.id) \($0.status)" })")
        for node in sandbox.manifest.nodes.map(\.name) {
            let rollbacks = try sandbox.journalOperationIDs(node).filter { $0.contains(":rollback:") }
            #expect(rollbacks.isEmpty, "\(node)'s agent was told to roll back: \(rollbacks)")
        }
        #expect(!apply.output.contains("rolling back"), "\(apply.output)")
    }
}
