#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import UpkeepCore

/// A file written in full to a temporary name beside its target, then published in one step:
/// `link` (never replaces: fails if the target exists) or `rename` (replaces atomically).
///
/// The temporary file is created with O_CREAT|O_EXCL and its final mode, so a key is never
/// readable by anyone else, not even for a moment; it is fsynced before publication and the
/// directory after. Internal to `PKIDirectory`.
struct StagedFile: Sendable {
    let target: String
    let temporary: String

    /// Writes `contents` to a fresh temporary file in `target`'s directory.
    static func stage(_ contents: [UInt8], to target: String, mode: mode_t) throws -> StagedFile {
        let directory = PathName.directory(target)
        let name = PathName.base(target)
        var random = SystemRandomNumberGenerator()
        let temporary = "\(directory)/.\(name).tmp-\(String(random.next() as UInt64, radix: 16))"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard descriptor >= 0 else { throw FileSystemFailure.current(path: temporary, operation: "create") }
        var written = 0
        let failure: FileSystemFailure? = contents.withUnsafeBytes { raw in
            // umask may have narrowed a certificate's 0644; a key's 0600 is only ever narrowed.
            if mode != 0o600, fchmod(descriptor, mode) != 0 { return .current(path: temporary, operation: "chmod") }
            while written < raw.count {
                let count = write(descriptor, raw.baseAddress! + written, raw.count - written)
                if count < 0 {
                    if errno == EINTR { continue }
                    return .current(path: temporary, operation: "write")
                }
                written += count
            }
            return fsync(descriptor) == 0 ? nil : .current(path: temporary, operation: "fsync")
        }
        close(descriptor)
        if let failure {
            unlink(temporary)
            throw failure
        }
        return StagedFile(target: target, temporary: temporary)
    }

    /// Publishes every file or none. Without `replacing`, an existing target makes the whole
    /// publication fail with `FileSystemFailure.exists` and leaves every target as it was.
    static func publish(_ files: [StagedFile], replacing: Bool) throws {
        defer { for file in files { unlink(file.temporary) } }
        var published: [StagedFile] = []
        for file in files {
            let result = replacing ? rename(file.temporary, file.target) : link(file.temporary, file.target)
            guard result == 0 else {
                let failure = FileSystemFailure.current(path: file.target, operation: replacing ? "rename" : "link")
                if !replacing { for done in published { unlink(done.target) } }
                throw failure
            }
            published.append(file)
        }
        for directory in Set(files.map { PathName.directory($0.target) }) {
            let descriptor = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if descriptor >= 0 {
                fsync(descriptor)
                close(descriptor)
            }
        }
    }
}

/// A failed system call on a path, with errno.
struct FileSystemFailure: Error, Equatable {
    let path: String
    let operation: String
    let code: Int32

    static func current(path: String, operation: String) -> FileSystemFailure {
        FileSystemFailure(path: path, operation: operation, code: errno)
    }

    var reason: String { String(cString: strerror(code)) }
}

/// Creates `path` (mode 0700) and any missing parents (mode 0755, as `mkdir -p`). An existing
/// directory open to group or others is made 0700: it holds keys (docs/pki.md).
func makePrivateDirectory(_ path: String) throws {
    var status = stat()
    if stat(path, &status) == 0 {
        guard status.st_mode & S_IFMT == S_IFDIR else {
            throw FileSystemFailure(path: path, operation: "mkdir", code: ENOTDIR)
        }
        if status.st_mode & 0o077 != 0, chmod(path, 0o700) != 0 {
            throw FileSystemFailure.current(path: path, operation: "chmod 0700")
        }
        return
    }
    let parent = PathName.directory(path)
    if !parent.isEmpty, parent != path, stat(parent, &status) != 0 {
        do {
            try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
        } catch {
            throw FileSystemFailure(path: parent, operation: "mkdir", code: EACCES)
        }
    }
    guard mkdir(path, 0o700) == 0 || errno == EEXIST else {
        throw FileSystemFailure.current(path: path, operation: "mkdir")
    }
}

/// The permission bits of `path`, or nil if it does not exist.
func permissionBits(_ path: String) -> mode_t? {
    var status = stat()
    guard stat(path, &status) == 0 else { return nil }
    return status.st_mode & 0o7777
}
