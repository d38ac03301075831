import NIOCore
import UpkeepPKI

/// The bytes of one incoming stream (an upload on the server, a download on the client), in
/// order, with backpressure: the sender may only send what this side's window allows, and
/// credit goes back as the consumer takes chunks. Iterating verifies the ChunkEnd digest and
/// length at the end and throws `ProtocolError.digestMismatch` on a mismatch, so a consumer that
/// reaches the end normally has exactly the bytes the sender hashed. Iterate once.
public struct ChunkStream: AsyncSequence, Sendable {
    public typealias Element = ByteBuffer

    enum Event: Sendable {
        case chunk(ByteBuffer)
        case end(ChunkEndPayload)
    }

    let events: AsyncThrowingStream<Event, any Error>
    /// Gives consumed bytes back to the sender (hops to the connection's event loop).
    let returnCredit: @Sendable (Int) -> Void
    /// Credit goes back in batches of at least this many bytes.
    let creditBatchBytes: Int

    /// A stream that ends at once with no bytes (requests without an upload, responses without
    /// a download).
    public static var empty: ChunkStream {
        let (events, continuation) = AsyncThrowingStream<Event, any Error>.makeStream()
        continuation.finish()
        return ChunkStream(events: events, returnCredit: { _ in }, creditBatchBytes: 1)
    }

    public func makeAsyncIterator() -> Iterator {
        Iterator(base: events.makeAsyncIterator(), returnCredit: returnCredit, creditBatchBytes: creditBatchBytes)
    }

    public struct Iterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<Event, any Error>.AsyncIterator
        let returnCredit: @Sendable (Int) -> Void
        let creditBatchBytes: Int
        private let hasher = SHA256.Hasher()
        private var receivedBytes: UInt64 = 0
        private var unreturnedBytes = 0
        private var finished = false
        /// Digest and length, once the end was verified.
        public private(set) var summary: StreamSummary?

        init(base: AsyncThrowingStream<Event, any Error>.AsyncIterator, returnCredit: @escaping @Sendable (Int) -> Void,
             creditBatchBytes: Int) {
            self.base = base
            self.returnCredit = returnCredit
            self.creditBatchBytes = creditBatchBytes
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
                unreturnedBytes += bytes.readableBytes
                if unreturnedBytes >= creditBatchBytes {
                    returnCredit(unreturnedBytes)
                    unreturnedBytes = 0
                }
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

/// The connection's side of an incoming stream: checks the window, feeds the consumer.
/// Confined to the connection's event loop.
final class ChunkStreamProducer {
    let windowBytes: Int
    private let continuation: AsyncThrowingStream<ChunkStream.Event, any Error>.Continuation
    /// Received and not yet given back as credit.
    private(set) var outstandingBytes = 0
    private(set) var ended = false

    /// A producer and the stream its consumer reads.
    static func make(windowBytes: Int, returnCredit: @escaping @Sendable (Int) -> Void) -> (ChunkStreamProducer, ChunkStream) {
        let (events, continuation) = AsyncThrowingStream<ChunkStream.Event, any Error>.makeStream()
        let producer = ChunkStreamProducer(windowBytes: windowBytes, continuation: continuation)
        let stream = ChunkStream(events: events, returnCredit: returnCredit, creditBatchBytes: max(1, windowBytes / 4))
        return (producer, stream)
    }

    private init(windowBytes: Int, continuation: AsyncThrowingStream<ChunkStream.Event, any Error>.Continuation) {
        self.windowBytes = windowBytes
        self.continuation = continuation
    }

    deinit {
        // A producer dropped mid-stream must not look like a stream that ended empty.
        if !ended { continuation.finish(throwing: ProtocolError.connectionClosed("the stream was abandoned")) }
    }

    /// Hands a chunk to the consumer. False when it exceeds the window or comes after the end:
    /// the sender broke flow control.
    func receive(_ bytes: ByteBuffer) -> Bool {
        guard !ended, outstandingBytes + bytes.readableBytes <= windowBytes else { return false }
        outstandingBytes += bytes.readableBytes
        continuation.yield(.chunk(bytes))
        return true
    }

    /// Records credit given back; returns how much to announce in a WindowUpdate (0: nothing).
    func creditReturned(_ bytes: Int) -> Int {
        let returned = min(bytes, outstandingBytes)
        outstandingBytes -= returned
        return ended ? 0 : returned
    }

    /// The ChunkEnd arrived. False when the stream had already ended.
    func end(_ payload: ChunkEndPayload) -> Bool {
        guard !ended else { return false }
        ended = true
        continuation.yield(.end(payload))
        continuation.finish()
        return true
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
