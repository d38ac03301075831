import UpkeepAgentCore
import UpkeepCore
import UpkeepPKI

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Staging: a binary (or a release's air-gap images tarball) streamed into the staging area,
/// verified (length, digest, and a binary's `--version`) before it is published, under an
/// operation id like every other shell operation.
extension AgentService {
    /// Receives a binary through `next` (pieces until nil) into the staging area: free space
    /// checked before anything is written, digest and length verified, fsynced, made executable,
    /// and its `--version` checked against `k3sVersion`. On any failure nothing is left behind.
    /// With `imagesFileName` the upload is that images tarball of `k3sVersion`: its digest (the
    /// release's sha256sum line) is all there is to verify.
    public func stage(operationID: String, sha256: String, bytes: Int64, k3sVersion: String, imagesFileName: String? = nil,
                      next: @escaping @Sendable () async throws -> [UInt8]?) async throws -> OperationOutcome {
        let store = environment.store
        if store.stagedArtifact(sha256) == nil, machine.journal.operation(operationID) == nil {
            // Refused before the ledger, so a retry with the same id after freeing space works.
            let upload = try store.beginStaging(sha256: sha256, bytes: bytes, k3sVersion: k3sVersion)
            upload.abort()
        }
        let clock = environment.clock
        let versionTimeout = Double(environment.config.versionTimeoutSeconds)
        let keep = Set([machine.journal.watch?.installed.sha256].compactMap { $0 })
        return try await runShellOperation(operationID: operationID, kind: .stage, fingerprint: "stage \(sha256) \(bytes)") {
            await Self.stageWork(store: store, sha256: sha256, bytes: bytes, k3sVersion: k3sVersion, imagesFileName: imagesFileName, next: next,
                                 versionTimeoutSeconds: versionTimeout, nowUnixMs: clock().milliseconds, keep: keep)
        }
    }

    private static func stageWork(store: ArtifactStore, sha256: String, bytes: Int64, k3sVersion: String, imagesFileName: String?,
                                  next: @Sendable () async throws -> [UInt8]?, versionTimeoutSeconds: Double,
                                  nowUnixMs: Int64, keep: Set<String>) async -> OperationOutcome {
        do {
            if let existing = store.stagedArtifact(sha256) {
                if let mismatch = try await mismatch(of: next, sha256: sha256, bytes: bytes) {
                    return .failed(.digestMismatch, "\(mismatch); the staged copy is unchanged")
                }
                return OperationOutcome(state: .succeeded, message: "\(existing.k3sVersion) was already staged; the upload matched it",
                                        body: .stage(StageReport(sha256: sha256, bytes: bytes, k3sVersion: existing.k3sVersion, alreadyStaged: true)))
            }
            let upload = try await store.receiveUpload(into: store.stagingDir, sha256: sha256, bytes: bytes, k3sVersion: k3sVersion,
                                                       mode: 0o755, next: next)
            defer { upload.abort() }
            if let imagesFileName {
                let artifact = try upload.publish(k3sVersion: k3sVersion, nowUnixMs: nowUnixMs, imagesFileName: imagesFileName)
                try? store.pruneStaged(keeping: keep.union([sha256]))
                return OperationOutcome(state: .succeeded, message: "staged \(imagesFileName) of \(k3sVersion) (\(sha256.prefix(12)))",
                                        body: .stage(StageReport(sha256: sha256, bytes: artifact.bytes, k3sVersion: k3sVersion, alreadyStaged: false)))
            }
            let reported: String
            do {
                reported = try await K3sBinaryInfo.version(of: upload.temporary, timeoutSeconds: versionTimeoutSeconds)
            } catch {
                throw AgentFailure(.conflict, "the uploaded binary does not run here (\(error.message)); is it built for this architecture (\(MachineArch.current()))?")
            }
            guard reported == k3sVersion else {
                throw AgentFailure(.conflict, "the uploaded binary reports \(reported), not the announced \(k3sVersion); nothing was staged")
            }
            let artifact = try upload.publish(k3sVersion: k3sVersion, nowUnixMs: nowUnixMs)
            try? store.pruneStaged(keeping: keep.union([sha256]))
            return OperationOutcome(state: .succeeded, message: "staged \(k3sVersion) (\(sha256.prefix(12)))",
                                    body: .stage(StageReport(sha256: sha256, bytes: artifact.bytes, k3sVersion: k3sVersion, alreadyStaged: false)))
        } catch let failure as AgentFailure {
            return .failed(failure.code, failure.message)
        } catch {
            return .failed(.io, "\(error)")
        }
    }

    /// Reads an upload of something already here to its end: nil when it matches `sha256` and
    /// `bytes`, else what differs.
    static func mismatch(of next: @Sendable () async throws -> [UInt8]?, sha256: String, bytes: Int64) async throws -> String? {
        let digest = SHA256.Hasher()
        var count: Int64 = 0
        while let piece = try await next() {
            count += Int64(piece.count)
            piece.withUnsafeBytes { digest.update($0) }
        }
        return count == bytes && digest.finishHex() == sha256 ? nil : "the upload does not match \(sha256) (\(count) bytes)"
    }

    // MARK: - Received backups

    /// Receives a datastore backup through `next` into `restore/` (0700; the file 0600): free
    /// space checked first, digest and length verified, a SQLite tar checked for the database and
    /// the token. A backup received before is only verified against the upload; any other
    /// received backup is removed (it holds the cluster's data and token).
    public func restoreBackup(operationID: String, sha256: String, bytes: Int64, format: BackupReport.Format, k3sVersion: String,
                              next: @escaping @Sendable () async throws -> [UInt8]?) async throws -> OperationOutcome {
        guard environment.isServer else {
            throw AgentFailure(.conflict, "restoreBackup is for servers, which hold the datastore; this node is an agent")
        }
        let restore = environment.datastoreRestore
        let store = environment.store
        do { try PlaintextRetention.secure(restore.restoreDir) } catch { throw AgentFailure.io(error) }
        if restore.received(sha256) == nil, machine.journal.operation(operationID) == nil {
            // Refused before the ledger, so a retry with the same id after freeing space works.
            try store.beginUpload(into: restore.restoreDir, sha256: sha256, bytes: bytes, k3sVersion: k3sVersion).abort()
        }
        return try await runShellOperation(operationID: operationID, kind: .restoreBackup, fingerprint: "restoreBackup \(sha256) \(bytes)") {
            do {
                if restore.received(sha256) != nil {
                    if let mismatch = try await Self.mismatch(of: next, sha256: sha256, bytes: bytes) {
                        return .failed(.digestMismatch, "\(mismatch); the received copy is unchanged")
                    }
                    restore.removeReceived(except: sha256)
                    return OperationOutcome(state: .succeeded, message: "backup \(sha256.prefix(12)) was already received; the upload matched it",
                                            body: .restoreBackup(RestoreBackupReport(sha256: sha256, bytes: bytes, format: format, alreadyReceived: true)))
                }
                let upload = try await store.receiveUpload(into: restore.restoreDir, sha256: sha256, bytes: bytes, k3sVersion: k3sVersion,
                                                           mode: 0o600, next: next)
                defer { upload.abort() }
                if format == .sqliteTar { try DatastoreRestore.checkSQLiteTar(upload.temporary) }
                try upload.publish(as: restore.path(sha256: sha256, format: format))
                restore.removeReceived(except: sha256)
                return OperationOutcome(state: .succeeded, message: "received the \(format.rawValue) backup \(sha256.prefix(12)) of \(k3sVersion) (\(bytes) bytes)",
                                        body: .restoreBackup(RestoreBackupReport(sha256: sha256, bytes: bytes, format: format, alreadyReceived: false)))
            } catch let failure as AgentFailure {
                return .failed(failure.code, failure.message)
            } catch {
                return .failed(.io, "\(error)")
            }
        }
    }
}

extension AgentEnvironment {
    /// Received backups and the restore of this server's datastore.
    public var datastoreRestore: DatastoreRestore {
        DatastoreRestore(k3sBinary: config.k3sBinary, k3sDataDir: config.k3sDataDir, restoreDir: PlaintextRetention(dataDir: config.dataDir).restoreDir,
                         limits: limits)
    }
}
