import Foundation
import NIOPosix
import Testing
import UpkeepAgent
import UpkeepAgentCore
import UpkeepTestSupport

let v1 = "v1.30.6+k3s1"
let v2 = "v1.31.2+k3s1"

/// Builds an `AgentService` on a fake node. Each test gets its own node, port and data dir.
func startService(on node: FakeK3sNode, config: AgentConfig? = nil) async throws -> AgentService {
    let environment = try AgentBootstrap.environment(config: config ?? node.config(), group: MultiThreadedEventLoopGroup.singleton,
                                                     logger: AgentBootstrap.logger(level: .warning))
    return try await AgentService.start(environment)
}

/// Closes `service` and starts a new one on the same data directory, as an agent restart does.
func restartService(_ service: AgentService, on node: FakeK3sNode, config: AgentConfig) async throws -> AgentService {
    await service.close()
    return try await startService(on: node, config: config)
}

/// Stages the fake binary for `version` from its file.
@discardableResult
func stage(_ version: String, on node: FakeK3sNode, service: AgentService, id: String? = nil) async throws -> (sha256: String, outcome: OperationOutcome) {
    let artifact = try node.binary(version)
    let reader = try ChunkReader(path: artifact.path)
    let outcome = try await service.stage(operationID: id ?? "stage-\(version)", sha256: artifact.sha256, bytes: artifact.bytes,
                                          k3sVersion: version, next: { try reader.next() })
    return (artifact.sha256, outcome)
}

final class ChunkReader: @unchecked Sendable {
    private let handle: FileHandle
    init(path: String) throws { handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path)) }
    func next() throws -> [UInt8]? {
        let data = try handle.read(upToCount: 256 * 1024) ?? Data()
        return data.isEmpty ? nil : Array(data)
    }
}

func liveVersion(_ node: FakeK3sNode) throws -> String {
    try runProcess(node.livePath, ["--version"], timeoutSeconds: 10).output.split(separator: " ")[2].description
}

@Suite(.serialized) struct AgentServiceTests {
    @Test func installThatBecomesHealthyRunsTheNewBinaryAndKeepsTheOldOne() async throws {
        let node = try FakeK3sNode(liveVersion: v1)
        try await node.startK3s()
        let service = try await startService(on: node)
        let (sha, staged) = try await stage(v2, on: node, service: service)
        #expect(staged.state == .succeeded)
        let outcome = try await service.install(operationID: "install-1", sha256: sha, healthTimeoutMs: 10_000, watchdogTimeoutMs: 600_000)
        #expect(outcome.state == .succeeded, "\(outcome.message)")
        #expect(try liveVersion(node) == v2)
        #expect(node.runningVersion == v2)
        let previous = try #require(await service.journal.previous)
        #expect(previous.k3sVersion == v1)
        #expect(FileManager.default.fileExists(atPath: "\(node.dataDir)/previous/\(previous.sha256)"))
        guard case .install(let report) = outcome.body else { Issue.record("no install report"); return }
        #expect(report.probe.healthy && report.probe.checks.map(\.name) == ["unit", "kubelet", "containerd"])
        // A replay of the id answers the record and restarts nothing.
        let restarts = node.restarts
        let replay = try await service.install(operationID: "install-1", sha256: sha, healthTimeoutMs: 10_000, watchdogTimeoutMs: 600_000)
        #expect(replay == outcome && node.restarts == restarts)
        let commit = try await service.commit(operationID: "commit-1", installOperationID: "install-1")
        #expect(commit.state == .succeeded && commit.body == .commit(CommitReport(k3sVersion: v2)))
    }

    @Test func swapsLinkFilesProvenUnchangedAndNeverPlaceAStagedFileChangedSinceStaging() async throws {
        func inode(_ path: String) throws -> Int {
            try #require(try FileManager.default.attributesOfItem(atPath: path)[.systemFileNumber] as? Int)
        }
        let node = try FakeK3sNode(liveVersion: v1)
        try await node.startK3s()
        let service = try await startService(on: node)
        let oldLive = try inode(node.livePath)
        let (sha, _) = try await stage(v2, on: node, service: service)
        let outcome = try await service.install(operationID: "install-1", sha256: sha, healthTimeoutMs: 10_000, watchdogTimeoutMs: 600_000)
        #expect(outcome.state == .succeeded, "\(outcome.message)")
        let previous = try #require(await service.journal.previous)
        // Both swaps were links: no byte of either binary was copied.
        #expect(try inode("\(node.dataDir)/previous/\(previous.sha256)") == oldLive)
        #expect(try inode(node.livePath) == inode("\(node.dataDir)/staging/\(sha)"))
        #expect(try liveVersion(node) == v2)

        // A staged file changed after it was verified (same size, other bytes) is copied and
        // checked instead, and refused: the live binary stays as it is.
        let back = try await stage(v1, on: node, service: service, id: "stage-back")
        let stagedPath = "\(node.dataDir)/staging/\(back.sha256)"
        let handle = try #require(FileHandle(forUpdatingAtPath: stagedPath))
        try handle.seek(toOffset: 4096)
        try handle.write(contentsOf: Data("damaged".utf8))
        try handle.close()
        _ = try await service.commit(operationID: "commit-1", installOperationID: "install-1")
        let damaged = try await service.install(operationID: "install-2", sha256: back.sha256, healthTimeoutMs: 10_000, watchdogTimeoutMs: 600_000)
        #expect(damaged.state != .succeeded)
        #expect(damaged.message.contains("expected \(back.sha256)"), "\(damaged.message)")
        #expect(try liveVersion(node) == v2 && node.runningVersion == v2)
        await service.close()
        node.stopK3s()
    }

