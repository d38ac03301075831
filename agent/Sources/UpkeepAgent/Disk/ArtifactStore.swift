#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import UpkeepAgentCore
import UpkeepCore
import UpkeepPKI

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A verified k3s binary, or air-gap images tarball, in the staging area.
public struct StagedBinary: Codable, Equatable, Sendable {
    public var sha256: String
    public var bytes: Int64
    public var k3sVersion: String
    public var stagedAtUnixMs: Int64
    /// The verified file's identity when it was staged: while it holds, the file still has
    /// `sha256` and can be linked into place without being read again (absent: staged by an
    /// older agent, copied and verified instead).
    public var identity: FileIdentity?
    /// Set for a release's air-gap images tarball (its asset name); nil for a k3s binary.
    public var imagesFileName: String?

    public init(sha256: String, bytes: Int64, k3sVersion: String, stagedAtUnixMs: Int64, identity: FileIdentity? = nil,
                imagesFileName: String? = nil) {
        self.sha256 = sha256
        self.bytes = bytes
        self.k3sVersion = k3sVersion
        self.stagedAtUnixMs = stagedAtUnixMs
        self.identity = identity
        self.imagesFileName = imagesFileName
    }
}

/// The agent's binaries on disk: `staging/<sha256>` (verified uploads, with a `<sha256>.json`
/// description), `previous/<sha256>` (the binary the last install replaced), and the live path.
///
/// Nothing here ever writes into the live path: a binary becomes live under a temporary name in
/// the live path's own directory, then is renamed over it. That temporary name is a hard link to
/// the verified file when both are on one file system and the file is provably unchanged since
/// it was verified (same `FileIdentity`); otherwise a copy, verified and fsynced.
public struct ArtifactStore: Sendable {
    /// Staged artifacts kept at most; older ones not in use are removed when a new one arrives.
    public static let stagedMax = 4
    /// Free space kept beyond the artifact itself, so that staging never fills a disk to the brim.
    public static let spareBytes: Int64 = 16 << 20

    public let dataDir: String
    public let livePath: String

    public init(dataDir: String, livePath: String) {
        self.dataDir = dataDir
        self.livePath = livePath
    }

    public var stagingDir: String { "\(dataDir)/staging" }
    public var previousDir: String { "\(dataDir)/previous" }
    public func stagedPath(_ sha256: String) -> String { "\(stagingDir)/\(sha256)" }
    public func path(of binary: BinaryRef) -> String {
        switch binary.store {
        case .staging: "\(stagingDir)/\(binary.sha256)"
        case .previous: "\(previousDir)/\(binary.sha256)"
        }
    }

    private var liveTemporary: String {
        "\(PathName.directory(livePath))/.\(PathName.base(livePath)).upkeep-new"
    }

    /// Creates the directories and removes what an interrupted stage or swap left behind.
    public func prepare() throws(FileSystemError) {
        try FileSystem.makeDirectories(dataDir)
        try FileSystem.makeDirectories(stagingDir)
        try FileSystem.makeDirectories(previousDir)
        for directory in [stagingDir, previousDir] {
            for name in try FileSystem.list(directory) where name.hasPrefix(".") {
                try FileSystem.removeIfPresent("\(directory)/\(name)")
            }
        }
        try FileSystem.removeIfPresent(liveTemporary)
    }

    // MARK: - Staging

    /// Checks free space, then opens the upload's temporary file. Nothing is written when the
    /// space is short.
    public func beginStaging(sha256: String, bytes: Int64, k3sVersion: String) throws(AgentFailure) -> StagingUpload {
        try beginUpload(into: stagingDir, sha256: sha256, bytes: bytes, k3sVersion: k3sVersion)
    }

