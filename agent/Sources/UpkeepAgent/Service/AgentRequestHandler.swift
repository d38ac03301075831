import Logging
import NIOCore
import NIOConcurrencyHelpers
import UpkeepAgentCore
import UpkeepCore
import UpkeepKube
import UpkeepPKI
import UpkeepProtocol

#if canImport(Glibc)
import Glibc
#endif

/// Serves the wire protocol from an `AgentService`: decodes each request into the service's
/// operations and maps outcomes back to results or typed errors. Only controller certificates
/// are served (the TLS layer already demands one; this checks again per request).
public final class AgentRequestHandler: RequestHandler {
    public let service: AgentService
    /// The TLS identity and its renewal; nil where the agent serves without TLS (tests).
    public let identity: AgentIdentity?
    private let info: NIOLockedValueBox<AgentInfo>

    public init(service: AgentService, identity: AgentIdentity? = nil, k3sVersion: String?) {
        self.service = service
        self.identity = identity
        let environment = service.environment
        info = NIOLockedValueBox(AgentInfo(agentVersion: AgentVersion.current, nodeName: environment.config.nodeName, arch: MachineArch.current(),
                                           role: environment.isServer ? .server : .agent, k3sVersion: k3sVersion))
    }

    public func agentInfo() -> AgentInfo { info.withLockedValue { $0 } }

    public func handle(_ request: IncomingRequest) async throws -> Reply {
        if let peer = request.peer, peer.role != .controller {
            throw ErrorResponse(.unauthorized, "\(peer) is not a controller; only controllers may call the agent")
        }
        do {
            return try await dispatch(request)
        } catch let rejection as UpgradeMachine.Rejection {
            let code: ErrorCode = switch rejection.code {
            case .busy: .busy
            case .conflict: .conflict
            case .notFound: .notFound
            }
            throw ErrorResponse(code, rejection.message)
        } catch let failure as AgentFailure {
            throw ErrorResponse(Self.code(failure.code), failure.message)
        }
    }

