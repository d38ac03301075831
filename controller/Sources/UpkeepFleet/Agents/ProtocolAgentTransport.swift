import Foundation
import NIOCore
import UpkeepHTTP
import UpkeepRollout
import UpkeepCore
import UpkeepProtocol

/// The runtime's `AgentTransport` over the wire protocol: each `AgentCommand` becomes the
/// protocol method with the same operation id, on the node's connection from `AgentFleet`;
/// artifacts for `stage` stream from the `ArtifactCache` with their SHA-256. A node whose agent
/// reports `airgapImagesDir` (k3s imports its images from a directory,
/// https://docs.k3s.io/installation/airgap) also gets the release's images tarball with each
/// stage (under the id `<stage id>:images`), and each install, restore and rejoin names it.
///
/// An Error answer is a reply (`.refused(code:message:)`); only a missing answer throws
/// `AgentTransportError`. A lost connection or a `busy` agent is retried with backoff within
/// the deadline: safe, as the agent answers a repeated operation id from its journal (or joins
/// the run still in progress).
public struct ProtocolAgentTransport: AgentTransport {
    public let fleet: AgentFleet
    public let artifacts: ArtifactCache
    /// Where `backup` seals and records, and `restoreBackup` finds what it streams; without
    /// one, both are refused.
    public let backups: (any BackupCatalog)?

    public init(fleet: AgentFleet, artifacts: ArtifactCache, backups: (any BackupCatalog)? = nil) {
        self.fleet = fleet
        self.artifacts = artifacts
        self.backups = backups
    }