    /// `beginStaging` into another directory of the data directory (a received backup goes to
    /// `restore/`); the same checks, the same verified upload.
    public func beginUpload(into directory: String, sha256: String, bytes: Int64, k3sVersion: String) throws(AgentFailure) -> StagingUpload {
        guard SHA256.isHex(sha256) else { throw AgentFailure(.conflict, "\(sha256) is not a sha256 (64 lowercase hex digits)") }
        let free: Int64
        do { free = try FileSystem.freeBytes(directory) } catch { throw .io(error) }
        guard free >= bytes + Self.spareBytes else {
            throw AgentFailure(.insufficientSpace, "receiving \(bytes) bytes needs \(bytes + Self.spareBytes) bytes free in \(directory) (with \(Self.spareBytes) spare); \(free) are free. Free space on that file system and send it again")
        }
        let temporary = "\(directory)/.\(sha256).partial"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            if errno == EEXIST { throw AgentFailure(.conflict, "\(sha256) is being staged by another request; wait for it") }
            throw .io(FileSystemError("create", temporary))
        }
        return StagingUpload(store: self, sha256: sha256, bytesExpected: bytes, k3sVersion: k3sVersion, temporary: temporary, descriptor: descriptor)
    }

    /// Receives an upload through `next` (pieces until nil) into `directory`: `beginUpload`'s
    /// checks, every piece written and hashed, then `finish(mode:)` (length and digest verified,
    /// fsynced). Any failure removes the temporary file; the caller publishes the returned upload,
    /// and an upload it drops or aborts leaves nothing behind either.
    public func receiveUpload(into directory: String, sha256: String, bytes: Int64, k3sVersion: String, mode: mode_t,
                              next: () async throws -> [UInt8]?) async throws(AgentFailure) -> StagingUpload {
        let upload = try beginUpload(into: directory, sha256: sha256, bytes: bytes, k3sVersion: k3sVersion)
        do {
            while let piece = try await next() { try upload.write(piece) }
        } catch let failure as AgentFailure {
            upload.abort()
            throw failure
        } catch {
            upload.abort()
            throw AgentFailure(.io, "the upload stopped after \(upload.bytesWritten) bytes: \(error); nothing was kept")
        }
        try upload.finish(mode: mode)
        return upload
    }

    public func staged() -> [StagedBinary] {
        let names = (try? FileSystem.list(stagingDir)) ?? []
        return names.filter { SHA256.isHex($0) }.compactMap { sha in
            guard let bytes = try? FileSystem.readBytes("\(stagingDir)/\(sha).json", bytesMax: 4096) else { return nil }
            return try? JSONDecoder().decode(StagedBinary.self, from: Data(bytes))
        }.sorted { $0.stagedAtUnixMs > $1.stagedAtUnixMs }
    }

    public func stagedArtifact(_ sha256: String) -> StagedBinary? {
        guard FileSystem.exists(stagedPath(sha256)) else { return nil }
        return staged().first { $0.sha256 == sha256 }
    }

    /// Removes the oldest staged artifacts beyond `stagedMax`, never one in `keeping`.
    public func pruneStaged(keeping: Set<String>) throws(FileSystemError) {
        var artifacts = staged()
        while artifacts.count > Self.stagedMax, let victim = artifacts.last(where: { !keeping.contains($0.sha256) }) {
            try FileSystem.removeIfPresent(stagedPath(victim.sha256))
            try FileSystem.removeIfPresent("\(stagingDir)/\(victim.sha256).json")
            artifacts.removeAll { $0.sha256 == victim.sha256 }
        }
    }

    // MARK: - Swaps

    /// Keeps the live binary as `previous/<sha256>` and removes other kept binaries: a hard link
    /// when `knownLive` is the identity under which the live binary was found to have that digest
    /// (and still is), else a copy verified against the digest.
    public func keepPrevious(sha256: String, knownLive: FileIdentity? = nil) throws(AgentFailure) {
        let target = "\(previousDir)/\(sha256)"
        if let knownLive, FileSystem.identity(target) == knownLive { return }
        if FileSystem.exists(target), (try? FileSystem.sha256(ofFile: target)) == sha256 { return }
        let temporary = "\(previousDir)/.\(sha256).tmp"
        if !(knownLive.map { FileSystem.linkIdentical(livePath, to: temporary, expected: $0) } ?? false) {
            try copyVerified(from: livePath, to: temporary, expecting: sha256)
        }
        do throws(FileSystemError) {
            try FileSystem.publish(temporary, over: target)
            for name in try FileSystem.list(previousDir) where name != sha256 {
                try FileSystem.removeIfPresent("\(previousDir)/\(name)")
            }
        } catch {
            throw .io(error)
        }
    }

    /// Makes `binary` live: under a temporary name beside the live path (a link to a staged file
    /// unchanged since it was verified, else a verified, fsynced copy), renamed over it, and the
    /// directory fsynced. A crash at any point leaves the live path with the complete old or the
    /// complete new binary.
    public func place(_ binary: BinaryRef) throws(AgentFailure) {
        let source = path(of: binary)
        guard FileSystem.exists(source) else {
            throw AgentFailure(.notFound, "\(binary) is not in \(PathName.directory(source))")
        }
        let verified = binary.store == .staging ? stagedArtifact(binary.sha256)?.identity : nil
        if !(verified.map { FileSystem.linkIdentical(source, to: liveTemporary, expected: $0) } ?? false) {
            try copyVerified(from: source, to: liveTemporary, expecting: binary.sha256)
        }
        do throws(FileSystemError) {
            try FileSystem.publish(liveTemporary, over: livePath)
        } catch {
            try? FileSystem.removeIfPresent(liveTemporary)
            throw .io(error)
        }
    }

    /// Copies `from` to a new file `to` (mode 0755) while hashing it; fsyncs it; removes it again
    /// unless its digest is `expecting`.
    func copyVerified(from: String, to: String, expecting sha256: String) throws(AgentFailure) {
        let digest = SHA256.Hasher()
        do {
            try FileSystem.removeIfPresent(to)
            try FileSystem.copy(from, to: to, mode: 0o755) { digest.update($0) }
        } catch {
            throw .io(error)
        }
        let actual = digest.finishHex()
        guard actual == sha256 else {
            unlink(to)
            throw AgentFailure(.digestMismatch, "\(from) has sha256 \(actual), expected \(sha256); it changed or is damaged")
        }
    }
}

