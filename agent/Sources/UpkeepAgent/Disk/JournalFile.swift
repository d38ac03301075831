#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import UpkeepAgentCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The operation journal: one JSON `JournalRecord` per line, appended and fdatasynced before the
/// agent acts on it.
///
/// Why a file and not SQLite: the agent writes a few records per operation and reads them all
/// once at start; an append-only file needs no library, no schema migrations and no WAL files,
/// and its one failure mode (a torn last line after a crash mid-append) is detected and dropped
/// here. When it grows past `recordsMax` lines it is rewritten as one snapshot record (written
/// beside it, fsynced, renamed over it).
public final class JournalFile {
    public static let recordsMax = 2_000
    public let path: String
    private var descriptor: Int32 = -1
    public private(set) var recordCount = 0
    private let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    public init(path: String) {
        self.path = path
    }

    deinit { if descriptor >= 0 { close(descriptor) } }

    /// Reads every record. A last line cut short by a crash is dropped and cut from the file; a
    /// damaged line before the last is an error that names it.
    public func open() throws(AgentFailure) -> [JournalRecord] {
        let bytes: [UInt8]
        if FileSystem.exists(path) {
            do { bytes = try FileSystem.readBytes(path, bytesMax: 256 << 20) } catch { throw .io(error) }
        } else {
            bytes = []
        }
        var records: [JournalRecord] = []
        var offset = 0
        var validBytes = 0
        var lineNumber = 0
        let decoder = JSONDecoder()
        while offset < bytes.count {
            lineNumber += 1
            let newline = bytes[offset...].firstIndex(of: UInt8(ascii: "\n"))
            let end = newline ?? bytes.count
            let line = bytes[offset..<end]
            let isLast = newline == nil || newline == bytes.count - 1
            do {
                guard newline != nil else { throw FileSystemError("read", path, code: EIO) }  // torn
                records.append(try decoder.decode(JournalRecord.self, from: Data(line)))
                validBytes = end + 1
            } catch {
                guard isLast else {
                    throw AgentFailure(.io, "\(path) line \(lineNumber) is damaged (\(error)); move the file aside to start with an empty journal (the agent then forgets its recorded operations and kept binary)")
                }
                break
            }
            offset = end + 1
        }
        descriptor = Glibc.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw .io(FileSystemError("open", path)) }
        if validBytes < bytes.count {
            guard ftruncate(descriptor, off_t(validBytes)) == 0, fsync(descriptor) == 0 else {
                throw .io(FileSystemError("truncate", path))
            }
        }
        recordCount = records.count
        return records
    }

    /// Appends and syncs one record. When this throws, the agent must stop: it cannot promise
    /// to remember what it is about to do.
    public func append(_ record: JournalRecord) throws(AgentFailure) {
        precondition(descriptor >= 0, "append before open")
        var line: [UInt8]
        do { line = Array(try encoder.encode(record)) } catch { preconditionFailure("journal record does not encode: \(error)") }
        line.append(UInt8(ascii: "\n"))
        do {
            try FileSystem.writeAll(descriptor, line, path: path)
        } catch {
            throw .io(error)
        }
        guard fdatasync(descriptor) == 0 else { throw .io(FileSystemError("fdatasync", path)) }
        recordCount += 1
    }

    /// True when the file should be rewritten as a snapshot.
    public var needsCompaction: Bool { recordCount > Self.recordsMax }

    /// Replaces the file with one snapshot of `state`.
    public func compact(_ state: JournalState) throws(AgentFailure) {
        var line: [UInt8]
        do { line = Array(try encoder.encode(JournalRecord.snapshot(state))) } catch { preconditionFailure("snapshot does not encode: \(error)") }
        line.append(UInt8(ascii: "\n"))
        do {
            try FileSystem.writeAtomically(line, to: path, mode: 0o600)
        } catch {
            throw .io(error)
        }
        if descriptor >= 0 { close(descriptor) }
        descriptor = Glibc.open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
        guard descriptor >= 0 else { throw .io(FileSystemError("open", path)) }
        recordCount = 1
    }
}
