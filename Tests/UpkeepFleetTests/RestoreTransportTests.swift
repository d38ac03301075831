import Foundation
import NIOCore
import Testing
import UpkeepCore
import UpkeepFleet
import UpkeepPKI
import UpkeepProtocol
import UpkeepRollout
import UpkeepTestSupport
import UpkeepTLS

/// The restore methods as the controller sends them (design: docs/backups.md, "Restoring"),
/// against a server that speaks the protocol over mutual TLS and records what arrives: the
/// sealed backup is opened block by block into the upload (no plaintext file on the
/// controller), with the recorded digest; `restore` and `rejoin` name the backup and the cached
/// binary of the version by their digests, and on an air-gapped server its images tarball.
@Suite(.serialized) struct RestoreTransportTests {
    /// A server node's agent that keeps what it was sent.
    final class RecordingAgent: RequestHandler, @unchecked Sendable {
        private let lock = NSLock()
        private var received: [String: [UInt8]] = [:]
        private(set) var requests: [RequestPayload] = []
        private var airgapImagesDir: String?

        func agentInfo() -> AgentInfo {
            AgentInfo(agentVersion: "0.1.0-test", nodeName: "server-1", arch: "amd64", role: .server, k3sVersion: v2)
        }

        func upload(_ sha256: String) -> [UInt8]? { lock.withLock { received[sha256] } }
        /// From now on `status` says k3s imports its images from a directory (an air-gapped node).
        func becomeAirgapped() { lock.withLock { airgapImagesDir = "/var/lib/rancher/k3s/agent/images" } }
        var all: [RequestPayload] { lock.withLock { requests } }

        func handle(_ request: IncomingRequest) async throws -> Reply {
            lock.withLock { requests.append(request.payload) }
            switch request.payload {
            case .restoreBackup(let message):
                var bytes: [UInt8] = []
                guard let summary = try await request.upload.consume({ bytes += Array($0.readableBytesView) }) else {
                    throw ErrorResponse(.badRequest, "no upload")
                }
                guard summary.sha256 == message.sha256, summary.bytes == message.bytes else {
                    throw ErrorResponse(.digestMismatch, "got \(summary.bytes) bytes with \(summary.sha256)")
                }
                lock.withLock { received[message.sha256.rawValue] = bytes }
                return Reply(.restoreBackup(RestoreBackupResult(alreadyReceived: false)))
            case .status:
                return Reply(.status(StatusResult(agent: agentInfo(), unit: UnitStatus(name: "k3s", activeState: "active", subState: "running"),
                                                  binaryPath: "/usr/local/bin/k3s", binaryFreeBytes: 1 << 30, dataDir: "/var/lib/upkeep-agent",
                                                  dataFreeBytes: 1 << 30, staged: [], watchdog: nil, recentOperations: [],
                                                  airgapImagesDir: lock.withLock { airgapImagesDir })))
            case .stopK3s:
                return Reply(.stopK3s(StopK3sResult(wasActive: true)))
            case .restore(let message):
                guard upload(message.backupSHA256.rawValue) != nil else { throw ErrorResponse(.notFound, "no such backup received") }
                return Reply(.restore(RestoreResult(k3sVersion: message.k3sVersion, probe: Self.healthy)))
            case .rejoin(let message):
                return Reply(.rejoin(RestoreResult(k3sVersion: message.k3sVersion, probe: Self.unhealthy)))
            default:
                throw ErrorResponse(.notImplemented, "not served here: \(request.method)")
            }
        }

        static let healthy = ProbeResult(healthy: true, checks: [ProbeCheck(name: "unit", ok: true, latencyMs: 1, message: "active")])
        static let unhealthy = ProbeResult(healthy: false, checks: [ProbeCheck(name: "etcd", ok: false, latencyMs: 1, message: "no leader")])
    }