    public func send(_ request: AgentRequest, deadlineSeconds: Int,
                     progress: @escaping @Sendable (String) -> Void) async throws -> AgentReply {
        let deadline = ContinuousClock.now + .seconds(max(1, deadlineSeconds))
        guard let id = OperationID(rawValue: request.operationID) else {
            return .refused(code: ErrorCode.badRequest.rawValue, message: "\"\(request.operationID)\" is not \(OperationID.format)")
        }
        let call = NodeCall(node: request.node, fleet: fleet, backoff: fleet.configuration.backoff, deadline: deadline, progress: progress)
        switch request.command {
        case .cordon:
            return try await call.run(CordonRequest(operationID: id)) { .cordoned(wasUnschedulable: $0.wasUnschedulable) }
        case .drain(let timeoutSeconds, let options):
            let drain = options ?? .beforeDrainOptions
            let message = DrainRequest(operationID: id, timeoutSeconds: timeoutSeconds, gracePeriodSeconds: drain.gracePeriodSeconds,
                                       deleteEmptyDirData: drain.deleteEmptyDirData, podSelector: drain.podSelector,
                                       skipWaitForDeleteTimeoutSeconds: drain.skipWaitForDeleteTimeoutSeconds,
                                       disableEviction: drain.disableEviction)
            return try await call.run(message) { _ in .drained }
        case .stage(let version, let arch):
            let artifact: Artifact
            switch try await cachedArtifact(node: request.node, version: version, arch: arch, asset: .binary) {
            case .success(let found): artifact = found
            case .failure(let refusal): return refusal.reply
            }
            let message = StageRequest(operationID: id, k3sVersion: version.description, sha256: Self.digest(artifact), bytes: artifact.bytes)
            let staged = try await call.run(message, upload: Self.fileSource(artifact, progress: progress)) { _ in .staged }
            guard staged == .staged, try await airgapped(call) else { return staged }
            return try await stageImages(request, version: version, arch: arch, call: call, progress: progress)
        case .install(let version, let healthTimeoutSeconds, let watchdogTimeoutSeconds):
            let digest: SHA256Hex
            switch try await installDigest(node: request.node, version: version, call: call) {
            case .success(let found): digest = found
            case .failure(let refusal): return refusal.reply
            }
            let images: SHA256Hex?
            switch try await airgapImagesDigest(node: request.node, version: version, call: call) {
            case .success(let found): images = found
            case .failure(let refusal): return refusal.reply
            }
            let message = InstallRequest(operationID: id, sha256: digest, k3sVersion: version.description,
                                         healthTimeoutSeconds: healthTimeoutSeconds, watchdogTimeoutSeconds: watchdogTimeoutSeconds,
                                         imagesSHA256: images)
            let result: InstallResult
            do { result = try await call.result(message) } catch let refusal as ErrorResponse {
                return .refused(code: refusal.code.rawValue, message: refusal.message)
            }
            let running = result.k3sVersion.flatMap { try? K3sVersion($0) }
            switch result.outcome {
            case .installed:
                return .installed(version: running)
            case .reverted:
                // The answer's probe is the new binary's failing one; the restored binary's health
                // is its `revertProbe` (or, from an older agent, a probe asked now).
                let restored = try await restoredHealth(call: call, result: result)
                return .installReverted(version: running, healthy: restored.healthy,
                                        message: "\(version) \(Self.summary(result.probe)); restored \(result.k3sVersion ?? "the previous binary"), \(restored.text)")
            }
        case .rollback(let healthTimeoutSeconds):
            return try await call.run(RollbackRequest(operationID: id, healthTimeoutSeconds: healthTimeoutSeconds)) { result in
                .rolledBack(version: result.k3sVersion.flatMap { try? K3sVersion($0) }, healthy: result.probe.healthy, message: Self.summary(result.probe))
            }
        case .uncordon:
            return try await call.run(UncordonRequest(operationID: id)) { .uncordoned($0.uncordoned) }
        case .backup(let backupID, let hop, let version):
            return await takeBackup(request, backupID: backupID, purpose: BackupPurpose(rolloutID: request.operationID.split(separator: ":").first.map(String.init),
                                                                                        hop: hop, k3sVersion: version))
        case .restoreBackup(let backupID, let version):
            let found: RecordedBackup
            switch recordedBackup(backupID) {
            case .success(let recorded): found = recorded
            case .failure(let refusal): return refusal.reply
            }
            let message = RestoreBackupRequest(operationID: id, sha256: found.sha256, bytes: found.backup.bytes, format: found.backup.format,
                                               k3sVersion: version.description)
            return try await call.run(message, upload: Self.sealedSource(found, progress: progress)) { _ in .backupReceived }
        case .stopK3s:
            return try await call.run(StopK3sRequest(operationID: id)) { .stopped(wasActive: $0.wasActive) }
        case .restore(let backupID, let version, let healthTimeoutSeconds):
            let backupDigest: SHA256Hex
            switch recordedBackup(backupID) {
            case .success(let recorded): backupDigest = recorded.sha256
            case .failure(let refusal): return refusal.reply
            }
            let binary: SHA256Hex
            switch try await installDigest(node: request.node, version: version, call: call) {
            case .success(let found): binary = found
            case .failure(let refusal): return refusal.reply
            }
            let images: SHA256Hex?
            switch try await airgapImagesDigest(node: request.node, version: version, call: call) {
            case .success(let found): images = found
            case .failure(let refusal): return refusal.reply
            }
            let message = RestoreRequest(operationID: id, backupSHA256: backupDigest, binarySHA256: binary, k3sVersion: version.description,
                                         healthTimeoutSeconds: healthTimeoutSeconds, imagesSHA256: images)
            return try await call.run(message) { result in
                .restored(version: try? K3sVersion(result.k3sVersion), healthy: result.probe.healthy, message: Self.summary(result.probe))
            }
        case .rejoin(let version, let healthTimeoutSeconds):
            let binary: SHA256Hex
            switch try await installDigest(node: request.node, version: version, call: call) {
            case .success(let found): binary = found
            case .failure(let refusal): return refusal.reply
            }
            let images: SHA256Hex?
            switch try await airgapImagesDigest(node: request.node, version: version, call: call) {
            case .success(let found): images = found
            case .failure(let refusal): return refusal.reply
            }
            let message = RejoinRequest(operationID: id, binarySHA256: binary, k3sVersion: version.description, healthTimeoutSeconds: healthTimeoutSeconds,
                                        imagesSHA256: images)
            return try await call.run(message) { result in
                .rejoined(version: try? K3sVersion(result.k3sVersion), healthy: result.probe.healthy, message: Self.summary(result.probe))
            }
        case .commit(let installOperationID):
            guard let install = OperationID(rawValue: installOperationID) else {
                return .refused(code: ErrorCode.badRequest.rawValue, message: "\"\(installOperationID)\" is not \(OperationID.format)")
            }
            do {
                let result = try await call.result(CommitRequest(operationID: id, installOperationID: install))
                return .committed(version: result.k3sVersion.flatMap { try? K3sVersion($0) })
            } catch let refusal as ErrorResponse where refusal.code == .conflict {
                return try await endedWatch(call: call, install: install) ?? .refused(code: refusal.code.rawValue, message: refusal.message)
            } catch let refusal as ErrorResponse {
                return .refused(code: refusal.code.rawValue, message: refusal.message)
            }
        }
    }

