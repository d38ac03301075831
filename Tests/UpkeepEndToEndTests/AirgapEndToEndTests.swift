import Foundation
import Testing
import UpkeepProcess
import UpkeepRollout
import UpkeepSandbox

/// Air-gapped nodes (#15, item 10; https://docs.k3s.io/installation/airgap, "Manually deploy
/// images"): their fake k3s does not become Ready at a version whose images tarball is missing
/// from `agent/images`, so a rollout works only if every install brings the release's tarball
/// and every way back brings the old one back.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct AirgapEndToEndTests {
    static let start = EndToEndTests.start
    static let next = EndToEndTests.nextMinor
    /// The next patch of `start`'s minor, which both servers and agents may leave by binaries.
    static let patch = EndToEndTests.offered.first { EndToEndTests.minor($0) == EndToEndTests.minor(start) && K3sVersionOrder.less(start, $0) } ?? start

    /// The images directory's tarballs and the ones the agent keeps aside: file name → version.
    private func tarballs(_ node: SandboxNode) -> (images: [String: String], kept: [String: String]) {
        func read(_ directory: String) -> [String: String] {
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasPrefix("k3s-airgap-images-") }
            return Dictionary(uniqueKeysWithValues: names.map { name in
                let text = (try? String(contentsOfFile: "\(directory)/\(name)", encoding: .utf8)) ?? ""
                return (name, text.split(separator: " ").dropFirst(3).first.map(String.init) ?? text)
            })
        }
        return (read(AirGap.imagesDirectory(node)), read("\(node.agentDataDir)/previous-images"))
    }

    @Test func airgappedNodesUpgradeAcrossAMinorWithTheirImages() async throws {
        try await EndToEndSandbox.with(servers: 1, agents: 1, k3sVersion: Self.start, airgap: ["server-1", "agent-1"]) { sandbox in
            let apply = try await sandbox.controller(["apply", "--to", Self.next, "--yes"], timeoutSeconds: 240)
            #expect(apply.status == 0, "apply should complete:\n\(apply.output)")
            try await sandbox.expectAllNodes(at: Self.next, "after the upgrade")
            for node in sandbox.manifest.nodes {
                let (images, kept) = tarballs(node)
                #expect(images == ["k3s-airgap-images-amd64.tar.zst": Self.next], "\(node.name)'s images: \(images)")
                #expect(kept == ["k3s-airgap-images-amd64.tar.zst": Self.start], "\(node.name) keeps \(kept)")
            }
        }
    }

    /// `rollback --restore` on air-gapped servers: the restoring server and a rejoining one start
    /// the old binary only with the old release's tarball in place (the restore and rejoin name
    /// it, as an install does), and the agent gets its kept tarball back with its kept binary.
    @Test func airgappedServersAreRestoredAndRejoinedWithTheOldImages() async throws {
        let airgapped = ["server-1", "server-2", "agent-1"]
        try await EndToEndSandbox.with(servers: 3, agents: 1, k3sVersion: Self.start, airgap: airgapped, policy: RestoreEndToEndTests.policy) { sandbox in
            let apply = try await sandbox.controller(["apply", "--to", Self.next, "--yes"], timeoutSeconds: 240)
            try #require(apply.status == 0, "apply should complete:\n\(apply.output)")
            let rollback = try await sandbox.controller(["rollback", "--restore", "--yes"], timeoutSeconds: 240)
            #expect(rollback.status == 0, "rollback --restore should complete:\n\(rollback.output)")
            try await sandbox.expectAllNodes(at: Self.start, "after the restore", timeoutSeconds: 60)
            for node in sandbox.manifest.nodes where airgapped.contains(node.name) {
                #expect(tarballs(node).images == ["k3s-airgap-images-amd64.tar.zst": Self.start], "\(node.name): \(tarballs(node))")
            }
            try await sandbox.expectThreeStartedMembersOfOneCluster()
        }
    }

    @Test func anAirgappedNodeGoesBackWithItsImagesOnARevertAndARollback() async throws {
        try #require(Self.patch != Self.start, "expected a later patch of \(Self.start): \(EndToEndTests.offered)")
        try await EndToEndSandbox.with(servers: 1, agents: 2, k3sVersion: Self.start, airgap: ["agent-1"]) { sandbox in
            let node = try #require(sandbox.manifest.nodes.first { $0.name == "agent-1" })
            // The patch never becomes healthy on agent-1: its agent reverts, the rollout rolls back.
            try await sandbox.fault(["agent-1", "unhealthy", "--k3s-version", Self.patch])
            let failing = try await sandbox.controller(["apply", "--to", Self.patch, "--yes"], timeoutSeconds: 240)
            #expect(failing.status == 1 && failing.output.contains("agent-1"), "apply should fail on agent-1 and roll back:\n\(failing.output)")
            try await sandbox.expectAllNodes(at: Self.start, "after the revert and the rollback")
            #expect(tarballs(node).images == ["k3s-airgap-images-amd64.tar.zst": Self.start], "\(tarballs(node))")

            // Healthy this time; then `rollback --to-previous` stages and installs the old release, images included.
            try await sandbox.fault(["agent-1", "clear"])
            let apply = try await sandbox.controller(["apply", "--to", Self.patch, "--yes"], timeoutSeconds: 240)
            #expect(apply.status == 0, "apply should complete:\n\(apply.output)")
            try await sandbox.expectAllNodes(at: Self.patch, "after the upgrade")
            #expect(tarballs(node).images == ["k3s-airgap-images-amd64.tar.zst": Self.patch], "\(tarballs(node))")
            let rollback = try await sandbox.controller(["rollback", "--to-previous", "--yes"], timeoutSeconds: 240)
            #expect(rollback.status == 0, "rollback should complete:\n\(rollback.output)")
            try await sandbox.expectAllNodes(at: Self.start, "after rollback --to-previous")
            #expect(tarballs(node).images == ["k3s-airgap-images-amd64.tar.zst": Self.start], "\(tarballs(node))")
        }
    }
}
