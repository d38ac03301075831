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
                let digest = SHA256.Hasher()
                var count: Int64 = 0
                while let piece = try await next() {
                    count += Int64(piece.count)
                    piece.withUnsafeBytes { digest.update($0) }
                }
                guard count == bytes, digest.finishHex() == sha256 else {
                    return .failed(.digestMismatch, "the upload does not match \(sha256) (\(count) bytes); the staged copy is unchanged")
                }
                return OperationOutcome(state: .succeeded, message: "\(existing.k3sVersion) was already staged; the upload matched it",
                                        body: .stage(StageReport(sha256: sha256, bytes: bytes, k3sVersion: existing.k3sVersion, alreadyStaged: true)))
            }
            let upload = try store.beginStaging(sha256: sha256, bytes: bytes, k3sVersion: k3sVersion)
            defer { upload.abort() }
            do {
                while let piece = try await next() { try upload.write(piece) }
            } catch let failure as AgentFailure {
                throw failure
            } catch {
                throw AgentFailure(.io, "the upload stopped after \(upload.bytesWritten) bytes: \(error); nothing was staged")
            }
            try upload.finish()
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
}