    private func dispatch(_ request: IncomingRequest) async throws -> Reply {
        switch request.payload {
        case .status:
            return Reply(.status(try await statusResult()))
        case .probe(let probe):
            return Reply(.probe(Self.probeResult(await service.probe(expectedK3sVersion: probe.expectedK3sVersion))))
        case .stage(let stage):
            if stage.kind == .airgapImages, let name = stage.fileName, ArtifactKind.airgapImagesArch(name) != Substring(MachineArch.current()) {
                throw ErrorResponse(.conflict, "\(name) is not for this node's architecture (\(MachineArch.current())); stage k3s-airgap-images-\(MachineArch.current())")
            }
            let upload = UploadReader(request.upload)
            let outcome = try await service.stage(operationID: stage.operationID.rawValue, sha256: stage.sha256.rawValue, bytes: stage.bytes,
                                                  k3sVersion: stage.k3sVersion, imagesFileName: stage.kind == .airgapImages ? stage.fileName : nil,
                                                  next: { try await upload.next() })
            await upload.drain()
            StreamAllocator.returnFreeMemory()
            guard case .stage(let report) = try Self.succeeded(outcome) else { throw Self.unexpected(outcome) }
            return Reply(.stage(StageResult(sha256: stage.sha256, bytes: report.bytes, alreadyStaged: report.alreadyStaged)))
        case .install(let install):
            let outcome = try await service.install(operationID: install.operationID.rawValue, sha256: install.sha256.rawValue,
                                                    healthTimeoutMs: Int64(install.healthTimeoutSeconds) * 1000,
                                                    watchdogTimeoutMs: Int64(install.watchdogTimeoutSeconds) * 1000,
                                                    imagesSHA256: install.imagesSHA256?.rawValue)
            // A revert is an answer, not an error: the body says what happened and why.
            guard case .install(let report) = outcome.body, outcome.state != .failed else { throw Self.error(outcome) }
            refreshVersion(report.k3sVersion)
            return Reply(.install(InstallResult(outcome: report.outcome == .installed ? .installed : .reverted,
                                                previousK3sVersion: report.previousK3sVersion, k3sVersion: report.k3sVersion,
                                                probe: Self.probeResult(report.probe), revertProbe: report.revertProbe.map(Self.probeResult),
                                                watchdogDeadlineUnixMs: report.watchdogDeadline?.milliseconds)))
        case .rollback(let rollback):
            let outcome = try await service.rollback(operationID: rollback.operationID.rawValue, toSHA256: rollback.toSHA256?.rawValue,
                                                     healthTimeoutMs: Int64(rollback.healthTimeoutSeconds) * 1000)
            guard case .rollback(let report) = try Self.succeeded(outcome) else { throw Self.unexpected(outcome) }
            refreshVersion(report.k3sVersion)
            return Reply(.rollback(RollbackResult(k3sVersion: report.k3sVersion, probe: Self.probeResult(report.probe))))
        case .commit(let commit):
            let outcome = try await service.commit(operationID: commit.operationID.rawValue, installOperationID: commit.installOperationID.rawValue)
            guard case .commit(let report) = try Self.succeeded(outcome) else { throw Self.unexpected(outcome) }
            return Reply(.commit(CommitResult(k3sVersion: report.k3sVersion)))
        case .cordon(let cordon):
            let outcome = try await service.cordon(operationID: cordon.operationID.rawValue)
            guard case .cordon(let report) = try Self.succeeded(outcome) else { throw Self.unexpected(outcome) }
            return Reply(.cordon(CordonResult(wasUnschedulable: report.wasUnschedulable)))
        case .drain(let drain):
            let selector: LabelSelector?
            do {
                selector = try drain.podSelector.map { try LabelSelector.parse($0) }
            } catch {
                throw ErrorResponse(.badRequest, "drain.podSelector: \(error)")
            }
            let options = DrainOptions(timeoutSeconds: drain.timeoutSeconds, gracePeriodSeconds: drain.gracePeriodSeconds,
                                       deleteEmptyDirData: drain.deleteEmptyDirData, podSelector: selector,
                                       skipWaitForDeleteTimeoutSeconds: drain.skipWaitForDeleteTimeoutSeconds,
                                       disableEviction: drain.disableEviction ?? false)
            let outcome = try await service.drain(operationID: drain.operationID.rawValue, options: options) { event in
                await request.progress(.pod(event))
            }
            guard case .drain(let report) = try Self.succeeded(outcome) else { throw Self.unexpected(outcome) }
            return Reply(.drain(DrainResult(evictedPods: report.evictedPods, skippedPods: report.skippedPods)))
        case .uncordon(let uncordon):
            let outcome = try await service.uncordon(operationID: uncordon.operationID.rawValue)
            guard case .uncordon(let report) = try Self.succeeded(outcome) else { throw Self.unexpected(outcome) }
            return Reply(.uncordon(UncordonResult(uncordoned: report.uncordoned, message: outcome.message)))
        case .backup(let backup):
            let outcome = try await service.backup(operationID: backup.operationID.rawValue, name: backup.name)
            guard case .backup(let report) = try Self.succeeded(outcome) else { throw Self.unexpected(outcome) }
            let path = await service.datastoreBackup.path(of: report)
            guard FileSystem.exists(path) else {
                throw ErrorResponse(.notFound, "backup \(report.fileName) is no longer on this node (it was downloaded, replaced by a newer "
                                    + "backup, or kept past its retention); take a new one")
            }
            let format: BackupFormat = report.format == .etcdSnapshot ? .etcdSnapshot : .sqliteTar
            let logger = service.environment.logger
            // The controller seals the stream as it arrives: once it was sent to its end, the
            // plaintext (the datastore, for SQLite the token too) has no reason to stay here.
            return Reply(.backup(BackupResult(format: format, fileName: report.fileName, bytes: report.bytes)),
                         download: Self.fileSource(path) {
                             do {
                                 try FileSystem.removeIfPresent(path)
                                 logger.notice("backup \(report.fileName) was downloaded; removed it from \(PathName.directory(path))")
                             } catch {
                                 logger.error("backup \(report.fileName) was downloaded but could not be removed (the retention sweep retries): \(error)")
                             }
                         })
        case .etcdHealth(let asked):
            let environment = service.environment
            let reader = EtcdHealthReader(config: environment.config.etcd, k3sDataDir: environment.config.k3sDataDir, group: environment.probes.group)
            guard environment.isServer else {
                throw ErrorResponse(.notFound, "\(environment.config.nodeName) is an agent node: it runs no etcd; ask a server's agent")
            }
            guard reader.embedded() else {
                throw ErrorResponse(.notFound, "\(environment.config.nodeName) runs no embedded etcd (no \(environment.config.k3sDataDir)/server/db/etcd): "
                                    + "its datastore is SQLite or external")
            }
            let read = try await reader.read(timeoutSeconds: asked.timeoutSeconds)
            return Reply(.etcdHealth(EtcdHealthResult(members: read.members.map {
                EtcdMemberStatus(id: $0.id, name: $0.name, clientURLs: $0.clientURLs, healthy: $0.healthy, message: $0.message)
            }, quorum: read.quorum)))
        case .clusterDNS(let asked):
            let config = service.environment.config
            let probe = ClusterDNSProbe(host: config.clusterDNSHost, port: config.clusterDNSPort, group: service.environment.probes.group,
                                        limits: service.environment.limits)
            let outcome = await probe.resolve(asked.name, id: UInt16.random(in: 0...UInt16.max), timeoutSeconds: asked.timeoutSeconds)
            return Reply(.clusterDNS(ClusterDNSResult(server: "\(probe.host):\(probe.port)", answered: outcome.answer != nil,
                                                      code: outcome.answer.map { $0.code?.text ?? "RCODE \($0.rawCode)" } ?? "",
                                                      addresses: outcome.answer?.addresses ?? [], message: outcome.problem, elapsedMs: outcome.elapsedMs)))
        case .reachPeers(let asked):
            let limits = service.environment.limits
            let reach = PeerReach(group: service.environment.probes.group) { untried, total in
                limits.record(.reachPeersDeadline, "reachPeers: the request's deadline came before \(untried) of \(total) peers were tried; "
                              + "they are answered untried (the controller's deadline is too short for this many peers)")
            }
            return Reply(.reachPeers(ReachPeersResult(peers: await reach.reach(asked.peers, timeoutSeconds: asked.timeoutSeconds,
                                                                               deadline: request.deadline))))
        case .certificateRequest(let asked):
            return Reply(.certificateRequest(try renewingIdentity().certificateRequest(keyType: asked.keyType)))
        case .installCertificate(let install):
            return Reply(.installCertificate(try renewingIdentity().installCertificate(pem: install.certificate)))
        case .operation(let asked):
            return Reply(.operation(Self.operationResult(asked.operationID.rawValue, in: await service.journal)))
        case .restoreBackup(let received):
            let upload = UploadReader(request.upload)
            let format: BackupReport.Format = received.format == .etcdSnapshot ? .etcdSnapshot : .sqliteTar
            let outcome = try await service.restoreBackup(operationID: received.operationID.rawValue, sha256: received.sha256.rawValue,
                                                          bytes: received.bytes, format: format, k3sVersion: received.k3sVersion,
                                                          next: { try await upload.next() })
            await upload.drain()
            StreamAllocator.returnFreeMemory()
            guard case .restoreBackup(let report) = try Self.succeeded(outcome) else { throw Self.unexpected(outcome) }
            return Reply(.restoreBackup(RestoreBackupResult(alreadyReceived: report.alreadyReceived)))
        case .stopK3s(let stop):
            let outcome = try await service.stopK3s(operationID: stop.operationID.rawValue)
            guard case .stopK3s(let report) = try Self.succeeded(outcome) else { throw Self.unexpected(outcome) }
            return Reply(.stopK3s(StopK3sResult(wasActive: report.wasActive)))
        case .restore(let restore):
            let outcome = try await service.restore(operationID: restore.operationID.rawValue, backupSHA256: restore.backupSHA256.rawValue,
                                                    binarySHA256: restore.binarySHA256.rawValue, k3sVersion: restore.k3sVersion,
                                                    healthTimeoutMs: Int64(restore.healthTimeoutSeconds) * 1000,
                                                    imagesSHA256: restore.imagesSHA256?.rawValue)
            return Reply(.restore(try restoreResult(outcome)))
        case .rejoin(let rejoin):
            let outcome = try await service.rejoin(operationID: rejoin.operationID.rawValue, binarySHA256: rejoin.binarySHA256.rawValue,
                                                   k3sVersion: rejoin.k3sVersion, healthTimeoutMs: Int64(rejoin.healthTimeoutSeconds) * 1000,
                                                   imagesSHA256: rejoin.imagesSHA256?.rawValue)
            return Reply(.rejoin(try restoreResult(outcome)))
        }
    }

