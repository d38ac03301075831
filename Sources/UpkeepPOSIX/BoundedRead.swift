#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Whole small files (configuration, keys, certificates, journals) read with `open`/`read`,
/// bounded, without Foundation: the agent reads several at every start.
public enum BoundedRead {
    public enum Failure: Error, Equatable, Sendable {
        /// `open` failed with this errno.
        case open(Int32)
        /// `read` failed with this errno.
        case read(Int32)
        /// The file holds more than the bound.
        case tooLarge
    }

    /// Every byte of `path`, which may hold at most `bytesMax`; EINTR is retried.
    public static func bytes(_ path: String, bytesMax: Int) throws(Failure) -> [UInt8] {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw .open(errno) }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: min(64 * 1024, max(bytesMax + 1, 1)))
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw .read(errno)
            }
            if count == 0 { return bytes }
            guard bytes.count + count <= bytesMax else { throw .tooLarge }
            bytes.append(contentsOf: chunk[0..<count])
        }
    }
}
