import NIOCore

/// The bytes of one outgoing stream (an upload from the client, a download from the server).
/// Any buffer sizes are fine: they are cut to frame size and credit. A source may be started
/// more than once (a reconnecting client sends an upload again after a lost connection), so
/// each start must produce the whole stream from its beginning.
public struct ChunkSource: Sendable {
    let produce: @Sendable (_ emit: (ByteBuffer) async throws -> Void) async throws -> Void

    /// A source that calls `emit` for each buffer, in order, then returns.
    public init(_ produce: @escaping @Sendable (_ emit: (ByteBuffer) async throws -> Void) async throws -> Void) {
        self.produce = produce
    }

    /// The buffers of `sequence`, in order.
    public init<Buffers: AsyncSequence & Sendable>(_ sequence: Buffers) where Buffers.Element == ByteBuffer {
        produce = { emit in
            for try await buffer in sequence { try await emit(buffer) }
        }
    }

    /// The bytes of one buffer.
    public init(bytes: ByteBuffer) {
        produce = { emit in try await emit(bytes) }
    }

    /// Sends the whole source as Chunk payloads through `send`, each within the credit `gate`
    /// allows, and returns the ChunkEnd to send after them.
    func send(through gate: CreditGate, _ send: (ByteBuffer) -> Void) async throws -> ChunkEndPayload {
        let hasher = SHA256Hasher()
        var totalBytes: UInt64 = 0
        try await produce { buffer in
            var rest = buffer
            while rest.readableBytes > 0 {
                let bytes = try await gate.take(upTo: min(rest.readableBytes, FrameLimits.chunkPayloadBytesMax))
                guard let piece = rest.readSlice(length: bytes) else { preconditionFailure("slice within readable bytes") }
                hasher.update(piece)
                totalBytes += UInt64(bytes)
                send(piece)
            }
        }
        return ChunkEndPayload(sha256: hasher.finish(), totalBytes: totalBytes)
    }
}