    private func restoreResult(_ outcome: OperationOutcome) throws -> RestoreResult {
        guard case .restore(let report) = try Self.succeeded(outcome), let version = report.k3sVersion else { throw Self.unexpected(outcome) }
        refreshVersion(version)
        return RestoreResult(k3sVersion: version, probe: Self.probeResult(report.probe))
    }

    /// The journal's view of one operation id (`operation`): unknown, running, or its outcome, and
    /// for an install the state of its watch.
    static func operationResult(_ id: String, in journal: JournalState) -> OperationResult {
        guard let entry = journal.operation(id) else { return OperationResult(state: .unknown) }
        let state: OperationResult.State = switch entry.outcome?.state ?? .running {
        case .running: .running
        case .succeeded: .succeeded
        case .failed: .failed
        case .reverted: .reverted
        }
        var watch: OperationWatch?
        if let open = journal.watch, open.installID == id {
            watch = OperationWatch(state: .open, deadlineUnixMs: open.deadline.milliseconds)
        } else if let end = entry.watchEnd {
            let ended: OperationWatch.State = switch end {
            case .committed: .committed
            case .keptHealthy: .keptHealthy
            case .keptUnhealthy: .keptUnhealthy
            case .reverted: .reverted
            case .rolledBack, .superseded: .ended
            }
            watch = OperationWatch(state: ended)
        }
        return OperationResult(state: state, method: Method(rawValue: entry.kind.rawValue), message: entry.outcome?.message,
                               failure: state == .failed ? entry.outcome?.failure.map(code) : nil, watch: watch)
    }

