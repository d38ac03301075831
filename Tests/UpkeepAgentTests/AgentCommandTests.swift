import Foundation
import Testing
import UpkeepAgent
import UpkeepAgentCore
import UpkeepTestSupport

@Suite(.serialized) struct AgentCommandTests {
    @Test func versionPrintsTheAgentVersion() throws {
        let result = try AgentBinary.run(["version"])
        #expect(result.status == 0)
        #expect(result.output == "upkeep-agent \(AgentVersion.current)\n")
    }

    @Test func probeExitCodeSaysHealthyOrNot() async throws {
        let node = try FakeK3sNode(liveVersion: v1, healthyAfterSeconds: 0)
        let config = try node.directory.write(node.configYAML(), to: "agent.yaml")
        let down = try AgentBinary.run(["probe", "--config", config])
        #expect(down.status == 1)
        #expect(down.output.contains("unit        FAIL") && down.output.hasSuffix("healthy: no\n"), "\(down.output)")
        try await node.startK3s()
        #expect(await waitUntil(seconds: 5) { (try? AgentBinary.run(["probe", "--config", config]).status) == 0 })
        let up = try AgentBinary.run(["probe", "--config", config, "--json"])
        #expect(up.status == 0)
        let report = try JSONDecoder().decode(ProbeReport.self, from: Data(up.output.utf8))
        #expect(report.healthy && report.checks.map(\.name) == ["unit", "kubelet", "containerd"])
        let wrongVersion = try AgentBinary.run(["probe", "--config", config, "--expect-version", v2])
        #expect(wrongVersion.status == 0, "no API readiness check is configured, so the version is not judged here")
    }

    @Test func badConfigurationNamesTheField() throws {
        let directory = try TemporaryDirectory()
        let config = try directory.write("nodeName: n1\nprobes:\n  intervalMs: 0\n", to: "agent.yaml")
        let result = try AgentBinary.run(["probe", "--config", config])
        #expect(result.status != 0)
        #expect(result.error.contains("\(config):3: probes.intervalMs: must be in 10...60000; is 0"), "\(result.error)")
    }

    /// An id the protocol refuses (PROTOCOL.md: A-Z a-z 0-9 . _ : -) is refused on the command
    /// line too, before the journal records it: a usage error, exit 64 as every usage error.
    @Test func aLocalOperationIDThatTheProtocolRefusesIsAUsageError() async throws {
        let node = try FakeK3sNode(liveVersion: v1)
        let config = try node.directory.write(node.configYAML(), to: "agent.yaml")
        let artifact = try node.binary(v2)
        for id in ["../../x", "a/b", "", String(repeating: "x", count: 129)] {
            let staged = try AgentBinary.run(["local", "stage", "--config", config, "--operation-id", id, "--file", artifact.path,
                                              "--sha256", artifact.sha256, "--k3s-version", v2])
            #expect(staged.status == 64 && staged.error.contains("is not an operation id"), "\(id): \(staged.status) \(staged.error)")
        }
        #expect(!FileManager.default.fileExists(atPath: "\(node.dataDir)/journal.jsonl"), "nothing was recorded")
    }

    /// A refusal by the node (an install of a binary never staged) is not a usage error: exit 1,
    /// the message without the protocol's code and without the usage text.
    @Test func aRefusedLocalOperationIsNotAUsageError() async throws {
        let node = try FakeK3sNode(liveVersion: v1)
        try await node.startK3s()
        let config = try node.directory.write(node.configYAML(), to: "agent.yaml")
        let install = try AgentBinary.run(["local", "install", "--config", config, "--operation-id", "i1",
                                           "--sha256", String(repeating: "0", count: 64), "--health-timeout-seconds", "5"])
        #expect(install.status == 1, "\(install.status) \(install.error)")
        #expect(install.error.hasPrefix("Error: ") && install.error.contains("stage it first"), "\(install.error)")
        #expect(!install.error.contains("notFound:") && !install.error.contains("Usage:"), "\(install.error)")
    }

    @Test func localCommandsStageInstallReplayAndCommit() async throws {
        let node = try FakeK3sNode(liveVersion: v1, healthyAfterSeconds: 0.1)
        try await node.startK3s()
        let config = try node.directory.write(node.configYAML(), to: "agent.yaml")
        let artifact = try node.binary(v2)
        let staged = try AgentBinary.run(["local", "stage", "--config", config, "--operation-id", "s1", "--file", artifact.path,
                                          "--sha256", artifact.sha256, "--k3s-version", v2])
        #expect(staged.status == 0 && staged.output.hasPrefix("s1: succeeded: staged \(v2)"), "\(staged.output)\(staged.error)")
        let install = ["local", "install", "--config", config, "--operation-id", "i1", "--sha256", artifact.sha256, "--health-timeout-seconds", "10"]
        let first = try AgentBinary.run(install)
        #expect(first.status == 0 && first.output.hasPrefix("i1: succeeded: installed \(v2)"), "\(first.output)\(first.error)")
        let restarts = node.restarts
        let replay = try AgentBinary.run(install)
        #expect(replay.output == first.output && node.restarts == restarts)
        let commit = try AgentBinary.run(["local", "commit", "--config", config, "--operation-id", "c1", "--install-operation-id", "i1"])
        #expect(commit.status == 0, "\(commit.output)\(commit.error)")
        #expect(try liveVersion(node) == v2 && node.runningVersion == v2)
    }
}