    /// Takes a backup from the node's agent, sealing the stream into the vault as it arrives,
    /// and records it: answered `backedUp` at once when `backupID` is recorded already (a
    /// repeated request after a crash). A backup that cannot be taken is a refusal.
    private func takeBackup(_ request: AgentRequest, backupID: String, purpose: BackupPurpose) async -> AgentReply {
        guard let backups else {
            return .refused(code: ErrorCode.internal.rawValue, message: "no backup vault is configured for this run")
        }
        do {
            if try backups.recorded(id: backupID) != nil { return .backedUp(backupID: backupID) }
        } catch {
            return .refused(code: ErrorCode.internal.rawValue, message: "cannot read the backup records: \(error)")
        }
        let taker = BackupTaker(fleet: fleet, vault: backups.vault, timeoutSeconds: backups.timeoutSeconds)
        let taken: TakenBackup
        do {
            taken = try await taker.take(id: backupID, from: request.node, operationID: request.operationID, now: { Int64((Date().timeIntervalSince1970 * 1000).rounded()) })
        } catch {
            return .refused(code: "backupFailed", message: error.description)
        }
        do {
            try backups.record(taken, purpose: purpose)
        } catch {
            unlink(taken.path)
            return .refused(code: ErrorCode.internal.rawValue, message: "the backup was sealed but could not be recorded: \(error)")
        }
        return .backedUp(backupID: backupID)
    }

    /// A sealed backup as a restore sends it: the record, its plaintext digest and the vault
    /// that opens it.
    struct RecordedBackup: Sendable {
        var backup: TakenBackup
        var sha256: SHA256Hex
        var vault: BackupVault
    }

    /// The sealed backup recorded as `backupID`, or the refusal a restore of it gets.
    private func recordedBackup(_ backupID: String) -> Result<RecordedBackup, Refusal> {
        guard let backups else {
            return .failure(Refusal(code: ErrorCode.internal.rawValue, message: "no backup vault is configured for this run"))
        }
        let backup: TakenBackup
        do {
            guard let found = try backups.recorded(id: backupID) else {
                return .failure(Refusal(code: ErrorCode.notFound.rawValue, message: "backup \(backupID) is not recorded on this controller (`upkeep backup list`)"))
            }
            backup = found
        } catch {
            return .failure(Refusal(code: ErrorCode.internal.rawValue, message: "cannot read backup \(backupID): \(error)"))
        }
        guard let digest = SHA256Hex(rawValue: backup.sha256) else {
            return .failure(Refusal(code: ErrorCode.internal.rawValue, message: "backup \(backupID) is recorded with a malformed SHA-256 \(backup.sha256)"))
        }
        return .success(RecordedBackup(backup: backup, sha256: digest, vault: backups.vault))
    }

    /// The digest of the cached binary (or `asset`) of `version` for the node's architecture (as
    /// its agent reports it in Hello).
    private func installDigest(node: String, version: K3sVersion, call: NodeCall,
                               asset: ArtifactCache.Asset = .binary) async throws -> Result<SHA256Hex, Refusal> {
        let hello = try await call.hello()
        guard let arch = try? Arch(hello.arch) else {
            return .failure(Refusal(code: ErrorCode.notFound.rawValue, message: "the agent of \(node) reports architecture \(hello.arch), which k3s does not publish"))
        }
        return try await cachedArtifact(node: node, version: version, arch: arch, asset: asset).map(Self.digest)
    }

