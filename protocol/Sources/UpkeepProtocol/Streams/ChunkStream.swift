import NIOCore
import UpkeepPKI

/// The bytes of one incoming stream (an upload on the server, a download on the client), in
/// order, with backpressure: the sender may only send what this side's window allows, and
/// the connection's session returns credit as the consumer takes chunks. Iterating verifies the ChunkEnd digest and
/// length at the end and throws `ProtocolError.digestMismatch` on a mismatch, so a consumer that
/// reaches the end normally has exactly the bytes the sender hashed. Iterate once.
public struct ChunkStream: AsyncSequence, Sendable {
    public typealias Element = ByteBuffer

    enum Event: Sendable {
        case chunk(ByteBuffer)
        case end(ChunkEndPayload)
    }

    let events: AsyncThrowingStream<Event, any Error>
    /// Reports bytes the consumer took (hops to the connection's event loop).
    let consumed: @Sendable (Int) -> Void

    /// A stream that ends at once with no bytes (requests without an upload, responses without
    /// a download).
    public static var empty: ChunkStream {
        let (events, continuation) = AsyncThrowingStream<Event, any Error>.makeStream()
        continuation.finish()
        return ChunkStream(events: events, consumed: { _ in })
    }

    public func makeAsyncIterator() -> Iterator {
        Iterator(base: events.makeAsyncIterator(), consumed: consumed)
    }

    public struct Iterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<Event, any Error>.AsyncIterator
        let consumed: @Sendable (Int) -> Void
        private let hasher = SHA256.Hasher()
        private var receivedBytes: UInt64 = 0
        private var finished = false
        /// Digest and length, once the end was verified.
        public private(set) var summary: StreamSummary?

        init(base: AsyncThrowingStream<Event, any Error>.AsyncIterator, consumed: @escaping @Sendable (Int) -> Void) {
            self.base = base
            self.consumed = consumed
        }

        public mutating func next() async throws -> ByteBuffer? {
            guard !finished else { return nil }
            let event: Event?
            do {
                event = try await base.next()
            } catch {
                finished = true
                throw error
            }
            switch event {
            case nil:
                finished = true
                // The stream also ends early when the consuming task is cancelled: never let that
                // look like a complete stream.
                if Task.isCancelled { throw CancellationError() }
                return nil
            case .chunk(let bytes):
                hasher.update(bytes)
                receivedBytes += UInt64(bytes.readableBytes)
                consumed(bytes.readableBytes)
                return bytes
            case .end(let end):
                finished = true
                let digest = hasher.finish()
                guard digest == end.sha256, receivedBytes == end.totalBytes else {
                    throw ProtocolError.digestMismatch(
                        "received \(receivedBytes) bytes with sha256 \(SHA256Hex(digest: digest)), sender announced \(end.totalBytes) bytes with sha256 \(SHA256Hex(digest: end.sha256))")
                }
                summary = StreamSummary(sha256: SHA256Hex(digest: digest), bytes: Int64(receivedBytes))
                return nil
            }
        }
    }

    /// Reads the whole stream, handing each chunk to `body`, and returns the verified digest and
    /// length (nil for a stream that ended without bytes or ChunkEnd, like `empty`).
    @discardableResult
    public func consume(_ body: (ByteBuffer) async throws -> Void) async throws -> StreamSummary? {
        var iterator = makeAsyncIterator()
        while let chunk = try await iterator.next() {
            try await body(chunk)
        }
        return iterator.summary
    }
}

/// What a verified stream held.
public struct StreamSummary: Equatable, Sendable {
    public var sha256: SHA256Hex
    public var bytes: Int64
}

/// The connection's side of an incoming stream: feeds the consumer what the session delivers.
/// The session has already checked every chunk against the window, so the buffer here never
/// holds more than one window. Confined to the connection's event loop.
final class ChunkStreamProducer {
    private let continuation: AsyncThrowingStream<ChunkStream.Event, any Error>.Continuation
    private var ended = false

    /// A producer and the stream its consumer reads; `consumed` hears of every chunk taken.
    static func make(consumed: @escaping @Sendable (Int) -> Void) -> (ChunkStreamProducer, ChunkStream) {
        let (events, continuation) = AsyncThrowingStream<ChunkStream.Event, any Error>.makeStream()
        return (ChunkStreamProducer(continuation: continuation), ChunkStream(events: events, consumed: consumed))
    }

    private init(continuation: AsyncThrowingStream<ChunkStream.Event, any Error>.Continuation) {
        self.continuation = continuation
    }

    deinit {
        // A producer dropped mid-stream must not look like a stream that ended empty.
        if !ended { continuation.finish(throwing: ProtocolError.connectionClosed("the stream was abandoned")) }
    }

    /// Hands a chunk to the consumer.
    func receive(_ bytes: ByteBuffer) {
        guard !ended else { return }
        continuation.yield(.chunk(bytes))
    }

    /// The ChunkEnd arrived: the consumer verifies it.
    func end(_ payload: ChunkEndPayload) {
        guard !ended else { return }
        ended = true
        continuation.yield(.end(payload))
        continuation.finish()
    }

    /// The stream cannot complete (connection closed, request cancelled).
    func fail(_ error: any Error) {
        guard !ended else { return }
        ended = true
        continuation.finish(throwing: error)
    }

    /// The stream will carry no bytes at all (a response without a download).
    func finishEmpty() {
        guard !ended else { return }
        ended = true
        continuation.finish()
    }
}

@available(*, unavailable)
extension ChunkStreamProducer: Sendable {}
