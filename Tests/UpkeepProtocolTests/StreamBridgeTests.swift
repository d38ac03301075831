import NIOCore
import Synchronization
import Testing
@testable import UpkeepProtocol
import UpkeepPKI

/// The two pieces between the session machines and the code that reads or writes a stream,
/// without a connection: the consumer's `ChunkStream` and the sender's `CreditGate`.
@Suite(.timeLimit(.minutes(1))) struct StreamBridgeTests {
    static func digest(_ bytes: [UInt8]) -> [UInt8] {
        let hasher = SHA256.Hasher()
        hasher.update(bytes)
        return hasher.finish()
    }

    @Test("§7.1 a stream whose bytes do not match its ChunkEnd fails with digestMismatch: its data MUST NOT be used")
    func aStreamWhoseChunkEndDoesNotMatchFails() async throws {
        let consumed = ConsumedBytes()
        let (producer, stream) = ChunkStreamProducer.make { consumed.add($0) }
        producer.receive(ByteBuffer(bytes: [1, 2, 3]))
        producer.end(ChunkEndPayload(sha256: Self.digest([1, 2, 4]), totalBytes: 3))
        await #expect {
            try await stream.consume { _ in }
        } throws: { error in
            guard case ProtocolError.digestMismatch = error else { return false }
            return true
        }
        #expect(consumed.total == 3, "the consumer's reading is reported for credit even so")

        let (short, shortStream) = ChunkStreamProducer.make { _ in }
        short.receive(ByteBuffer(bytes: [1, 2, 3]))
        short.end(ChunkEndPayload(sha256: Self.digest([1, 2, 3]), totalBytes: 4))
        await #expect(throws: ProtocolError.self) { try await shortStream.consume { _ in } }
    }

    @Test("§7.1 a stream that matches its ChunkEnd ends with the verified digest")
    func aMatchingStreamEndsVerified() async throws {
        let (producer, stream) = ChunkStreamProducer.make { _ in }
        producer.receive(ByteBuffer(bytes: [1, 2]))
        producer.receive(ByteBuffer(bytes: [3]))
        producer.end(ChunkEndPayload(sha256: Self.digest([1, 2, 3]), totalBytes: 3))
        var received: [UInt8] = []
        let summary = try await stream.consume { received += $0.readableBytesView }
        #expect(received == [1, 2, 3])
        #expect(summary == StreamSummary(sha256: SHA256Hex(digest: Self.digest([1, 2, 3])), bytes: 3))
    }

    @Test("§7.2 a sender MUST NOT send more than its credit: it waits until credit is granted")
    func aSenderWaitsForCredit() async throws {
        let gate = CreditGate(creditBytes: 10)
        #expect(try await gate.take(upTo: 4) == 4)
        #expect(try await gate.take(upTo: 100) == 6, "never more than was granted")
        let waiting = Task { try await gate.take(upTo: 100) }
        try await Task.sleep(for: .milliseconds(50))
        gate.grant(7)
        #expect(try await waiting.value == 7)
        gate.fail(CancellationError())
        await #expect(throws: CancellationError.self) { try await gate.take(upTo: 1) }
    }
}

/// Sums what a stream reports consumed.
final class ConsumedBytes: Sendable {
    private let bytes = Mutex(0)
    func add(_ count: Int) { bytes.withLock { $0 += count } }
    var total: Int { bytes.withLock { $0 } }
}
