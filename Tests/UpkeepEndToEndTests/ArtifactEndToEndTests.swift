import Foundation
import Testing
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
}