    private func renewingIdentity() throws -> AgentIdentity {
        guard let identity else { throw ErrorResponse(.conflict, "this agent serves without TLS; it has no certificate to renew") }
        return identity
    }

    private func statusResult() async throws -> StatusResult {
        let status = await service.status()
        refreshVersion(status.live?.k3sVersion)
        var agent = agentInfo()
        agent.k3sVersion = status.live?.k3sVersion
        let unit = UnitStatus(name: status.unit, activeState: status.unitState?.activeState ?? "unknown",
                              subState: status.unitState?.subState ?? (status.unitError ?? "unknown"))
        let staged = status.staged.compactMap { artifact in
            SHA256Hex(rawValue: artifact.sha256).map {
                StagedArtifact(sha256: $0, bytes: artifact.bytes, k3sVersion: artifact.k3sVersion,
                               artifact: artifact.imagesFileName == nil ? nil : .airgapImages, fileName: artifact.imagesFileName)
            }
        }
        let watch = status.watch.flatMap { watch in
            OperationID(rawValue: watch.installID).map {
                WatchdogStatus(installOperationID: $0, previousK3sVersion: watch.restore.k3sVersion, deadlineUnixMs: watch.deadline.milliseconds)
            }
        }
        let recent = status.recentOperations.compactMap { entry -> OperationRecord? in
            guard let id = OperationID(rawValue: entry.id), let method = Method(rawValue: entry.kind.rawValue) else { return nil }
            let state: OperationState = switch entry.outcome?.state ?? .running {
            case .running: .running
            case .succeeded: .succeeded
            case .failed: .failed
            case .reverted: .reverted
            }
            return OperationRecord(operationID: id, method: method, state: state, message: entry.outcome?.message,
                                   startedAtUnixMs: entry.startedAt.milliseconds, finishedAtUnixMs: entry.finishedAt?.milliseconds)
        }
        return StatusResult(agent: agent, unit: unit, binaryPath: status.binaryPath, binaryFreeBytes: status.binaryFreeBytes,
                            dataDir: status.dataDir, dataFreeBytes: status.dataFreeBytes, staged: staged, watchdog: watch,
                            recentOperations: recent, airgapImagesDir: status.airgapImagesDir)
    }

