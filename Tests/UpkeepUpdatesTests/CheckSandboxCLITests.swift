import Foundation
import Testing
import UpkeepProcess
import UpkeepSandbox
import UpkeepTestSupport
import UpkeepUpdates

/// `upkeep check` against a sandbox started by `upkeep sandbox up`, its release server's faults
/// switched by `upkeep sandbox fault release-server …`: every piece a real process, as an
/// operator would try it (docs/check.md, "Trying it against the sandbox").
@Suite("upkeep check against upkeep sandbox up", .serialized, .timeLimit(.minutes(3)))
struct CheckSandboxCLITests {
    static func upkeep(_ arguments: [String]) async throws -> ProcessRun.Outcome {
        try await ProcessRun.run(try upkeepBinary(), arguments, timeoutSeconds: 120)
    }

    @Test("updates available (10), a rate limit (5, with its code in the JSON), then success once the limit resets")
    func checkAgainstTheSandbox() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("upkeep-check-sbx-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let up = try await Self.upkeep(["sandbox", "up", "--dir", directory, "--servers", "1", "--agents", "1", "--volumes", "0", "--no-agents"])
        var pids = SandboxDaemon.recordedPIDs(directory)
        do {
            #expect(up.status == 0 && !up.timedOut, "\(up.output)")
            let manifest = try SandboxManifest.load(directory: directory)
            func check() throws -> ProcessResult {
                try runProcess(try upkeepBinary(), ["check", "-o", "json", "--kubeconfig", manifest.kubeconfig, "--github-api", manifest.releaseURL,
                                                    "--channel-server", manifest.releaseURL, "--insecure", "--state-dir", "\(directory)/state", "--timeout", "5"],
                               timeoutSeconds: 60)
            }
            let fine = try check()
            #expect(fine.status == 10, "\(fine.error)")
            let report = try JSONDecoder().decode(CheckReport.self, from: Data(fine.output.utf8))
            #expect(report.component(.k3s)?.installed.version == version(manifest.k3sVersion))
            // The sandbox offers newer k3s minors; its draft and its release candidate are no target.
            let offered = manifest.availableK3sVersions.filter { !$0.contains("-") }
            #expect(report.component(.k3s)?.latest == version(try #require(offered.last)))
            #expect(report.component(.k3s)?.path.last?.version == report.component(.k3s)?.target)

            let fault = try await Self.upkeep(["sandbox", "fault", "--dir", directory, "release-server", "rate-limit"])
            #expect(fault.status == 0 && fault.output.contains("403"), "\(fault.output)")
            let status = try await Self.upkeep(["sandbox", "status", "--dir", directory])
            #expect(status.output.contains("release faults: release API rate-limited"), "\(status.output)")
            let limited = try check()
            #expect(limited.status == 5, "\(limited.error)")
            let error = try JSONSerialization.jsonObject(with: Data(limited.output.utf8)) as? [String: Any]
            #expect((error?["error"] as? [String: Any])?["exitCode"] as? Int == 5)
            #expect(limited.error.contains("rate limit exhausted") && limited.error.contains("GITHUB_TOKEN"))

            // A limit that resets 2 s after its first refusal: the check waits for the reset and succeeds.
            _ = try await Self.upkeep(["sandbox", "fault", "--dir", directory, "release-server", "clear"])
            let resetting = try await Self.upkeep(["sandbox", "fault", "--dir", directory, "release-server", "rate-limit", "2"])
            #expect(resetting.status == 0 && resetting.output.contains("resets 2 s after the first refusal"), "\(resetting.output)")
            let afterReset = try check()
            #expect(afterReset.status == 10, "\(afterReset.error)")

            let unknown = try await Self.upkeep(["sandbox", "fault", "--dir", directory, "release-server", "melt"])
            #expect(unknown.status != 0 && unknown.output.contains("retry-after, corrupt-json, hang, drop-asset"), "\(unknown.output)")
        } catch {
            _ = try? await Self.upkeep(["sandbox", "down", "--dir", directory])
            throw error
        }
        pids.formUnion(SandboxDaemon.recordedPIDs(directory))
        let down = try await Self.upkeep(["sandbox", "down", "--dir", directory])
        #expect(down.status == 0, "\(down.output)")
        let survivors = pids.filter { Spawn.isAlive($0) }
        #expect(survivors.isEmpty, "still running after down: \(survivors.sorted())")
    }
}
