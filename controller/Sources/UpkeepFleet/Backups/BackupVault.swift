import Foundation
import NIOCore
import UpkeepPKI
import UpkeepProtocol

#if canImport(Glibc)
import Glibc
#endif

/// Datastore backups kept by the controller, sealed at rest: each file is AES-256-GCM under a
/// 32-byte key that lives in its own 0600 file (docs/backups.md has the format).
///
/// A sealed file is `UPKEEPB1` (8 bytes), a random 12-byte nonce, the ciphertext, and the 16-byte
/// GCM tag; the first 20 bytes are authenticated as well. Files are written as `*.partial` and
/// renamed only once complete; an opened file is decrypted into a `*.partial` beside its output
/// and renamed only after the tag verified, so no unverified byte is ever left under the name
/// the operator asked for.
public struct BackupVault: Sendable {
    public static let magic = Array("UPKEEPB1".utf8)
    static let nonceBytes = AES256GCM.nonceBytes
    static let tagBytes = AES256GCM.tagBytes
    static let keyBytes = AES256GCM.keyBytes
    static var headerBytes: Int { magic.count + nonceBytes }
    /// GCM with a 96-bit nonce is limited to about 64 GiB per key and nonce; a k3s datastore
    /// backup is far smaller, and a larger stream is refused rather than weakened.
    public static let plaintextBytesMax: Int64 = 32 << 30
    static let readBlockBytes = 1 << 20

    /// Where sealed backups live (mode 0700).
    public let directory: String
    /// The key file (32 bytes, mode 0600); made on first use when missing.
    public let keyFile: String

    public init(directory: String, keyFile: String) {
        self.directory = directory
        self.keyFile = keyFile
    }

    // MARK: - The key

    /// The key, made (32 bytes from OpenSSL's CSPRNG, mode 0600) when the file does not exist yet.
    /// A key file others can read, or one of the wrong size, is refused.
    func key(creating: Bool) throws(BackupError) -> [UInt8] {
        var info = stat()
        if stat(keyFile, &info) != 0 {
            guard errno == ENOENT, creating else {
                throw BackupError("the backup key \(keyFile) cannot be read: \(String(cString: strerror(errno)))"
                    + (errno == ENOENT ? "; it is made by the first backup, and sealed backups cannot be opened without it" : ""))
            }
            return try makeKey()
        }
        guard info.st_mode & 0o077 == 0 else {
            throw BackupError("the backup key \(keyFile) is readable by others (mode \(String(info.st_mode & 0o777, radix: 8))); run `chmod 600 \(keyFile)`")
        }
        guard info.st_size == Self.keyBytes, let data = FileManager.default.contents(atPath: keyFile), data.count == Self.keyBytes else {
            throw BackupError("the backup key \(keyFile) must hold exactly \(Self.keyBytes) bytes; it holds \(info.st_size)")
        }
        return Array(data)
    }

    private func makeKey() throws(BackupError) -> [UInt8] {
        let key = try cipherStep("drawing a backup key") { () throws(AEADError) in try SecureRandom.bytes(Self.keyBytes) }
        let parent = (keyFile as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw BackupError("cannot make \(parent) for the backup key: \(error.localizedDescription)")
        }
        // O_EXCL: two controllers making a key at once must not each seal with their own.
        let descriptor = Glibc.open(keyFile, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            if errno == EEXIST { return try self.key(creating: false) }
            throw BackupError("cannot create the backup key \(keyFile): \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        let written = key.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        guard written == key.count, fsync(descriptor) == 0 else {
            unlink(keyFile)
            throw BackupError("cannot write the backup key \(keyFile): \(String(cString: strerror(errno)))")
        }
        return key
    }

    // MARK: - Sealing

    /// Starts a sealed file `<directory>/<name>.upkb`. Append the plaintext, then `finish`.
    public func seal(name: String) throws(BackupError) -> SealedBackupWriter {
        guard !name.isEmpty, name.utf8.count <= 128, !name.hasPrefix("."),
              name.utf8.allSatisfy({ Self.nameBytes.contains($0) }) else {
            throw BackupError("backup name \"\(name)\" must be 1...128 characters from a-z A-Z 0-9 . _ - and not start with a dot")
        }
        let key = try key(creating: true)
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw BackupError("cannot make the backup directory \(directory): \(error.localizedDescription)")
        }
        return try SealedBackupWriter(path: "\(directory)/\(name).upkb", key: key)
    }

