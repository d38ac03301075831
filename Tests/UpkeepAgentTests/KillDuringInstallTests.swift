import Foundation
import Testing
import UpkeepAgent
import UpkeepAgentCore
import UpkeepCore
import UpkeepTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Kills the real `upkeep-agent` process with SIGKILL at 20 random moments of an install. After
/// each kill the live binary must run (`--version`), and an agent started afterwards must resolve
/// the operation from its journal, leaving the node on one whole version that is the one running.
@Suite(.serialized) struct KillDuringInstallTests {
    @Test func killedInstallAlwaysLeavesARunnableBinaryAndAResolvedJournal() async throws {
        let node = try FakeK3sNode(liveVersion: v1, healthyAfterSeconds: 0.1)
        let config = try node.directory.write(node.configYAML(), to: "agent.yaml")
        let artifact = try node.binary(v2)
        let original = try node.binary(v1)
        let staged = try AgentBinary.run(["local", "stage", "--config", config, "--operation-id", "s1", "--file", artifact.path,
                                          "--sha256", artifact.sha256, "--k3s-version", v2])
        try #require(staged.status == 0, "\(staged.error)")
        let template = node.directory.file("data-template")
        try FileManager.default.copyItem(atPath: node.dataDir, toPath: template)
        let install = ["local", "install", "--config", config, "--operation-id", "install-1", "--sha256", artifact.sha256,
                       "--health-timeout-seconds", "10", "--watchdog-timeout-seconds", "600"]

        func reset() async throws {
            node.stopK3s()
            try FileManager.default.removeItem(atPath: node.dataDir)
            try FileManager.default.copyItem(atPath: template, toPath: node.dataDir)
            unlink(node.livePath)
            try FileManager.default.copyItem(atPath: original.path, toPath: node.livePath)
            try await node.startK3s()
            try #require(await waitUntil(seconds: 10) { node.runningVersion == v1 }, "the fake k3s did not start")
        }

        // One undisturbed install tells how long the window to kill in is.
        try await reset()
        let started = ContinuousClock.now
        let reference = try AgentBinary.run(install)
        let window = ContinuousClock.now - started
        try #require(reference.status == 0, "\(reference.output)\(reference.error)")

        var generator = SeededGenerator(seed: TestSeed.fresh())
        let seed = generator.seed
        var tally: [String: Int] = [:]
        for round in 1...20 {
            try await reset()
            let delay = Duration.nanoseconds(Int64.random(in: 0...Int64(window.components.seconds * 1_000_000_000 + window.components.attoseconds / 1_000_000_000),
                                                          using: &generator))
            let outcome = try killAfter(delay, arguments: install)
            let context = "seed \(seed) (UPKEEP_TEST_SEED=\(seed) replays it) round \(round): killed after \(delay) (\(outcome))"

            // The live path holds a whole binary that runs.
            let version = try runProcess(node.livePath, ["--version"], timeoutSeconds: 10)
            #expect(version.status == 0, "\(context)")
            let liveWord = version.output.split(separator: " ").dropFirst(2).first.map(String.init)
            #expect(liveWord == v1 || liveWord == v2, "\(context): live reports \(version.output)")

            // A restarted agent resolves the operation.
            let status = try AgentBinary.run(["status", "--config", config, "--json"], timeoutSeconds: 60)
            #expect(status.status == 0, "\(context): \(status.error)")
            let report = try JSONDecoder().decode(AgentStatus.self, from: Data(status.output.utf8))
            let entry = report.recentOperations.first { $0.id == "install-1" }
            #expect(entry?.isRunning != true, "\(context): still running after recovery")
            #expect(!FileManager.default.fileExists(atPath: "\(node.root)/bin/.k3s.upkeep-new"), "\(context): temporary file left")
            let live = try liveVersion(node)
            tally["\(outcome), \(entry?.outcome?.state.rawValue ?? "never began")", default: 0] += 1
            // v2 is healthy: an agent's death is no verdict on it (installed, or interrupted: send it again).
            #expect(entry?.outcome?.state != .reverted, "\(context): the healthy \(v2) was reported reverted: \(entry?.outcome?.message ?? "")")
            if entry?.outcome?.state == .succeeded {
                #expect(live == v2, "\(context): installed but live \(live)")
                #expect(await waitUntil(seconds: 10) { node.runningVersion == v2 }, "\(context): running \(node.runningVersion ?? "none")")
                #expect(report.watch?.installID == "install-1", "\(context)")
            } else {
                #expect(live == v1, "\(context): \(entry?.outcome?.message ?? "never began") but live \(live)")
                // A k3s restarted during recovery may still be starting up.
                #expect(await waitUntil(seconds: 10) { node.runningVersion == v1 }, "\(context): running \(node.runningVersion ?? "none")")
                #expect(report.watch == nil, "\(context)")
            }
        }
        print("kill -9 during install, seed \(seed), window \(window): \(tally.sorted { $0.key < $1.key })")
    }

    /// Starts `upkeep-agent` with `arguments` and sends SIGKILL after `delay` (unless it finished).
    private func killAfter(_ delay: Duration, arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try AgentBinary.path())
        process.arguments = arguments
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = ContinuousClock.now + delay
        while ContinuousClock.now < deadline, process.isRunning { usleep(1_000) }
        guard process.isRunning else { return "finished first" }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        return "killed"
    }
}