/// One upload into the staging area. Bytes go to a temporary file while being hashed; `finish`
/// verifies length and digest, fsyncs and marks the file executable; `publish` makes it a staged
/// artifact. `abort` (or any failure) removes the temporary file: nothing is left behind.
public final class StagingUpload {
    public let sha256: String
    public let bytesExpected: Int64
    public let k3sVersion: String
    /// The verified file, executable once `finish` returned; run it to check its version.
    public let temporary: String
    private let store: ArtifactStore
    private var descriptor: Int32
    private let digest = SHA256.Hasher()
    public private(set) var bytesWritten: Int64 = 0

    init(store: ArtifactStore, sha256: String, bytesExpected: Int64, k3sVersion: String, temporary: String, descriptor: Int32) {
        self.store = store
        self.sha256 = sha256
        self.bytesExpected = bytesExpected
        self.k3sVersion = k3sVersion
        self.temporary = temporary
        self.descriptor = descriptor
    }

    deinit { abort() }

    public func write(_ bytes: UnsafeRawBufferPointer) throws(AgentFailure) {
        precondition(descriptor >= 0, "write after finish or abort")
        guard bytesWritten + Int64(bytes.count) <= bytesExpected else {
            abort()
            throw AgentFailure(.digestMismatch, "the upload is longer than the announced \(bytesExpected) bytes; nothing was staged")
        }
        do {
            try FileSystem.writeAll(descriptor, bytes, path: temporary)
        } catch {
            abort()
            throw .io(error)
        }
        digest.update(bytes)
        bytesWritten += Int64(bytes.count)
    }

    public func write(_ bytes: [UInt8]) throws(AgentFailure) {
        let result = bytes.withUnsafeBytes { raw in Result { () throws(AgentFailure) in try write(raw) } }
        try result.get()
    }

    /// Verifies length and digest, fsyncs, and gives the file `mode` (executable by default).
    public func finish(mode: mode_t = 0o755) throws(AgentFailure) {
        precondition(descriptor >= 0, "finish after finish or abort")
        guard bytesWritten == bytesExpected else {
            abort()
            throw AgentFailure(.digestMismatch, "the upload ended after \(bytesWritten) of \(bytesExpected) bytes; nothing was staged")
        }
        let actual = digest.finishHex()
        guard actual == sha256 else {
            abort()
            throw AgentFailure(.digestMismatch, "the upload has sha256 \(actual), not the expected \(sha256); nothing was staged. Check the release's sha256sum file and the download")
        }
        guard fchmod(descriptor, mode) == 0, fsync(descriptor) == 0 else {
            let error = FileSystemError("fsync", temporary)
            abort()
            throw .io(error)
        }
        close(descriptor)
        descriptor = -2
    }

    /// Makes the finished upload a staged artifact (description first, then the binary, each by
    /// rename); `imagesFileName` for an images tarball.
    public func publish(k3sVersion: String, nowUnixMs: Int64, imagesFileName: String? = nil) throws(AgentFailure) -> StagedBinary {
        precondition(descriptor == -2, "publish before finish")
        let artifact = StagedBinary(sha256: sha256, bytes: bytesWritten, k3sVersion: k3sVersion, stagedAtUnixMs: nowUnixMs,
                                      identity: FileSystem.identity(temporary), imagesFileName: imagesFileName)
        do {
            let description = try JSONEncoder().encode(artifact)
            try FileSystem.writeAtomically(Array(description), to: "\(store.stagingDir)/\(sha256).json", mode: 0o600)
            try FileSystem.publish(temporary, over: store.stagedPath(sha256))
        } catch let error as FileSystemError {
            abort()
            throw .io(error)
        } catch {
            abort()
            throw AgentFailure(.io, "cannot describe \(sha256): \(error)")
        }
        descriptor = -3
        return artifact
    }

    /// Makes the finished upload the file at `path` (a rename in the same directory), durably.
    public func publish(as path: String) throws(AgentFailure) {
        precondition(descriptor == -2, "publish before finish")
        do {
            try FileSystem.publish(temporary, over: path)
        } catch {
            abort()
            throw .io(error)
        }
        descriptor = -3
    }

    /// Removes the temporary file. Safe to call more than once.
    public func abort() {
        if descriptor >= 0 { close(descriptor) }
        if descriptor != -3 { unlink(temporary) }
        descriptor = -3
    }
}
