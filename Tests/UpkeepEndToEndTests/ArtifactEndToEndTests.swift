import Foundation
import Testing
import UpkeepProcess
import UpkeepCore
import UpkeepSandbox

/// Artifact authenticity end to end (issue 19): the sandbox release server plays GitHub, and the
/// real kubectl is the witness that a binary refused before the rollout leaves every node as it
/// was, none cordoned.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct ArtifactEndToEndTests {
    @Test func aReleaseAPIDigestThatDisagreesStopsApplyBeforeAnyNodeIsCordoned() async throws {
        let start = EndToEndTests.start
        let target = EndToEndTests.nextMinor
        try #require(target != start, "the sandbox offers no next minor: \(EndToEndTests.offered)")
        try await EndToEndSandbox.with(servers: 1, agents: 1, k3sVersion: start) { sandbox in
            // Honest server: the dry run verifies against both, and says so.
            let honest = try await sandbox.controller(["apply", "--to", target, "--dry-run"])
            #expect(honest.status == 0 && honest.output.contains("(checksum file and the releases API's digest)"), "\(honest.output)")

            // The API's digest disagrees with the downloads (and their checksum file): refused
            // before the rollout starts, naming both digests and where each came from.
            // (A state directory of its own: the binaries verified above stay verified in theirs.)
            try await sandbox.fault(["releases", "wrong-digests"])
            let lying = try sandbox.controllerConfig("lying")
            let refused = try await sandbox.controller(["apply", "--to", target, "--yes"], config: lying, timeoutSeconds: 120)
            #expect(refused.status == 7, "\(refused.output)")
            #expect(refused.output.contains("the releases API at \(sandbox.manifest.releaseURL)") && refused.output.contains("no node was touched"),
                    "\(refused.output)")
            let digests = refused.output.split(whereSeparator: { !$0.isHexDigit }).filter { $0.count == 64 }
            #expect(Set(digests).count == 2, "both digests named: \(refused.output)")
            try await sandbox.expectAllNodes(at: start, "after the refused apply")
            let history = try await sandbox.controller(["history", "-o", "json"], config: lying)
            let recorded = try JSONSerialization.jsonObject(with: Data(history.output.utf8)) as? [Any]
            #expect(history.status == 0 && recorded?.isEmpty == true, "no rollout was recorded: \(history.output)")

            // A release the API gives no digest for rests on the checksum file, and apply says so.
            try await sandbox.fault(["releases", "clear"])
            try await sandbox.fault(["releases", "no-digests"])
            let silent = try await sandbox.controller(["apply", "--to", target, "--dry-run"], config: sandbox.controllerConfig("silent"))
            #expect(silent.status == 0 && silent.output.contains("checksum file only: the releases API gives no digest"), "\(silent.output)")
            try await sandbox.expectAllNodes(at: start, "after the dry runs")
        }
    }

    /// A rollout blocked between its waves is resumed only after the binaries its remaining
    /// nodes need verify again: the cached blob damaged and the release server lying, `resume`
    /// refuses (exit 7) before agent-1 is cordoned, and carries on once the server is honest.
    @Test func resumeVerifiesTheRemainingBinariesBeforeItCordonsANode() async throws {
        let start = GatesEndToEndTests.start, patch = GatesEndToEndTests.patch
        try #require(patch != start)
        try await EndToEndSandbox.with(servers: 1, agents: 1, k3sVersion: start) { sandbox in
            let config = try GatesEndToEndTests.config(sandbox, "upkeep-resume.yaml", """
                gates:
                  holdTimeout: 10s
                  blockingPods: {onNode: ["app=backup-job"]}
                """)
            // A job pinned to agent-1 (made with kubectl) holds its wave: server-1 goes, then the rollout blocks.
            let job = #"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"backup-job","namespace":"default"},"spec":{"replicas":1,"#
                + #""selector":{"matchLabels":{"app":"backup-job"}},"template":{"metadata":{"labels":{"app":"backup-job"}},"spec":{"#
                + #""nodeSelector":{"kubernetes.io/hostname":"agent-1"},"containers":[{"name":"backup","image":"busybox:1.36"}]}}}}"#
            let manifest = "\(sandbox.directory)/backup-job.json"
            try job.write(toFile: manifest, atomically: true, encoding: .utf8)
            try #require(try await GatesEndToEndTests.kubectl(sandbox, ["apply", "-f", manifest]).status == 0)
            let running = try await GatesEndToEndTests.kubectl(sandbox, ["wait", "--for=condition=Ready", "pod", "-l", "app=backup-job", "--timeout=60s"])
            try #require(running.status == 0, "\(running.output)")
            let apply = try await ProcessRun.run(sandbox.upkeep, ["--config", config, "apply", "--to", patch, "--yes"], timeoutSeconds: 240)
            try #require(apply.status == 3, "apply should block on the pod:\n\(apply.output)")
            let deleted = try await GatesEndToEndTests.kubectl(sandbox, ["delete", "deployment", "backup-job", "--wait=true", "--timeout=60s"])
            #expect(deleted.status == 0, "\(deleted.output)")
            _ = try await GatesEndToEndTests.kubectl(sandbox, ["wait", "--for=delete", "pod", "-l", "app=backup-job", "--timeout=60s"])

            // The cached binary damaged, and the release server now lying about its digest.
            let blobs = "\(sandbox.directory)/state/artifacts/sha256"
            let stored = try FileManager.default.contentsOfDirectory(atPath: blobs)
            try #require(stored.count == 1, "one binary serves both nodes: \(stored)")
            let handle = try #require(FileHandle(forUpdatingAtPath: "\(blobs)/\(stored[0])"))
            try handle.seek(toOffset: 100)
            try handle.write(contentsOf: Data("#".utf8))
            try handle.close()
            try await sandbox.fault(["releases", "wrong-digests"])
            let cordonsBefore = sandbox.journalLines("agent-1").filter { $0.contains("cordon") }

            let refused = try await ProcessRun.run(sandbox.upkeep, ["--config", config, "resume"], timeoutSeconds: 120)
            #expect(refused.status == 7 && refused.output.contains("was not resumed and no node was touched")
                    && refused.output.contains("the releases API"), "\(refused.output)")
            let nodes = try await sandbox.nodes()
            #expect(nodes["server-1"]?.version == patch && nodes["agent-1"]?.version == start && nodes["agent-1"]?.cordoned == false,
                    "\(nodes.values.map(\.description))")
            #expect(sandbox.journalLines("agent-1").filter { $0.contains("cordon") } == cordonsBefore,
                    "agent-1 was not asked to cordon: \(sandbox.journalLines("agent-1").suffix(3))")

            try await sandbox.fault(["releases", "clear"])
            let resumed = try await ProcessRun.run(sandbox.upkeep, ["--config", config, "resume"], timeoutSeconds: 240)
            #expect(resumed.status == 0 && resumed.output.contains("done: every node runs its target version"), "\(resumed.output)")
            try await sandbox.expectAllNodes(at: patch, "after the resume")
        }
    }
}
