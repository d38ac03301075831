import UpkeepPKI

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension FileSystem {
    /// The SHA-256 of a whole file as 64 lowercase hex digits, read in 1 MiB pieces.
    public static func sha256(ofFile path: String) throws(FileSystemError) -> String {
        let chunks = try Chunks(path: path)
        let hasher = SHA256.Hasher()
        while let chunk = try chunks.next() {
            chunk.withUnsafeBytes { hasher.update($0) }
        }
        return hasher.finishHex()
    }

    /// Copies `from` to the new file `to` (mode `mode`, whatever the umask) and fsyncs it; `each`
    /// sees every piece on its way (to hash it). On failure `to` is removed.
    public static func copy(_ from: String, to: String, mode: mode_t,
                            each: (UnsafeRawBufferPointer) -> Void = { _ in }) throws(FileSystemError) {
        let chunks = try Chunks(path: from)
        let output = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard output >= 0 else { throw FileSystemError("create", to) }
        do throws(FileSystemError) {
            _ = try append(chunks, to: output, path: to, each: each)
            guard fchmod(output, mode) == 0 else { throw FileSystemError("chmod", to) }
            guard fsync(output) == 0 else { throw FileSystemError("fsync", to) }
        } catch {
            close(output)
            unlink(to)
            throw error
        }
        close(output)
    }

    /// Writes what `chunks` reads to `descriptor` (the file at `path`), each piece seen by `each`
    /// first, and stops after the piece that passes `limit` bytes (not written): the bytes read.
    static func append(_ chunks: Chunks, to descriptor: Int32, path: String, limit: Int = .max,
                       each: (UnsafeRawBufferPointer) -> Void = { _ in }) throws(FileSystemError) -> Int {
        var read = 0
        while let chunk = try chunks.next() {
            read += chunk.count
            guard read <= limit else { break }
            let result = chunk.withUnsafeBytes { raw in
                each(raw)
                return Result { () throws(FileSystemError) in try writeAll(descriptor, raw, path: path) }
            }
            try result.get()
        }
        return read
    }

    /// A file read front to back in pieces of at most `chunkBytes` (hashing, staging from disk),
    /// with `open`/`read`; EINTR is retried. The descriptor closes with the reader.
    public final class Chunks: @unchecked Sendable {
        private let path: String
        private let descriptor: Int32
        private var buffer: [UInt8]

        public init(path: String, chunkBytes: Int = 1 << 20) throws(FileSystemError) {
            descriptor = open(path, O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else { throw FileSystemError("open", path) }
            self.path = path
            buffer = [UInt8](repeating: 0, count: chunkBytes)
        }

        deinit { close(descriptor) }

        /// The next piece, or nil at the end of the file. The piece shares the reader's buffer
        /// until the next call (a piece kept longer is copied then).
        public func next() throws(FileSystemError) -> ArraySlice<UInt8>? {
            while true {
                let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
                if count < 0 {
                    if errno == EINTR { continue }
                    throw FileSystemError("read", path)
                }
                return count == 0 ? nil : buffer[0..<count]
            }
        }
    }
}
