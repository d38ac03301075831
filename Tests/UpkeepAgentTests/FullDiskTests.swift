import Foundation
import Testing
import UpkeepAgent
import UpkeepAgentCore
import UpkeepTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Staging onto a real, nearly full file system: a 1 MiB tmpfs mounted for the test.
@Suite(.serialized) struct FullDiskTests {
    @Test func fullDiskIsReportedBeforeAnythingIsWritten() async throws {
        let node = try FakeK3sNode(liveVersion: v1)
        try FileManager.default.createDirectory(atPath: node.dataDir, withIntermediateDirectories: true)
        let mounted = try runProcess("mount", ["-t", "tmpfs", "-o", "size=1m", "upkeep-test", node.dataDir])
        try #require(mounted.status == 0, "mounting a tmpfs needs root: \(mounted.error)")
        defer { _ = try? runProcess("umount", [node.dataDir]) }
        let service = try await startService(on: node)
        let artifact = try node.binary(v2)
        let reader = try ChunkReader(path: artifact.path)
        let failure = await #expect(throws: AgentFailure.self) {
            try await service.stage(operationID: "stage-1", sha256: artifact.sha256, bytes: artifact.bytes, k3sVersion: v2,
                                    next: { try reader.next() })
        }
        #expect(failure?.code == .insufficientSpace)
        #expect(failure?.message.contains("needs \(artifact.bytes + ArtifactStore.spareBytes) bytes free") == true, "\(String(describing: failure))")
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(node.dataDir)/staging").isEmpty)
        #expect(await service.journal.operation("stage-1") == nil)
        #expect(try liveVersion(node) == v1)
    }
}