    /// On an air-gapped node, the digest of `version`'s images tarball, which an install, restore
    /// or rejoin names (the stage before it staged the tarball); nil on other nodes.
    private func airgapImagesDigest(node: String, version: K3sVersion, call: NodeCall) async throws -> Result<SHA256Hex?, Refusal> {
        guard try await airgapped(call) else { return .success(nil) }
        return try await installDigest(node: node, version: version, call: call, asset: .airgapImages).map { $0 }
    }

    /// The verified artifact from the cache, fetched when it is not there; a refusal when the
    /// release cannot provide it.
    private func cachedArtifact(node: String, version: K3sVersion, arch: Arch, asset: ArtifactCache.Asset) async throws -> Result<Artifact, Refusal> {
        // Through `artifact`, not `cached`: a stored blob is hashed again right before it is
        // streamed, so one damaged or tampered with in the cache never reaches the node.
        do {
            return .success(try await artifacts.artifact(version: version, arch: arch, asset: asset))
        } catch let error as ArtifactError where !error.isTransient {
            return .failure(Refusal(error))
        } catch {
            let what = asset == .binary ? "artifact" : "air-gap images tarball"
            throw AgentTransportError(node: node, reason: "the \(what) for \(version) \(arch.rawValue) is not available yet: \(error)")
        }
    }

    private static func digest(_ artifact: Artifact) -> SHA256Hex {
        guard let digest = SHA256Hex(rawValue: artifact.sha256) else { preconditionFailure("the cache stores lowercase hex digests") }
        return digest
    }

    /// Whether k3s on the node imports its images from a directory, as its agent reports it.
    private func airgapped(_ call: NodeCall) async throws -> Bool {
        do { return try await call.result(StatusRequest()).airgapImagesDir != nil } catch let refusal as ErrorResponse {
            throw AgentTransportError(node: call.node, reason: "its agent did not answer status: \(refusal)")
        }
    }

    /// Stages the release's images tarball of `version` on an air-gapped node, after its binary.
    private func stageImages(_ request: AgentRequest, version: K3sVersion, arch: Arch, call: NodeCall,
                             progress: @escaping @Sendable (String) -> Void) async throws -> AgentReply {
        guard let id = OperationID(rawValue: request.operationID + ":images") else {
            return .refused(code: ErrorCode.badRequest.rawValue, message: "\"\(request.operationID):images\" is not \(OperationID.format)")
        }
        let images: Artifact
        switch try await cachedArtifact(node: request.node, version: version, arch: arch, asset: .airgapImages) {
        case .success(let found): images = found
        case .failure(let refusal):
            return .refused(code: refusal.code, message: "\(request.node) is air-gapped (k3s imports its images from a directory) and needs "
                            + "the release's images tarball: \(refusal.message)")
        }
        let message = StageRequest(operationID: id, k3sVersion: version.description, sha256: Self.digest(images), bytes: images.bytes,
                                   artifact: .airgapImages, fileName: images.assetName)
        return try await call.run(message, upload: Self.fileSource(images, progress: progress)) { _ in .staged }
    }

    /// A request that cannot succeed before it reaches the agent, answered as the agent would
    /// (with a protocol error code), so the engine treats it as the failure it is.
    struct Refusal: Error {
        var code: String
        var message: String
        var reply: AgentReply { .refused(code: code, message: message) }

        init(code: String, message: String) {
            self.code = code
            self.message = message
        }

        init(_ error: ArtifactError) {
            let code: ErrorCode = switch error {
            case .checksumMismatch, .publishedDigestMismatch, .mirrorIndexRefused, .notInMirrorIndex: .digestMismatch
            case .notFound, .checksumNotListed, .notPublished: .notFound
            case .unavailable, .tooLarge, .storage: .internal
            }
            self.init(code: code.rawValue, message: error.description)
        }
    }

    /// A commit the agent refused as a conflict because the watch is over without it (its
    /// watchdog reverted the install, or a rollback did): the version that stays is the one
    /// running now, which is what `committed` reports. Nil while the watch still runs (the
    /// watchdog is reverting right now), so the refusal stands and the commit is asked again.
    private func endedWatch(call: NodeCall, install: OperationID) async throws -> AgentReply? {
        let status: StatusResult
        do { status = try await call.result(StatusRequest()) } catch is ErrorResponse { return nil }
        guard status.watchdog?.installOperationID != install, let running = status.agent.k3sVersion,
              let version = try? K3sVersion(running) else { return nil }
        return .committed(version: version)
    }

