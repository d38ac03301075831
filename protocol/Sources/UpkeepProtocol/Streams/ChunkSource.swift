import NIOCore
import UpkeepPKI

/// The bytes of one outgoing stream (an upload from the client, a download from the server).
/// Any buffer sizes are fine: they are cut to frame size and credit. A source may be started
/// more than once (a reconnecting client sends an upload again after a lost connection), so
/// each start must produce the whole stream from its beginning.
public struct ChunkSource: Sendable {
    let produce: @Sendable (_ emit: (ByteBuffer) async throws -> Void) async throws -> Void
    /// The digest announced in ChunkEnd without hashing the bytes here (see `init(sha256:_:)`).
    let knownDigest: [UInt8]?

    /// A source that calls `emit` for each buffer, in order, then returns.
    public init(_ produce: @escaping @Sendable (_ emit: (ByteBuffer) async throws -> Void) async throws -> Void) {
        self.produce = produce
        knownDigest = nil
    }

    /// A source whose SHA-256 the caller already knows and trusts (an artifact checked against
    /// its release's sha256sum file): ChunkEnd announces `sha256` and the sending side does not
    /// hash every byte a second time. The receiver still hashes what arrives and compares, so a
    /// source that does not produce exactly these bytes fails the call with `digestMismatch`.
    public init(sha256: SHA256Hex, _ produce: @escaping @Sendable (_ emit: (ByteBuffer) async throws -> Void) async throws -> Void) {
        self.produce = produce
        knownDigest = sha256.digestBytes
    }

    /// The buffers of `sequence`, in order.
    public init<Buffers: AsyncSequence & Sendable>(_ sequence: Buffers) where Buffers.Element == ByteBuffer {
        produce = { emit in
            for try await buffer in sequence { try await emit(buffer) }
        }
        knownDigest = nil
    }

    /// The bytes of one buffer.
    public init(bytes: ByteBuffer) {
        produce = { emit in try await emit(bytes) }
        knownDigest = nil
    }

    /// Sends the whole source as Chunk payloads through `send`, each within the credit `gate`
    /// allows and once the connection is writable, and returns the ChunkEnd to send after them.
    /// `send` returns once the piece is in the channel (so the gate has heard of the channel's
    /// writability before the next piece is taken).
    func send(through gate: CreditGate, _ send: (ByteBuffer) async throws -> Void) async throws -> ChunkEndPayload {
        let hasher = knownDigest == nil ? SHA256.Hasher() : nil
        var totalBytes: UInt64 = 0
        try await produce { buffer in
            var rest = buffer
            while rest.readableBytes > 0 {
                let bytes = try await gate.take(upTo: min(rest.readableBytes, FrameLimits.chunkPayloadBytesMax))
                guard let piece = rest.readSlice(length: bytes) else { preconditionFailure("slice within readable bytes") }
                hasher?.update(piece)
                totalBytes += UInt64(bytes)
                try await send(piece)
            }
        }
        guard let digest = knownDigest ?? hasher?.finish() else { preconditionFailure("a hasher runs when no digest is known") }
        return ChunkEndPayload(sha256: digest, totalBytes: totalBytes)
    }
}
