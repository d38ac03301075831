import Foundation
import Testing
import UpkeepAgent
import UpkeepAgentCore
import UpkeepCore
import UpkeepTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// k3s's images directory on an air-gapped node (https://docs.k3s.io/installation/airgap,
/// "Manually deploy images"), with real files: what an install keeps, places and puts back, and
/// the agent service refusing an install without the images.
@Suite(.serialized) struct AirgapImagesTests {
    private func contents(_ directory: String) -> [String: String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return Dictionary(uniqueKeysWithValues: names.map { ($0, (try? String(contentsOfFile: "\(directory)/\($0)", encoding: .utf8)) ?? "?") })
    }

    /// Writes `text` to `name` under `directory`, making the directories on the way.
    private func write(_ directory: TemporaryDirectory, _ text: String, to name: String) throws -> String {
        try FileManager.default.createDirectory(atPath: PathName.directory(directory.file(name)), withIntermediateDirectories: true)
        return try directory.write(text, to: name)
    }

    /// The request refused before it was recorded, or nil when it was not.
    private func refusal(_ body: () async throws -> OperationOutcome) async -> AgentFailure? {
        do {
            _ = try await body()
            return nil
        } catch {
            return error as? AgentFailure
        }
    }

    @Test func keepPlaceAndRestoreLeaveWholeTarballsUnderTheirNames() throws {
        let root = try TemporaryDirectory()
        let images = AirgapImages(k3sDataDir: root.file("k3s"), dataDir: root.file("agent"))
        #expect(!images.inUse(configured: nil))
        _ = try write(root, "images of v1.30\n", to: "k3s/agent/images/k3s-airgap-images-amd64.tar.zst")
        _ = try write(root, "extra images of v1.30\n", to: "k3s/agent/images/k3s-airgap-images-amd64.tar.gz")
        _ = try write(root, "my own images\n", to: "k3s/agent/images/registry-mirror.tar")
        #expect(images.inUse(configured: nil) && !images.inUse(configured: false))
        let staged = try write(root, "images of v1.31\n", to: "agent/staging/new")

        try images.keep()
        try images.place(staged, as: "k3s-airgap-images-amd64.tar.zst")
        #expect(contents(images.directory) == ["k3s-airgap-images-amd64.tar.zst": "images of v1.31\n", "registry-mirror.tar": "my own images\n"])
        #expect(contents(images.keptDirectory) == ["k3s-airgap-images-amd64.tar.zst": "images of v1.30\n",
                                                   "k3s-airgap-images-amd64.tar.gz": "extra images of v1.30\n"])
        // A link where the file systems allow: nothing copied.
        var placed = stat(), source = stat()
        #expect(stat("\(images.directory)/k3s-airgap-images-amd64.tar.zst", &placed) == 0 && stat(staged, &source) == 0 && placed.st_ino == source.st_ino)

        try images.restore()
        try images.restore()  // after a crash it runs again
        #expect(contents(images.directory) == ["k3s-airgap-images-amd64.tar.zst": "images of v1.30\n",
                                               "k3s-airgap-images-amd64.tar.gz": "extra images of v1.30\n", "registry-mirror.tar": "my own images\n"])
        #expect(contents(images.keptDirectory).count == 2, "the kept tarballs stay with the kept binary")
        // The next install keeps what is there now, not what was kept before.
        try images.place(staged, as: "k3s-airgap-images-amd64.tar.zst")
        try images.keep()
        #expect(contents(images.keptDirectory) == ["k3s-airgap-images-amd64.tar.zst": "images of v1.31\n"])
    }

    @Test func anAirgappedNodeInstallsOnlyWithTheImagesOfTheSameRelease() async throws {
        let node = try FakeK3sNode(liveVersion: v1)
        try await node.startK3s()
        let imagesDir = "\(node.root)/k3s/agent/images"
        _ = try write(node.directory, "images of \(v1)\n", to: "k3s/agent/images/k3s-airgap-images-amd64.tar.zst")
        // An agent node: a server is never rolled back across a minor by binaries (RestoreMachineTests).
        var config = node.config()
        config.unit = "k3s-agent"
        let service = try await startService(on: node, config: config)
        #expect(await service.status().airgapImagesDir == imagesDir)
        let binary = try await stage(v2, on: node, service: service)

        let withoutImages = await refusal { try await service.install(operationID: "install-1", sha256: binary.sha256, healthTimeoutMs: 10_000,
                                                                      watchdogTimeoutMs: 60_000) }
        #expect(withoutImages?.code == .conflict && withoutImages?.message.contains("k3s-airgap-images") == true, "\(String(describing: withoutImages))")
        let tarball = try write(node.directory, "images of \(v2)\n", to: "release/k3s-airgap-images-amd64.tar.zst")
        let reader = try ChunkReader(path: tarball)
        let sha = try FileSystem.sha256(ofFile: tarball)
        let staged = try await service.stage(operationID: "stage-images", sha256: sha, bytes: Int64(try FileSystem.fileStatus(tarball).st_size),
                                             k3sVersion: v2, imagesFileName: "k3s-airgap-images-amd64.tar.zst", next: { try reader.next() })
        #expect(staged.state == .succeeded, "\(staged.message)")
        #expect(await service.status().staged.contains { $0.sha256 == sha && $0.imagesFileName == "k3s-airgap-images-amd64.tar.zst" })
        // The tarball is not a binary, and a binary is not a tarball.
        let swapped = await refusal { try await service.install(operationID: "install-2", sha256: sha, healthTimeoutMs: 10_000,
                                                                watchdogTimeoutMs: 60_000, imagesSHA256: binary.sha256) }
        #expect(swapped?.code == .conflict, "\(String(describing: swapped))")

        let installed = try await service.install(operationID: "install-3", sha256: binary.sha256, healthTimeoutMs: 10_000, watchdogTimeoutMs: 60_000,
                                                  imagesSHA256: sha)
        #expect(installed.state == .succeeded, "\(installed.message)")
        #expect(contents(imagesDir) == ["k3s-airgap-images-amd64.tar.zst": "images of \(v2)\n"])
        #expect(contents("\(node.dataDir)/previous-images") == ["k3s-airgap-images-amd64.tar.zst": "images of \(v1)\n"])

        // Rolled back to the kept binary: its images come back with it.
        let rollback = try await service.rollback(operationID: "rollback-1", toSHA256: nil, healthTimeoutMs: 10_000)
        #expect(rollback.state == .succeeded, "\(rollback.message)")
        #expect(contents(imagesDir) == ["k3s-airgap-images-amd64.tar.zst": "images of \(v1)\n"])
        await service.close()
    }
}