    private func refreshVersion(_ version: String?) {
        guard let version else { return }
        info.withLockedValue { $0.k3sVersion = version }
    }

    static func probeResult(_ report: ProbeReport) -> ProbeResult {
        ProbeResult(healthy: report.healthy, checks: report.checks.map {
            ProbeCheck(name: $0.name, ok: $0.ok, latencyMs: $0.latencyMs, message: $0.message)
        })
    }

    /// The body of a succeeded outcome; a failed one becomes its typed error.
    private static func succeeded(_ outcome: OperationOutcome) throws -> OperationOutcome.Body {
        guard outcome.state == .succeeded else { throw error(outcome) }
        return outcome.body
    }

    private static func error(_ outcome: OperationOutcome) -> ErrorResponse {
        ErrorResponse(code(outcome.failure ?? .io), outcome.message)
    }

    private static func unexpected(_ outcome: OperationOutcome) -> ErrorResponse {
        ErrorResponse(.internal, "unexpected recorded outcome: \(outcome.message)")
    }

    static func code(_ failure: FailureCode) -> ErrorCode {
        switch failure {
        case .notFound: .notFound
        case .conflict, .unhealthy, .kubernetes: .conflict
        case .interrupted: .interrupted
        case .badRequest: .badRequest
        case .insufficientSpace: .insufficientSpace
        case .digestMismatch: .digestMismatch
        case .io: .internal
        }
    }

    /// A file as a download, read in 256 KiB pieces.
    /// The file's bytes as a download; `whenSent` runs once every byte was handed to the stream.
    static func fileSource(_ path: String, whenSent: (@Sendable () -> Void)? = nil) -> ChunkSource {
        ChunkSource { emit in
            let descriptor = open(path, O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else { throw FileSystemError("open", path) }
            defer { close(descriptor) }
            var buffer = ByteBufferAllocator().buffer(capacity: 256 * 1024)
            while true {
                buffer.clear()
                let count = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 256 * 1024) { raw in
                    let count = read(descriptor, raw.baseAddress, raw.count)
                    guard count >= 0 else { throw FileSystemError("read", path) }
                    return count
                }
                if count == 0 {
                    whenSent?()
                    return
                }
                try await emit(buffer)
            }
        }
    }
}

/// The request's upload as the `next` function staging reads: one reader at a time.
private final class UploadReader: @unchecked Sendable {
    private var iterator: ChunkStream.Iterator

    init(_ stream: ChunkStream) { iterator = stream.makeAsyncIterator() }

    func next() async throws -> [UInt8]? {
        guard let buffer = try await iterator.next() else { return nil }
        return Array(buffer.readableBytesView)
    }

    /// Reads what a replayed request still sends, so the stream ends cleanly.
    func drain() async {
        while (try? await iterator.next()) != nil {}
    }
}
