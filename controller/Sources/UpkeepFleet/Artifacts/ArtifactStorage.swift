import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The cache's files: durable writes by atomic rename, sizes. Blocking file I/O kept
/// apart from the cache's decisions.
enum ArtifactStorage {
    /// Creates `path` (and parents) with mode 0700, and tightens it if it already exists.
    static func makeDirectory(_ path: String) throws(ArtifactError) {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw .storage(path: path, reason: error.localizedDescription)
        }
        guard chmod(path, 0o700) == 0 else { throw .storage(path: path, reason: String(cString: strerror(errno))) }
    }

    /// Writes `bytes` to `path` with `mode`: into a temporary file in `scratch` (same file system),
    /// fsync, rename over `path`, fsync the directory. Readers see the old file or the whole new one.
    static func writeAtomically(_ bytes: [UInt8], to path: String, mode: mode_t, scratch: String) throws(ArtifactError) {
        let temporary = "\(scratch)/\(UUID().uuidString).part"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw .storage(path: temporary, reason: String(cString: strerror(errno))) }
        var failure: String?
        var written = 0
        bytes.withUnsafeBytes { raw in
            while written < raw.count {
                let count = write(descriptor, raw.baseAddress! + written, raw.count - written)
                if count < 0 {
                    if errno == EINTR { continue }
                    failure = "write: \(String(cString: strerror(errno)))"
                    return
                }
                written += count
            }
        }
        if failure == nil, fchmod(descriptor, mode) != 0 { failure = "chmod: \(String(cString: strerror(errno)))" }
        if failure == nil, fsync(descriptor) != 0 { failure = "fsync: \(String(cString: strerror(errno)))" }
        close(descriptor)
        if failure == nil, rename(temporary, path) != 0 { failure = "rename: \(String(cString: strerror(errno)))" }
        if let failure {
            unlink(temporary)
            throw .storage(path: path, reason: failure)
        }
        let directory = (path as NSString).deletingLastPathComponent
        let directoryDescriptor = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directoryDescriptor >= 0 {
            fsync(directoryDescriptor)
            close(directoryDescriptor)
        }
    }

    /// Size of a regular file, nil when absent.
    static func size(_ path: String) -> Int64? {
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return nil }
        return Int64(info.st_size)
    }

    /// Reads a whole file of at most `bytesMax` bytes; nil when absent.
    static func read(_ path: String, bytesMax: Int) throws(ArtifactError) -> [UInt8]? {
        guard let size = size(path) else { return nil }
        guard size <= Int64(bytesMax) else { throw .tooLarge(asset: (path as NSString).lastPathComponent, source: path, bytesMax: bytesMax) }
        guard let data = FileManager.default.contents(atPath: path) else { throw .storage(path: path, reason: "unreadable") }
        guard data.count <= bytesMax else { throw .tooLarge(asset: (path as NSString).lastPathComponent, source: path, bytesMax: bytesMax) }
        return Array(data)
    }

    /// Marks a blob as just used, for the least-recently-used eviction.
    static func touch(_ path: String) {
        utimes(path, nil)
    }

    /// Regular files in `directory` with size and modification time.
    static func entries(_ directory: String) -> [(name: String, bytes: Int64, modified: Double)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.compactMap { name in
            var info = stat()
            guard stat("\(directory)/\(name)", &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return nil }
            let modified = Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9
            return (name, Int64(info.st_size), modified)
        }
    }
}
