import Foundation
import Testing
import UpkeepCore
import UpkeepKube
import UpkeepPKI
import UpkeepProcess
@testable import UpkeepSandbox

/// An air-gapped node (https://docs.k3s.io/installation/airgap, "Manually deploy images") runs a
/// k3s version only with that version's images tarball in `agent/images`, which the release
/// server offers with its checksum.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct AirGapTests {
    @Test func anAirGappedNodeIsNotReadyAtAVersionWhoseImagesAreMissingUntilTheReleasesTarballIsPlaced() async throws {
        let directory = HostTests.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let runner = try await SandboxRunner.start(SandboxOptions(directory: directory, spec: ClusterSpec(servers: 1, agents: 1, volumes: 0, replicas: 1),
                                                                  hostBinary: HostTests.hostBinary, timings: ModelTimings(nodeGraceSeconds: 3),
                                                                  readyTimeoutSeconds: 60, airgapNodes: ["agent-1"]))
        do {
            let node = try #require(runner.manifest.nodes.first { $0.name == "agent-1" })
            let images = AirGap.imagesDirectory(node)
            #expect(try FileManager.default.contentsOfDirectory(atPath: images) == ["k3s-airgap-images-amd64.tar.zst"], "up placed the start version's images")
            #expect(runner.manifest.nodes.first { $0.name == "server-1" }?.airgap == nil)
            let client = try KubeClient(kubeconfig: runner.manifest.kubeconfig)
            defer { Task { await client.shutdown() } }

            // v1.31 without its images: the unit starts, the kubelet is never healthy, the node goes NotReady.
            try JSONFiles.atomicWrite(Data(FakeK3s.script(version: "v1.31.2+k3s1", hostBinary: HostTests.hostBinary).utf8), to: node.k3sBinary, mode: 0o755)
            #expect(try await ProcessRun.run(node.systemctl, ["restart", node.unit], timeoutSeconds: 60).status == 0)
            let notReady = try await HostTests.eventually(timeoutSeconds: 30) { try await !client.get(Node.self, node.name).isReady }
            #expect(notReady)
            let log = try String(contentsOfFile: node.logFile, encoding: .utf8)
            #expect(log.contains("Failed to import images for v1.31.2+k3s1") && log.contains("https://docs.k3s.io/installation/airgap"), "\(log)")
            let healthz = try await ProcessRun.run("curl", ["-sS", "--max-time", "5", node.kubeletHealthzURL], timeoutSeconds: 20)
            #expect(healthz.output.contains("healthz check failed"))

            // The release's tarball, checked against its sha256sum file, placed as k3s documents.
            let base = "\(runner.releaseURL)/k3s-io/k3s/releases/download/v1.31.2%2Bk3s1"
            let tarball = "\(images)/k3s-airgap-images-amd64.tar.gz"
            let fetched = try await ProcessRun.run("curl", ["-sSfL", "--max-time", "10", "-o", tarball, "\(base)/k3s-airgap-images-amd64.tar.gz"],
                                                   timeoutSeconds: 20)
            #expect(fetched.status == 0, "\(fetched.output)")
            let sums = try await ProcessRun.run("curl", ["-sSfL", "--max-time", "10", "\(base)/sha256sum-amd64.txt"], timeoutSeconds: 20)
            let listed = sums.output.split(separator: "\n").first { $0.hasSuffix("  k3s-airgap-images-amd64.tar.gz") }.map { String($0.prefix(64)) }
            #expect(listed != nil && listed == FileManager.default.contents(atPath: tarball).map { SHA256.hex(Array($0)) }, "\(sums.output)")
            #expect(sums.output.contains("k3s-airgap-images-amd64.tar.zst") && sums.output.contains("k3s-airgap-images-amd64.tar\n"))

            #expect(try await ProcessRun.run(node.systemctl, ["restart", node.unit], timeoutSeconds: 60).status == 0)
            let ready = try await HostTests.eventually(timeoutSeconds: 30) {
                let view = try await client.get(Node.self, node.name)
                return view.isReady && view.kubeletVersion == "v1.31.2+k3s1"
            }
            #expect(ready, "Ready at v1.31 with its images")
        } catch {
            await runner.stop()
            throw error
        }
        await runner.stop()
    }
}
