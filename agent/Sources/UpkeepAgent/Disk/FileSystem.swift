import UpkeepCore
import UpkeepPOSIX

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A failed system call on a path, with errno and what to do when it is a common operator problem.
public struct FileSystemError: Error, Equatable, Sendable, CustomStringConvertible {
    public var operation: String
    public var path: String
    public var code: Int32

    public init(_ operation: String, _ path: String, code: Int32 = errno) {
        self.operation = operation
        self.path = path
        self.code = code
    }

    public var description: String {
        var text = "\(operation) \(path): \(String(cString: strerror(code)))"
        if code == ENOSPC { text += " (the file system is full; free space and retry)" }
        if code == EROFS { text += " (the file system is read-only)" }
        return text
    }
}

/// Which file a path names and whether it changed: device, inode, size and modification time.
/// A file whose digest was computed under one identity still has that digest while the identity
/// holds (hard links share it; a rename keeps it; any write moves the modification time).
public struct FileIdentity: Codable, Equatable, Sendable {
    public var device: UInt64
    public var inode: UInt64
    public var size: Int64
    public var modifiedNs: Int64

    public init(_ status: stat) {
        device = UInt64(status.st_dev)
        inode = UInt64(status.st_ino)
        size = Int64(status.st_size)
        modifiedNs = Int64(status.st_mtim.tv_sec) * 1_000_000_000 + Int64(status.st_mtim.tv_nsec)
    }
}

/// Thin POSIX helpers for the agent's durable file handling: every write loops over short writes,
/// every publication is a rename followed by an fsync of the directory.
public enum FileSystem {
    public static func exists(_ path: String) -> Bool {
        var status = stat()
        return stat(path, &status) == 0
    }

    public static func isSocket(_ path: String) -> Bool {
        var status = stat()
        return stat(path, &status) == 0 && status.st_mode & S_IFMT == S_IFSOCK
    }

    public static func isDirectory(_ path: String) -> Bool {
        var status = stat()
        return stat(path, &status) == 0 && status.st_mode & S_IFMT == S_IFDIR
    }

    public static func fileStatus(_ path: String) throws(FileSystemError) -> stat {
        var status = stat()
        guard stat(path, &status) == 0 else { throw FileSystemError("stat", path) }
        return status
    }

    public static func identity(_ path: String) -> FileIdentity? {
        (try? fileStatus(path)).map(FileIdentity.init)
    }

    /// Makes `to` a second name of `from` when that is still the file of identity `expected`
    /// (nothing is copied); false, with `to` absent, when it cannot be linked (another file
    /// system, a file system without links) or `from` is another file now.
    public static func linkIdentical(_ from: String, to: String, expected: FileIdentity) -> Bool {
        try? removeIfPresent(to)
        guard link(from, to) == 0 else { return false }
        guard identity(to) == expected else {
            unlink(to)
            return false
        }
        return true
    }

    /// Bytes an unprivileged writer may still use on the file system holding `path`.
    public static func freeBytes(_ path: String) throws(FileSystemError) -> Int64 {
        var info = statvfs()
        guard statvfs(path, &info) == 0 else { throw FileSystemError("statvfs", path) }
        return Int64(info.f_bavail) * Int64(info.f_frsize)
    }

    public static func readText(_ path: String, bytesMax: Int) throws(FileSystemError) -> String {
        String(decoding: try readBytes(path, bytesMax: bytesMax), as: UTF8.self)
    }

    public static func readBytes(_ path: String, bytesMax: Int) throws(FileSystemError) -> [UInt8] {
        do {
            return try BoundedRead.bytes(path, bytesMax: bytesMax)
        } catch {
            switch error {
            case .open(let code): throw FileSystemError("open", path, code: code)
            case .read(let code): throw FileSystemError("read", path, code: code)
            case .tooLarge: throw FileSystemError("read", path, code: EFBIG)
            }
        }
    }

    /// Writes every byte, retrying short writes and EINTR.
    public static func writeAll(_ descriptor: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws(FileSystemError) {
        var offset = 0
        while offset < bytes.count {
            let count = write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
            if count < 0 {
                if errno == EINTR { continue }
                throw FileSystemError("write", path)
            }
            offset += count
        }
    }

    public static func writeAll(_ descriptor: Int32, _ bytes: [UInt8], path: String) throws(FileSystemError) {
        let result = bytes.withUnsafeBytes { raw in
            Result { () throws(FileSystemError) in try writeAll(descriptor, raw, path: path) }
        }
        try result.get()
    }

    public static func fsyncDirectory(_ path: String) throws(FileSystemError) {
        let descriptor = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw FileSystemError("open", path) }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else { throw FileSystemError("fsync", path) }
    }

    /// `mkdir -p` with `mode` for the directories it creates.
    public static func makeDirectories(_ path: String, mode: mode_t = 0o700) throws(FileSystemError) {
        if isDirectory(path) { return }
        let parent = PathName.directory(path)
        if parent != path, !parent.isEmpty { try makeDirectories(parent, mode: 0o755) }
        guard mkdir(path, mode) == 0 || errno == EEXIST else { throw FileSystemError("mkdir", path) }
    }

    public static func removeIfPresent(_ path: String) throws(FileSystemError) {
        guard unlink(path) == 0 || errno == ENOENT else { throw FileSystemError("unlink", path) }
    }

    /// Removes `path` and, for a directory, everything under it (symbolic links are removed, not
    /// followed); nothing there is fine.
    public static func removeTree(_ path: String) throws(FileSystemError) {
        var status = stat()
        guard lstat(path, &status) == 0 else {
            if errno == ENOENT { return }
            throw FileSystemError("lstat", path)
        }
        guard status.st_mode & S_IFMT == S_IFDIR else { return try removeIfPresent(path) }
        for name in try list(path) { try removeTree("\(path)/\(name)") }
        guard rmdir(path) == 0 || errno == ENOENT else { throw FileSystemError("rmdir", path) }
    }

    /// Renames `from` over `to` atomically and makes the rename durable.
    public static func publish(_ from: String, over to: String) throws(FileSystemError) {
        guard rename(from, to) == 0 else { throw FileSystemError("rename", to) }
        try fsyncDirectory(PathName.directory(to))
    }

    /// Writes `bytes` to a temporary file beside `path`, fsyncs it and renames it over `path`.
    public static func writeAtomically(_ bytes: [UInt8], to path: String, mode: mode_t = 0o600) throws(FileSystemError) {
        let temporary = "\(PathName.directory(path))/.\(PathName.base(path)).tmp"
        try removeIfPresent(temporary)
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard descriptor >= 0 else { throw FileSystemError("create", temporary) }
        do throws(FileSystemError) {
            try writeAll(descriptor, bytes, path: temporary)
            guard fsync(descriptor) == 0 else { throw FileSystemError("fsync", temporary) }
            close(descriptor)
        } catch {
            close(descriptor)
            unlink(temporary)
            throw error
        }
        try publish(temporary, over: path)
    }

    /// Names in a directory, without `.` and `..`.
    public static func list(_ path: String) throws(FileSystemError) -> [String] {
        guard let directory = opendir(path) else { throw FileSystemError("opendir", path) }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != ".", name != ".." { names.append(name) }
        }
        return names.sorted()
    }
}