    private static let nameBytes = Set(Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-".utf8))

    // MARK: - Opening

    /// Decrypts the sealed file at `path` into `output` (mode 0600), verifying the tag before
    /// the output appears; returns the plaintext's size and SHA-256. An existing `output` is
    /// refused unless `replace`.
    @discardableResult
    public func open(_ path: String, to output: String, replace: Bool = false) throws(BackupError) -> (bytes: Int64, sha256: String) {
        if !replace && FileManager.default.fileExists(atPath: output) {
            throw BackupError("\(output) exists; choose another path or pass --force to replace it")
        }
        let reader = try SealedBackupReader(path: path, key: key(creating: false), keyFile: keyFile)
        let partial = output + ".partial"
        let descriptor = Glibc.open(partial, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw BackupError("cannot write \(partial): \(String(cString: strerror(errno)))") }
        var finished = false
        defer {
            close(descriptor)
            if !finished { unlink(partial) }
        }
        while let clear = try reader.next() { try Self.writeAll(clear, to: descriptor, path: partial) }
        let opened = try reader.finish()
        guard fsync(descriptor) == 0, rename(partial, output) == 0 else {
            throw BackupError("cannot finish \(output): \(String(cString: strerror(errno)))")
        }
        finished = true
        return opened
    }

    /// Decrypts the sealed file at `path` block by block into `emit`, never to a file (a
    /// restore streams it to an agent). The tag is verified after the last block: a damaged
    /// file or another key throws there, so the caller's stream fails instead of completing
    /// (the receiver also checks the plaintext's SHA-256 against the recorded one).
    public func stream(_ path: String, _ emit: ([UInt8]) async throws -> Void) async throws -> (bytes: Int64, sha256: String) {
        let reader = try SealedBackupReader(path: path, key: key(creating: false), keyFile: keyFile)
        while let clear = try reader.next() { try await emit(clear) }
        return try reader.finish()
    }

    static func writeAll(_ bytes: [UInt8], to descriptor: Int32, path: String) throws(BackupError) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { throw BackupError("cannot write \(path): \(String(cString: strerror(errno)))") }
            offset += written
        }
    }
}

/// Writes one sealed backup: append plaintext, then `finish` (or `abandon`).
public final class SealedBackupWriter {
    public let path: String
    private let partial: String
    private let descriptor: Int32
    private let cipher: AES256GCM
    private var bytes: Int64 = 0
    private var done = false

    fileprivate init(path: String, key: [UInt8]) throws(BackupError) {
        self.path = path
        partial = path + ".partial"
        let nonce = try cipherStep("drawing a nonce") { () throws(AEADError) in try SecureRandom.bytes(BackupVault.nonceBytes) }
        descriptor = open(partial, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw BackupError("cannot write \(partial): \(String(cString: strerror(errno)))") }
        do {
            let header = BackupVault.magic + nonce
            cipher = try cipherStep("sealing") { () throws(AEADError) in
                let cipher = try AES256GCM(key: key, nonce: nonce, direction: .sealing)
                try cipher.authenticate(header)
                return cipher
            }
            try BackupVault.writeAll(header, to: descriptor, path: partial)
        } catch {
            close(descriptor)
            unlink(partial)
            throw error
        }
    }

    deinit {
        if !done { abandon() }
    }

    /// Plaintext bytes sealed so far.
    public var plaintextBytes: Int64 { bytes }

    public func append(_ buffer: ByteBuffer) throws(BackupError) {
        precondition(!done, "append after finish or abandon")
        bytes += Int64(buffer.readableBytes)
        guard bytes <= BackupVault.plaintextBytesMax else {
            throw BackupError("the backup is larger than \(BackupVault.plaintextBytesMax >> 30) GiB, the most one sealed file holds")
        }
        let clear = Array(buffer.readableBytesView)
        try BackupVault.writeAll(try cipherStep("sealing") { () throws(AEADError) in try cipher.update(clear) }, to: descriptor, path: partial)
    }