    @Test func installThatNeverBecomesHealthyIsRevertedWithTheFailingProbes() async throws {
        let node = try FakeK3sNode(liveVersion: v1)
        try await node.startK3s()
        let service = try await startService(on: node)
        let (sha, _) = try await stage(v2, on: node, service: service)
        try node.setFault(v2, "never")
        let outcome = try await service.install(operationID: "install-1", sha256: sha, healthTimeoutMs: 1_500, watchdogTimeoutMs: 600_000)
        #expect(outcome.state == .reverted, "\(outcome.message)")
        guard case .install(let report) = outcome.body else { Issue.record("no install report"); return }
        let kubelet = try #require(report.probe.checks.first { $0.name == "kubelet" })
        #expect(!kubelet.ok && kubelet.message.contains("503"))
        #expect(report.revertProbe?.healthy == true)
        #expect(try liveVersion(node) == v1 && node.runningVersion == v1)
        #expect(await service.journal.watch == nil)
    }

    @Test func watchdogRevertsWithoutCommitWhenUnhealthyAndKeepsWhenCommitted() async throws {
        let node = try FakeK3sNode(liveVersion: v1)
        try await node.startK3s()
        // An agent node: a server is never reverted across a minor by binaries (RestoreMachineTests).
        var config = node.config()
        config.unit = "k3s-agent"
        let service = try await startService(on: node, config: config)
        let (sha, _) = try await stage(v2, on: node, service: service)
        // Committed: the deadline passes and nothing happens even though k3s turns sick.
        _ = try await service.install(operationID: "install-1", sha256: sha, healthTimeoutMs: 5_000, watchdogTimeoutMs: 500)
        _ = try await service.commit(operationID: "commit-1", installOperationID: "install-1")
        try node.setFault(v2, "sick")
        try await Task.sleep(for: .milliseconds(900))
        #expect(try liveVersion(node) == v2)
        // Not committed (the controller is gone): at the deadline the agent finds k3s sick and reverts.
        _ = try await service.rollback(operationID: "rollback-1", toSHA256: nil, healthTimeoutMs: 5_000)
        try node.setFault(v2, nil)
        // Bounds with room for a loaded machine: the install must succeed, and the watchdog's check
        // at the deadline (a health wait of up to 4 s) and its revert take a while.
        let again = try await service.install(operationID: "install-2", sha256: sha, healthTimeoutMs: 4_000, watchdogTimeoutMs: 500)
        #expect(again.state == .succeeded, "\(again.message)")
        try node.setFault(v2, "sick")
        let reverted = await waitUntil(seconds: 30) { await service.journal.operation("install-2")?.watchEnd != nil }
        #expect(reverted)
        guard case .reverted(let failed, let restored, _)? = await service.journal.operation("install-2")?.watchEnd else {
            Issue.record("the watchdog did not revert"); return
        }
        #expect(!failed.healthy && restored?.healthy == true)
        #expect(try liveVersion(node) == v1 && node.runningVersion == v1)
    }

    @Test func stageWithTheWrongDigestIsRefusedAndLeavesNothingBehind() async throws {
        let node = try FakeK3sNode(liveVersion: v1)
        let service = try await startService(on: node)
        let artifact = try node.binary(v2)
        let reader = try ChunkReader(path: artifact.path)
        let wrong = String(artifact.sha256.reversed())
        let outcome = try await service.stage(operationID: "stage-1", sha256: wrong, bytes: artifact.bytes, k3sVersion: v2,
                                              next: { try reader.next() })
        #expect(outcome.state == .failed && outcome.failure == .digestMismatch)
        #expect(outcome.message.contains("not the expected"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(node.dataDir)/staging") == [])
        // A binary that reports another version than announced is refused too.
        let second = try ChunkReader(path: artifact.path)
        let mislabelled = try await service.stage(operationID: "stage-2", sha256: artifact.sha256, bytes: artifact.bytes, k3sVersion: "v1.31.9+k3s1",
                                                  next: { try second.next() })
        #expect(mislabelled.failure == .conflict && mislabelled.message.contains("reports \(v2)"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(node.dataDir)/staging") == [])
        #expect(try liveVersion(node) == v1)
    }

    @Test func installOfAnUnstagedBinaryIsRefusedAndNothingRecorded() async throws {
        let node = try FakeK3sNode(liveVersion: v1)
        let service = try await startService(on: node)
        await #expect(throws: AgentFailure.self) {
            try await service.install(operationID: "install-1", sha256: String(repeating: "0", count: 64), healthTimeoutMs: 1000, watchdogTimeoutMs: 1000)
        }
        #expect(await service.journal.operation("install-1") == nil)
    }

    @Test func aSecondAgentOnTheSameDataDirIsRefused() async throws {
        let node = try FakeK3sNode(liveVersion: v1)
        let service = try await startService(on: node)
        await #expect(throws: AgentFailure.self) { try await startService(on: node) }
        _ = service
    }
}

/// Polls `condition` every 50 ms for at most `seconds`.
func waitUntil(seconds: Double, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(50))
    }
    return try await condition()
}