    @Test func theSealedBackupStreamsOpenedAndRestoreAndRejoinNameWhatWasSent() async throws {
        let directory = try TemporaryDirectory()
        let pki = try FleetPKI(in: directory.file("pki"))
        let context = try pki.agentContext("server-1")
        let agent = RecordingAgent()
        let server = try await ProtocolServer.bind(host: "127.0.0.1", port: 0, security: .tls(context, expecting: .roles([.controller])),
                                                   handler: agent)
        let fleet = AgentFleet(security: try pki.controllerSecurity(), endpoints: ["server-1": AgentEndpoint(host: "127.0.0.1", port: server.port)],
                               configuration: AgentFleet.Configuration(connectTimeoutSeconds: 5))

        // A release of v1 in a mirror, so `restore` and `rejoin` find the binary's digest.
        let mirror = try TemporaryDirectory()
        let release = "\(mirror.path)/k3s-io/k3s/releases/download/\(v1)"
        try FileManager.default.createDirectory(atPath: release, withIntermediateDirectories: true)
        let binary = Array("#!/bin/sh\necho k3s version \(v1)\n".utf8)
        try Data(binary).write(to: URL(fileURLWithPath: "\(release)/k3s"))
        let images = Array("images of \(v1)".utf8)
        try Data(images).write(to: URL(fileURLWithPath: "\(release)/k3s-airgap-images-amd64.tar.zst"))
        try "\(SHA256.hex(binary))  k3s\n\(SHA256.hex(images))  k3s-airgap-images-amd64.tar.zst\n"
            .write(toFile: "\(release)/sha256sum-amd64.txt", atomically: false, encoding: .utf8)

        // The controller's state directory: the vault with one sealed backup.
        let state = try TemporaryDirectory()
        let vault = BackupVault(directory: state.file("backups"), keyFile: state.file("backup.key"))
        let plaintext = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) }
        let writer = try vault.seal(name: "r1-h1")
        for start in stride(from: 0, to: plaintext.count, by: 65_536) {
            try writer.append(ByteBuffer(bytes: plaintext[start..<min(start + 65_536, plaintext.count)]))
        }
        try writer.finish()
        let digest = SHA256.hex(plaintext)
        let catalog = FixedCatalog(vault: vault, backups: [
            TakenBackup(id: "r1-h1", node: "server-1", format: .etcdSnapshot, agentFileName: "upkeep-r1-h1", path: writer.path,
                        bytes: Int64(plaintext.count), sha256: digest, takenAtUnixMilliseconds: 0),
        ])
        let cache = try ArtifactCache(stateDirectory: state.path, source: .directory(mirror.path), client: nil)
        let transport = ProtocolAgentTransport(fleet: fleet, artifacts: cache, backups: catalog)
        func send(_ id: String, _ command: AgentCommand, lines: Lines = Lines()) async throws -> AgentReply {
            try await transport.send(AgentRequest(operationID: id, node: "server-1", command: command), deadlineSeconds: 30, progress: lines.record)
        }
        let version = try K3sVersion(v1)
        let sealedFiles = try FileManager.default.contentsOfDirectory(atPath: state.file("backups")).sorted()

        let lines = Lines()
        let reply = try await send("r1:x1.0:restoreBackup:1", .restoreBackup(backupID: "r1-h1", version: version), lines: lines)
        #expect(reply == .backupReceived, "\(reply)")
        #expect(agent.upload(digest) == plaintext, "the agent did not receive the backup's plaintext")
        #expect(lines.all.contains { $0.contains("of backup r1-h1") }, "\(lines.all)")
        // Only the sealed file in the vault: nothing was opened to disk on the way.
        #expect(try FileManager.default.contentsOfDirectory(atPath: state.file("backups")).sorted() == sealedFiles)
        if case .restoreBackup(let message) = agent.all.last {
            #expect(message.sha256.rawValue == digest && message.bytes == Int64(plaintext.count) && message.format == .etcdSnapshot
                    && message.k3sVersion == v1)
        } else {
            Issue.record("no restoreBackup request arrived: \(agent.all)")
        }

        // A backup the controller does not hold is refused before anything is sent.
        let sent = agent.all.count
        let unknown = try await send("r1:x1.0:restoreBackup:2", .restoreBackup(backupID: "r9-h1", version: version))
        if case .refused(let code, _) = unknown { #expect(code == "notFound") } else { Issue.record("expected notFound, got \(unknown)") }
        #expect(agent.all.count == sent)

        // One flipped byte of ciphertext: the stream ends with an error, never as a whole backup.
        var sealed = Array(try Data(contentsOf: URL(fileURLWithPath: writer.path)))
        sealed[sealed.count / 2] ^= 0x01
        let damagedPath = state.file("backups/r2-h1.damaged")
        try Data(sealed).write(to: URL(fileURLWithPath: damagedPath))
        catalog.add(TakenBackup(id: "r2-h1", node: "server-1", format: .etcdSnapshot, agentFileName: "upkeep-r2-h1", path: damagedPath,
                                bytes: Int64(plaintext.count), sha256: digest, takenAtUnixMilliseconds: 0))
        let damaged: AgentReply?
        do { damaged = try await send("r2:x1.0:restoreBackup:1", .restoreBackup(backupID: "r2-h1", version: version)) } catch { damaged = nil }
        #expect(damaged != .backupReceived, "a damaged sealed backup was received whole")

        #expect(try await send("r1:x1.0:stopK3s:1", .stopK3s) == .stopped(wasActive: true))
        let restored = try await send("r1:x1.0:restore:1", .restore(backupID: "r1-h1", version: version, healthTimeoutSeconds: 60))
        #expect(restored == .restored(version: version, healthy: true, message: "healthy (unit: active)"), "\(restored)")
        let rejoined = try await send("r1:x1.1:rejoin:1", .rejoin(version: version, healthTimeoutSeconds: 60))
        #expect(rejoined == .rejoined(version: version, healthy: false, message: "unhealthy: etcd: no leader"), "\(rejoined)")
        let binaryDigest = SHA256.hex(binary)
        let restores = agent.all.compactMap { if case .restore(let message) = $0 { message } else { nil } }
        let rejoins = agent.all.compactMap { if case .rejoin(let message) = $0 { message } else { nil } }
        #expect(restores.map(\.backupSHA256.rawValue) == [digest] && restores.map(\.binarySHA256.rawValue) == [binaryDigest]
                && restores.map(\.healthTimeoutSeconds) == [60])
        #expect(rejoins.map(\.binarySHA256.rawValue) == [binaryDigest] && rejoins.map(\.k3sVersion) == [v1])
        #expect(restores.map(\.imagesSHA256) == [nil] && rejoins.map(\.imagesSHA256) == [nil], "not air-gapped: no images named")

        // On an air-gapped server both name the release's images tarball, as an install does.
        agent.becomeAirgapped()
        _ = try await send("r1:x1.0:restore:2", .restore(backupID: "r1-h1", version: version, healthTimeoutSeconds: 60))
        _ = try await send("r1:x1.1:rejoin:2", .rejoin(version: version, healthTimeoutSeconds: 60))
        let imagesDigest = SHA256.hex(images)
        let airgapped = agent.all.compactMap { payload -> String? in
            switch payload {
            case .restore(let message) where message.operationID.rawValue.hasSuffix(":2"): "restore \(message.imagesSHA256?.rawValue ?? "none")"
            case .rejoin(let message) where message.operationID.rawValue.hasSuffix(":2"): "rejoin \(message.imagesSHA256?.rawValue ?? "none")"
            default: nil
            }
        }
        #expect(airgapped == ["restore \(imagesDigest)", "rejoin \(imagesDigest)"])
        await fleet.close()
        await server.shutdown()
    }
}

/// Sealed backups the transport may send, held in memory (the CLI's catalog is the state database).
final class FixedCatalog: BackupCatalog, @unchecked Sendable {
    let vault: BackupVault
    let timeoutSeconds = 60
    private let lock = NSLock()
    private var backups: [String: TakenBackup]

    init(vault: BackupVault, backups: [TakenBackup]) {
        self.vault = vault
        self.backups = Dictionary(uniqueKeysWithValues: backups.map { ($0.id, $0) })
    }

    func add(_ backup: TakenBackup) { lock.withLock { backups[backup.id] = backup } }
    func recorded(id: String) throws -> TakenBackup? { lock.withLock { backups[id] } }
    func record(_ backup: TakenBackup, purpose: BackupPurpose) throws { add(backup) }
}