    /// Writes the tag, syncs, and moves the file to `path`; returns the plaintext's size.
    @discardableResult
    public func finish() throws(BackupError) -> Int64 {
        precondition(!done, "finish after finish or abandon")
        do throws(BackupError) {
            try BackupVault.writeAll(try cipherStep("sealing") { () throws(AEADError) in try cipher.finishTag() }, to: descriptor, path: partial)
            guard fsync(descriptor) == 0, rename(partial, path) == 0 else {
                throw BackupError("cannot finish \(path): \(String(cString: strerror(errno)))")
            }
        } catch {
            abandon()
            throw error
        }
        done = true
        close(descriptor)
        let directory = (path as NSString).deletingLastPathComponent
        let parent = Glibc.open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if parent >= 0 { fsync(parent); close(parent) }
        return bytes
    }

    /// Removes the partial file.
    public func abandon() {
        guard !done else { return }
        done = true
        close(descriptor)
        unlink(partial)
    }
}

/// Runs an `AES256GCM` step, naming what failed in the backup's terms.
private func cipherStep<T>(_ what: String, _ body: () throws(AEADError) -> T) throws(BackupError) -> T {
    do { return try body() } catch { throw BackupError("\(what) failed: \(error.description)") }
}

public struct BackupError: Error, CustomStringConvertible, Equatable, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Reads one sealed backup: the header and key checked on opening, then plaintext block by
/// block (each authenticated only as part of the whole), then `finish` verifies the tag and
/// returns the plaintext's size and SHA-256. Never trust a block before `finish` returned.
final class SealedBackupReader {
    private let path: String
    private let keyFile: String
    private let input: FileHandle
    private let cipher: AES256GCM
    private let digest = SHA256.Hasher()
    private var remaining: Int64
    private var plaintext: Int64 = 0

    init(path: String, key: [UInt8], keyFile: String) throws(BackupError) {
        self.path = path
        self.keyFile = keyFile
        guard let input = FileHandle(forReadingAtPath: path) else {
            throw BackupError("cannot read the sealed backup \(path): \(String(cString: strerror(errno)))")
        }
        self.input = input
        let size: Int64
        do { size = Int64(try input.seekToEnd()); try input.seek(toOffset: 0) } catch {
            try? input.close()
            throw BackupError("cannot read the sealed backup \(path): \(error.localizedDescription)")
        }
        guard size >= Int64(BackupVault.headerBytes + BackupVault.tagBytes) else {
            try? input.close()
            throw BackupError("\(path) is not a sealed Upkeep backup (it is \(size) bytes, shorter than header and tag)")
        }
        let header = Array((try? input.read(upToCount: BackupVault.headerBytes)) ?? Data())
        guard header.count == BackupVault.headerBytes, Array(header.prefix(BackupVault.magic.count)) == BackupVault.magic else {
            try? input.close()
            throw BackupError("\(path) is not a sealed Upkeep backup (it does not start with UPKEEPB1)")
        }
        do {
            cipher = try cipherStep("opening") { () throws(AEADError) in
                let cipher = try AES256GCM(key: key, nonce: Array(header.suffix(BackupVault.nonceBytes)), direction: .opening)
                try cipher.authenticate(header)
                return cipher
            }
        } catch {
            try? input.close()
            throw error
        }
        remaining = size - Int64(BackupVault.headerBytes + BackupVault.tagBytes)
    }

    deinit { try? input.close() }

    /// The next block of plaintext, or nil after the last.
    func next() throws(BackupError) -> [UInt8]? {
        guard remaining > 0 else { return nil }
        let count = Int(min(Int64(BackupVault.readBlockBytes), remaining))
        guard let block = try? input.read(upToCount: count), block.count == count else {
            throw BackupError("\(path) ended early; it is damaged")
        }
        let clear = try cipherStep("opening") { () throws(AEADError) in try cipher.update(Array(block)) }
        digest.update(clear)
        remaining -= Int64(count)
        plaintext += Int64(clear.count)
        return clear
    }

    /// Verifies the tag; only then are the blocks read so far the backup.
    func finish() throws(BackupError) -> (bytes: Int64, sha256: String) {
        guard let tag = try? input.read(upToCount: BackupVault.tagBytes), tag.count == BackupVault.tagBytes else {
            throw BackupError("\(path) ended early; it is damaged")
        }
        guard cipher.verify(tag: Array(tag)) else {
            throw BackupError("\(path) does not verify: it was damaged or sealed with another key than \(keyFile)")
        }
        return (plaintext, SHA256Hex(digest: digest.finish()).rawValue)
    }
}