    /// The health of the binary the agent restored after a failed install: the agent's own probe
    /// of it (`revertProbe`), or, from an agent that does not send one, a probe asked now.
    private func restoredHealth(call: NodeCall, result: InstallResult) async throws -> (healthy: Bool, text: String) {
        if let probe = result.revertProbe { return (probe.healthy, probe.healthy ? "healthy" : Self.summary(probe)) }
        do {
            let probe = try await call.result(ProbeRequest(expectedK3sVersion: result.k3sVersion))
            return (probe.healthy, probe.healthy ? "healthy" : Self.summary(probe))
        } catch let refusal as ErrorResponse {
            return (false, "whose probe was refused: \(refusal)")
        }
    }

    /// The failing checks, or all of them when none failed, on one line.
    static func summary(_ probe: ProbeResult) -> String {
        let failing = probe.checks.filter { !$0.ok }
        let shown = failing.isEmpty ? probe.checks : failing
        let text = shown.map { "\($0.name): \($0.message)" }.joined(separator: "; ")
            .split(whereSeparator: \.isNewline).joined(separator: " ")
        return probe.healthy ? "healthy (\(text))" : "unhealthy: \(text)"
    }

    /// The sealed backup opened block by block into the upload, never into a file: the
    /// plaintext exists only in memory and on the receiving node. ChunkEnd announces the
    /// recorded SHA-256 and the agent hashes what arrives; a sealed file that fails its tag
    /// (damaged, another key) ends the stream with an error instead of its end.
    static func sealedSource(_ recorded: RecordedBackup, progress: @escaping @Sendable (String) -> Void) -> ChunkSource {
        let backup = recorded.backup
        return ChunkSource(sha256: recorded.sha256) { emit in
            var sent = UploadProgress(total: backup.bytes, what: "backup \(backup.id)", report: progress)
            let opened = try await recorded.vault.stream(backup.path) { clear in
                try await emit(ByteBuffer(bytes: clear))
                sent.add(clear.count)
            }
            guard opened.bytes == backup.bytes, opened.sha256 == backup.sha256 else {
                throw BackupError("the sealed file of backup \(backup.id) opens to \(opened.bytes) bytes with SHA-256 \(opened.sha256), "
                                  + "not the recorded \(backup.bytes) bytes and \(backup.sha256)")
            }
        }
    }

    /// The artifact's file as an upload, read in 256 KiB pieces each time the stream starts,
    /// with a progress line at every quarter.
    static func fileSource(_ artifact: Artifact, progress: @escaping @Sendable (String) -> Void) -> ChunkSource {
        fileSource(path: artifact.path, unopened: ArtifactError.storage(path: artifact.path, reason: "the cached artifact cannot be opened"),
                   progress: UploadProgress(total: artifact.bytes, what: "\(artifact.assetName) \(artifact.version)", report: progress))
    }

    /// The file at `path` as an upload, read in 256 KiB pieces each time the stream starts
    /// (`unopened` thrown when it cannot be opened), each piece counted by `progress`.
    package static func fileSource(path: String, unopened: any Error & Sendable, progress: UploadProgress? = nil) -> ChunkSource {
        ChunkSource { emit in
            guard let handle = FileHandle(forReadingAtPath: path) else { throw unopened }
            defer { try? handle.close() }
            var sent = progress
            while let data = try handle.read(upToCount: 256 << 10), !data.isEmpty {
                try await emit(ByteBuffer(bytes: data))
                sent?.add(data.count)
            }
        }
    }
}

/// An upload's progress line, "sent N of TOTAL bytes of WHAT", at every quarter.
package struct UploadProgress {
    let total: Int64
    let what: String
    let report: @Sendable (String) -> Void
    private var sent: Int64 = 0
    private var quarter = 0

    init(total: Int64, what: String, report: @escaping @Sendable (String) -> Void) {
        self.total = total
        self.what = what
        self.report = report
    }

    mutating func add(_ count: Int) {
        sent += Int64(count)
        let reached = total > 0 ? Int(sent * 4 / total) : 4
        guard reached > quarter else { return }
        quarter = reached
        report("sent \(sent) of \(total) bytes of \(what)")
    }
}

