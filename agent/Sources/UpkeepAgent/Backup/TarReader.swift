#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import UpkeepAgentCore
import UpkeepCore

/// Reads the POSIX ustar archives `TarWriter` writes (a SQLite backup: `server/db/state.db` and
/// `server/token`): the regular members' names, sizes and offsets, and a member copied out to a
/// file. Nothing is held in memory beyond a header and a 1 MiB copy buffer.
struct TarReader {
    struct Member: Equatable {
        var name: String
        var bytes: Int64
        /// Where the member's contents start in the archive.
        var offset: Int64
    }

    let path: String
    /// Regular files only; other member types (directories, links) are skipped.
    let members: [Member]

    /// Members read at most: a backup has two.
    static let membersMax = 64

    init(path: String) throws(AgentFailure) {
        self.path = path
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw .io(FileSystemError("open", path)) }
        defer { close(descriptor) }
        var members: [Member] = []
        var offset: Int64 = 0
        var header = [UInt8](repeating: 0, count: 512)
        for _ in 0..<Self.membersMax {
            let count = header.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, 512, off_t(offset)) }
            guard count == 512 else { throw AgentFailure(.badRequest, "\(PathName.base(path)) is not a tar archive: it ends inside a header") }
            if header.allSatisfy({ $0 == 0 }) { break }
            let name = Self.text(header, 0, 100)
            let prefix = Self.text(header, 345, 155)
            guard let size = Int64(Self.text(header, 124, 12).trimmingWhitespace(), radix: 8), size >= 0 else {
                throw AgentFailure(.badRequest, "\(PathName.base(path)) is not a tar archive: member \(name) has no size")
            }
            let type = header[156]
            if type == UInt8(ascii: "0") || type == 0 {
                members.append(Member(name: prefix.isEmpty ? name : "\(prefix)/\(name)", bytes: size, offset: offset + 512))
            }
            offset += 512 + (size + 511) / 512 * 512
        }
        self.members = members
    }

    func member(_ name: String) -> Member? { members.first { $0.name == name } }

    /// Copies `member` to a new file `to` (mode 0600, fsynced); an existing `to` is replaced.
    func extract(_ member: Member, to destination: String) throws(AgentFailure) {
        let source = open(path, O_RDONLY | O_CLOEXEC)
        guard source >= 0 else { throw .io(FileSystemError("open", path)) }
        defer { close(source) }
        unlink(destination)
        let target = open(destination, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard target >= 0 else { throw .io(FileSystemError("create", destination)) }
        defer { close(target) }
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var copied: Int64 = 0
        while copied < member.bytes {
            let want = Int(min(Int64(buffer.count), member.bytes - copied))
            let count = buffer.withUnsafeMutableBytes { pread(source, $0.baseAddress, want, off_t(member.offset + copied)) }
            guard count > 0 else { throw AgentFailure(.badRequest, "\(PathName.base(path)) ends inside \(member.name)") }
            let written = buffer.withUnsafeBytes { raw in
                Result { () throws(FileSystemError) in try FileSystem.writeAll(target, UnsafeRawBufferPointer(rebasing: raw[0..<count]), path: destination) }
            }
            do { try written.get() } catch { throw .io(error) }
            copied += Int64(count)
        }
        guard fsync(target) == 0 else { throw .io(FileSystemError("fsync", destination)) }
    }

    private static func text(_ header: [UInt8], _ offset: Int, _ width: Int) -> String {
        let field = header[offset..<offset + width]
        let end = field.firstIndex(of: 0) ?? field.endIndex
        return String(decoding: field[offset..<end], as: UTF8.self)
    }
}
