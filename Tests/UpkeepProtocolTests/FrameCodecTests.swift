import NIOCore
import NIOEmbedded
import Testing
import UpkeepProtocol

/// The two ways to read frames: the `ByteToMessageDecoder` (tools, fuzzing) and the
/// connections' `FrameReader`, which must behave the same.
enum FrameReading: String, CaseIterable, Sendable {
    case byteToMessageDecoder
    case frameReader

    func makeHandler() -> any ChannelInboundHandler {
        switch self {
        case .byteToMessageDecoder: ByteToMessageHandler(FrameDecoder())
        case .frameReader: FrameReader()
        }
    }
}

/// The frame codec on an EmbeddedChannel: delivery patterns, refusals, leftovers.
@Suite struct FrameCodecTests {
    private func makeChannel(_ reading: FrameReading = .frameReader) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers(reading.makeHandler(), FrameEncoder())
        return channel
    }

    private func bytes(_ frames: [Frame]) throws -> ByteBuffer {
        var all = ByteBuffer()
        for frame in frames {
            var one = try FrameEncoder.encode(frame)
            all.writeBuffer(&one)
        }
        return all
    }

    private func sample() throws -> [Frame] {
        [
            try Frame(.hello(Hello(software: "upkeep test")), requestID: 0),
            try Frame(.request(RequestEnvelope(.cordon(CordonRequest(operationID: "op-1")))), requestID: 1),
            Frame.chunk(ByteBuffer(bytes: Array(0...255)), requestID: 1),
            try Frame(.cancel, requestID: 1),
            try Frame(.ping(42), requestID: 0),
        ]
    }

    private func readAll(_ channel: EmbeddedChannel) throws -> [Frame] {
        var frames: [Frame] = []
        while let frame = try channel.readInbound(as: Frame.self) { frames.append(frame) }
        return frames
    }

    @Test(arguments: FrameReading.allCases)
    func framesDeliveredAllAtOnceDecodeInOrder(reading: FrameReading) throws {
        let channel = try makeChannel(reading)
        try channel.writeInbound(try bytes(sample()))
        #expect(try readAll(channel) == sample())
        #expect(try channel.finish().isClean)
    }

    @Test(arguments: FrameReading.allCases)
    func framesDeliveredByteByByteDecodeInOrder(reading: FrameReading) throws {
        let channel = try makeChannel(reading)
        let all = try bytes(sample())
        var decoded: [Frame] = []
        for byte in all.readableBytesView {
            try channel.writeInbound(ByteBuffer(bytes: [byte]))
            decoded += try readAll(channel)
        }
        #expect(decoded == (try sample()))
        #expect(try channel.finish().isClean)
    }

    @Test(arguments: FrameReading.allCases, [(FrameType.request, UInt32(1 << 20) + 1), (.chunk, UInt32(256 << 10) + 1), (.response, .max)])
    func oversizeLengthIsRefusedFromTheHeaderAlone(reading: FrameReading, limit: (FrameType, UInt32)) throws {
        let (type, length) = limit
        let channel = try makeChannel(reading)
        var header = ByteBuffer(bytes: [0x55, 0x4B, 1, type.rawValue, 0, 0, 0, 1])
        header.writeInteger(length)
        // Only the 12 header bytes arrive: the refusal cannot depend on buffering the payload.
        #expect(throws: FrameError.badPayloadLength(type: type, bytes: length, allowed: type.payloadBytesRange)) {
            try channel.writeInbound(header)
        }
        #expect(try readAll(channel).isEmpty)
        _ = try? channel.finish()
    }

    @Test(arguments: FrameReading.allCases)
    func garbageIsRefusedAtItsFirstByte(reading: FrameReading) throws {
        let channel = try makeChannel(reading)
        #expect(throws: FrameError.badMagic(UInt8(ascii: "G"), 0)) {
            try channel.writeInbound(ByteBuffer(bytes: Array("G".utf8)))
        }
        // The decoder stays failed: later bytes are refused, not decoded.
        #expect(throws: ByteToMessageDecoderError.self) { try channel.writeInbound(try bytes(sample())) }
        #expect(try readAll(channel).isEmpty)
        _ = try? channel.finish()

        let secondByte = try makeChannel(reading)
        #expect(throws: FrameError.badMagic(0x55, UInt8(ascii: "X"))) {
            try secondByte.writeInbound(ByteBuffer(bytes: [0x55, UInt8(ascii: "X")]))
        }
        _ = try? secondByte.finish()
    }

    @Test(arguments: FrameReading.allCases)
    func unknownTypeAndVersionAreRefused(reading: FrameReading) throws {
        let unknownType = try makeChannel(reading)
        #expect(throws: FrameError.unknownFrameType(0x0E)) {
            try unknownType.writeInbound(ByteBuffer(bytes: [0x55, 0x4B, 1, 0x0E]))
        }
        _ = try? unknownType.finish()

        let newerVersion = try makeChannel(reading)
        #expect(throws: FrameError.unsupportedFrameVersion(2)) {
            try newerVersion.writeInbound(ByteBuffer(bytes: [0x55, 0x4B, 2]))
        }
        _ = try? newerVersion.finish()
    }

    @Test(arguments: FrameReading.allCases)
    func requestIDRulesAreEnforced(reading: FrameReading) throws {
        let channel = try makeChannel(reading)
        #expect(throws: FrameError.badRequestID(type: .request, requestID: 0)) {
            try channel.writeInbound(ByteBuffer(bytes: [0x55, 0x4B, 1, 0x03, 0, 0, 0, 0, 0, 0, 0, 2]))
        }
        _ = try? channel.finish()
    }

    @Test(arguments: FrameReading.allCases)
    func truncatedFrameReportsLeftoverBytesAtClose(reading: FrameReading) throws {
        let channel = try makeChannel(reading)
        let frames = try sample()
        var partial = try FrameEncoder.encode(frames[1])
        let kept = partial.readableBytes - 5
        partial.moveWriterIndex(to: kept)
        try channel.writeInbound(try bytes([frames[0]]))
        try channel.writeInbound(partial)
        #expect(try readAll(channel) == [frames[0]])
        #expect(throws: FrameError.truncatedFrame(leftoverBytes: kept)) {
            _ = try channel.finish()
        }
    }

    /// Largest chunks split at points unrelated to frames (as TLS records and socket reads cut
    /// them), with small frames between: the same frames come out.
    @Test(arguments: FrameReading.allCases, [4_093, 16_384, 65_536, 300_000])
    func framesSplitAcrossReadsArriveWhole(reading: FrameReading, readBytes: Int) throws {
        let channel = try makeChannel(reading)
        let big = ByteBuffer(bytes: (0..<FrameLimits.chunkPayloadBytesMax).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        let frames = [Frame.chunk(big, requestID: 3), try Frame(.ping(1), requestID: 0), Frame.chunk(big, requestID: 3),
                      Frame.chunk(ByteBuffer(bytes: [9]), requestID: 3), try Frame(.cancel, requestID: 3)]
        var all = try bytes(frames)
        var decoded: [Frame] = []
        while let piece = all.readSlice(length: min(readBytes, all.readableBytes)), piece.readableBytes > 0 {
            try channel.writeInbound(piece)
            decoded += try readAll(channel)
        }
        #expect(decoded == frames)
        #expect(try channel.finish().isClean)
    }

    @Test func encoderWritesLargePayloadsWithoutCopyingThem() throws {
        let channel = try makeChannel()
        let payload = ByteBuffer(repeating: 0xAB, count: 100_000)
        try channel.writeOutbound(Frame.chunk(payload, requestID: 7))
        let header = try #require(try channel.readOutbound(as: ByteBuffer.self))
        let body = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(Array(header.readableBytesView) == [0x55, 0x4B, 1, 0x07, 0, 0, 0, 7, 0, 0x01, 0x86, 0xA0])
        #expect(body == payload)
        #expect(try channel.finish().isClean)
    }

    @Test func encoderRefusesFramesThatBreakTheRules() throws {
        let channel = try makeChannel()
        let oversize = Frame.chunk(ByteBuffer(repeating: 1, count: FrameLimits.chunkPayloadBytesMax + 1), requestID: 1)
        #expect(throws: FrameError.self) { try channel.writeOutbound(oversize) }
        #expect(throws: FrameError.badRequestID(type: .chunk, requestID: 0)) {
            try channel.writeOutbound(Frame.chunk(ByteBuffer(bytes: [1]), requestID: 0))
        }
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        #expect(try channel.finish().isClean)
    }
}
