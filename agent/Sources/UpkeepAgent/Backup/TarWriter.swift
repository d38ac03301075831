#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import UpkeepAgentCore

/// Writes a POSIX ustar archive of regular files (names under 100 bytes), for the SQLite backup:
/// the database copy and the cluster token, with their modes. Each file is streamed through in
/// 1 MiB pieces, so a large datastore costs the agent no more memory than a small one
/// (bench/agent-peak).
struct TarWriter {
    private let descriptor: Int32
    private let path: String

    init(path: String) throws(AgentFailure) {
        self.path = path
        unlink(path)
        descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw .io(FileSystemError("create", path)) }
    }

    func add(file source: String, as name: String, mode: Int, modifiedUnix: Int) throws(AgentFailure) {
        precondition(name.utf8.count < 100, "tar member names stay under 100 bytes")
        let size: Int
        let chunks: FileSystem.Chunks
        do {
            chunks = try FileSystem.Chunks(path: source)
            size = Int(try FileSystem.fileStatus(source).st_size)
        } catch {
            throw .io(error)
        }
        var header = [UInt8](repeating: 0, count: 512)
        func put(_ text: String, at offset: Int) {
            for (index, byte) in text.utf8.enumerated() { header[offset + index] = byte }
        }
        func octal(_ value: Int, width: Int) -> String {
            let digits = String(value, radix: 8)
            return String(repeating: "0", count: max(0, width - 1 - digits.count)) + digits
        }
        put(name, at: 0)
        put(octal(mode, width: 8), at: 100)
        put(octal(0, width: 8), at: 108)
        put(octal(0, width: 8), at: 116)
        put(octal(size, width: 12), at: 124)
        put(octal(modifiedUnix, width: 12), at: 136)
        put("        ", at: 148)
        header[156] = UInt8(ascii: "0")
        put("ustar", at: 257)
        put("00", at: 263)
        put("root", at: 265)
        put("root", at: 297)
        let checksum = header.reduce(0) { $0 + Int($1) }
        put(octal(checksum, width: 7), at: 148)
        header[155] = UInt8(ascii: " ")
        let padding = [UInt8](repeating: 0, count: (512 - size % 512) % 512)
        let written: Int
        do {
            try FileSystem.writeAll(descriptor, header, path: path)
            written = try FileSystem.append(chunks, to: descriptor, path: path, limit: size)
            try FileSystem.writeAll(descriptor, padding, path: path)
        } catch {
            throw .io(error)
        }
        guard written == size else {
            throw AgentFailure(.io, "\(source) changed while it was archived (\(size) bytes when it began, \(written) read); take the backup again")
        }
    }

    /// Two zero blocks end the archive; the file is fsynced and closed.
    func finish() throws(AgentFailure) {
        defer { close(descriptor) }
        do {
            try FileSystem.writeAll(descriptor, [UInt8](repeating: 0, count: 1024), path: path)
        } catch {
            throw .io(error)
        }
        guard fsync(descriptor) == 0 else { throw .io(FileSystemError("fsync", path)) }
    }
}