/// One request to one node, resent within its deadline while no answer came.
struct NodeCall: Sendable {
    let node: String
    let fleet: AgentFleet
    let backoff: Backoff
    let deadline: ContinuousClock.Instant
    let progress: @Sendable (String) -> Void

    /// What the node's agent said in Hello (connecting first if needed).
    func hello() async throws -> AgentInfo {
        try await attempt { client in try await client.connection().hello.agent }
    }

    /// Sends `message`; an Error answer becomes `.refused`, a result goes through `reply`.
    func run<M: RequestMessage>(_ message: M, upload: ChunkSource? = nil,
                                reply: @Sendable (M.Result) -> AgentReply) async throws -> AgentReply {
        do {
            return reply(try await result(message, upload: upload))
        } catch let refusal as ErrorResponse {
            return .refused(code: refusal.code.rawValue, message: refusal.message)
        }
    }

    /// Sends `message` and returns its result; an Error answer is thrown as `ErrorResponse`.
    func result<M: RequestMessage>(_ message: M, upload: ChunkSource? = nil) async throws -> M.Result {
        let progress = progress
        let deadline = deadline
        return try await attempt { client in
            let connection = try await client.connection()
            return try await connection.withCall(message, upload: upload, deadline: deadline) { call in
                let forwarder = Task { for await event in call.progress { progress(Self.line(event)) } }
                do {
                    let result = try await call.response()
                    await forwarder.value
                    return result
                } catch {
                    forwarder.cancel()
                    throw error
                }
            }
        }
    }

    /// Runs `body` until it returns, the agent answers an error (thrown as `ErrorResponse`), or
    /// no answer can come (thrown as `AgentTransportError`, also for `timeout`, whose outcome is
    /// unknown). Lost connections and `busy`, `shuttingDown` or `cancelled` answers are retried
    /// with backoff, within the deadline and `backoff.attemptsMax`.
    private func attempt<T: Sendable>(_ body: (ReconnectingClient) async throws -> T) async throws -> T {
        var random = SystemRandomNumberGenerator()
        var tries = 1
        while true {
            let failure: ProtocolError
            do {
                // Asked each time: the address book may have changed since the last try.
                return try await body(try await fleet.client(for: node))
            } catch let error as ProtocolError {
                failure = error
            }
            switch failure {
            case .remote(let response) where response.code == .busy || response.code == .shuttingDown:
                break
            case .remote(let response) where response.code == .cancelled:
                // Not our Cancel (a deadline of ours throws locally): the agent stopped the work
                // as it shut down. Its journal resolves the operation; the same id asks for that.
                break
            case .remote(let response) where response.code == .timeout:
                throw AgentTransportError(node: node, reason: "the agent stopped the request at its deadline: \(response.message)")
            case .remote(let response):
                throw response
            case .connectFailed, .connectionClosed, .notProcessed:
                break
            case .tls, .deadlineExceeded, .digestMismatch, .protocolViolation, .uploadFailed:
                throw AgentTransportError(node: node, reason: failure.description)
            }
            let delay = backoff.delay(afterAttempt: tries, using: &random)
            guard tries < backoff.attemptsMax, ContinuousClock.now + delay < deadline else {
                let endpoint = await fleet.endpoint(of: node)
                ProtocolClient.limits.record(.attempts, "gave up a request to the agent of \(node) after \(tries) attempts "
                                             + "(attemptsMax \(backoff.attemptsMax), or its deadline): \(failure)")
                throw AgentTransportError(node: node, reason: "\(AgentTransportError.reason(failure, endpoint: endpoint)) (after \(tries) attempts)")
            }
            try await Task.sleep(for: delay)
            tries += 1
        }
    }

    static func line(_ event: ProgressEvent) -> String {
        switch event {
        case .step(let step): "\(step.step): \(step.message)"
        case .pod(let pod): "pod \(pod.namespace)/\(pod.name) \(pod.action.rawValue)\(pod.message.isEmpty ? "" : ": \(pod.message)")"
        case .bytes(let bytes): "\(bytes.doneBytes)\(bytes.totalBytes.map { " of \($0)" } ?? "") bytes"
        }
    }
}
