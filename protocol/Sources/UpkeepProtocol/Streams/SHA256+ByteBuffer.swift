import NIOCore
import UpkeepPKI

extension SHA256.Hasher {
    /// Feeds the readable bytes of `buffer` (its reader index does not move).
    public func update(_ buffer: ByteBuffer) {
        buffer.withUnsafeReadableBytes { update($0) }
    }
}
