import NIOCore

/// Reads frames from bytes. Refuses a bad header (magic, version, type, id rule, length) as soon
/// as its bytes are in, before the payload is awaited or allocated; reports bytes left over when
/// the connection ends inside a frame. Not Sendable: one per channel, used on its event loop.
public struct FrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = Frame

    public init() {}

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try Self.next(from: &buffer) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer,
                                    seenEOF: Bool) throws -> DecodingState {
        while let frame = try Self.next(from: &buffer) {
            context.fireChannelRead(wrapInboundOut(frame))
        }
        let leftover = buffer.readableBytes
        if leftover > 0 {
            buffer.moveReaderIndex(forwardBy: leftover)
            throw FrameError.truncatedFrame(leftoverBytes: leftover)
        }
        return .needMoreData
    }

    /// Takes one complete frame off the front of `buffer`, or nothing when it is incomplete.
    /// The payload is a slice of `buffer` (no copy).
    public static func next(from buffer: inout ByteBuffer) throws(FrameError) -> Frame? {
        guard case .frame(let header) = try scan(buffer) else { return nil }
        return take(header, from: &buffer)
    }

    /// What the start of `buffer` holds (see `FrameScanner.scan`).
    static func scan(_ buffer: ByteBuffer) throws(FrameError) -> FrameScan {
        do {
            return try buffer.withUnsafeReadableBytes { try FrameScanner.scan($0) }
        } catch let error as FrameError {
            throw error
        } catch {
            preconditionFailure("FrameScanner.scan throws only FrameError, got \(error)")
        }
    }

    /// Reads the frame `header` starts (scanned complete) off the front of `buffer`; the payload is a slice.
    static func take(_ header: FrameHeader, from buffer: inout ByteBuffer) -> Frame {
        buffer.moveReaderIndex(forwardBy: FrameLimits.headerBytes)
        guard let payload = buffer.readSlice(length: Int(header.payloadBytes)) else {
            preconditionFailure("scan reported a complete frame that is not in the buffer")
        }
        return Frame(type: header.type, requestID: header.requestID, payload: payload)
    }
}

/// Reads frames from the bytes below it, with the checks and errors of
/// `ByteToMessageHandler(FrameDecoder())`, but without a cumulation buffer: a frame that lies
/// whole inside one read is passed on as a slice of that read, and a frame split across reads is
/// assembled once, into a buffer of exactly its size allocated when its (valid) header is in.
/// A 256 KiB chunk arriving in 16 KiB TLS records is so copied once instead of being regrown,
/// joined and compacted. After a refusal it stays failed: later bytes are reported as
/// `ByteToMessageDecoderError.dataReceivedInErrorState`, never decoded. Not Sendable: one per
/// channel, used on its event loop.
public final class FrameReader: ChannelInboundHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = Frame

    /// The start of a frame that continues in a later read (nil between frames).
    private var partial: ByteBuffer?
    private var failure: FrameError?

    public init() {}

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var input = unwrapInboundIn(data)
        if let failure {
            context.fireErrorCaught(ByteToMessageDecoderError.dataReceivedInErrorState(failure, input))
            return
        }
        do {
            try read(&input, context: context)
        } catch {
            failure = error
            partial = nil
            context.fireErrorCaught(error)
        }
    }

    private func read(_ input: inout ByteBuffer, context: ChannelHandlerContext) throws(FrameError) {
        while input.readableBytes > 0 {
            guard var pending = partial else {
                switch try FrameDecoder.scan(input) {
                case .frame(let header):
                    context.fireChannelRead(wrapInboundOut(FrameDecoder.take(header, from: &input)))
                case .incomplete(let bytesMissing):
                    var pending = context.channel.allocator.buffer(capacity: input.readableBytes + bytesMissing)
                    pending.writeBuffer(&input)
                    partial = pending
                }
                continue
            }
            partial = nil  // `pending` is now the only reference: appending never copies what it holds
            guard case .incomplete(let bytesMissing) = try FrameDecoder.scan(pending) else {
                preconditionFailure("a complete frame is passed on, never kept")
            }
            pending.reserveCapacity(pending.readableBytes + bytesMissing)
            guard var piece = input.readSlice(length: min(bytesMissing, input.readableBytes)) else {
                preconditionFailure("slice within readable bytes")
            }
            pending.writeBuffer(&piece)
            switch try FrameDecoder.scan(pending) {
            case .frame(let header):
                context.fireChannelRead(wrapInboundOut(FrameDecoder.take(header, from: &pending)))
            case .incomplete:
                partial = pending
            }
        }
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .inputClosed? = event as? ChannelEvent { reportLeftover(context: context) }
        context.fireUserInboundEventTriggered(event)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        reportLeftover(context: context)
        context.fireChannelInactive()
    }

    /// The stream ended inside a frame.
    private func reportLeftover(context: ChannelHandlerContext) {
        guard let pending = partial, failure == nil else { return }
        partial = nil
        failure = .truncatedFrame(leftoverBytes: pending.readableBytes)
        context.fireErrorCaught(FrameError.truncatedFrame(leftoverBytes: pending.readableBytes))
    }
}

@available(*, unavailable)
extension FrameReader: Sendable {}

/// Writes frames as bytes. A large payload is written as its own buffer after the header (no
/// copy); a small one is joined to the header in one buffer. Writing a frame that breaks the
/// header rules fails its promise with the `FrameError` and writes nothing.
public final class FrameEncoder: ChannelOutboundHandler {
    public typealias OutboundIn = Frame
    public typealias OutboundOut = ByteBuffer

    /// Payloads up to this size are copied next to the header (one write instead of two).
    static let joinedPayloadBytesMax = 8 << 10

    public init() {}

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let frame = unwrapOutboundIn(data)
        let header: FrameHeader
        do {
            header = try FrameHeader(type: frame.type, requestID: frame.requestID,
                                     payloadBytes: UInt32(clamping: frame.payload.readableBytes))
        } catch {
            promise?.fail(error)
            return
        }
        let joined = frame.payload.readableBytes <= Self.joinedPayloadBytesMax
        var buffer = context.channel.allocator.buffer(
            capacity: FrameLimits.headerBytes + (joined ? frame.payload.readableBytes : 0))
        Self.writeHeader(header, into: &buffer)
        if joined {
            var payload = frame.payload
            buffer.writeBuffer(&payload)
            context.write(wrapOutboundOut(buffer), promise: promise)
        } else {
            context.write(wrapOutboundOut(buffer), promise: nil)
            context.write(wrapOutboundOut(frame.payload), promise: promise)
        }
    }

    static func writeHeader(_ header: FrameHeader, into buffer: inout ByteBuffer) {
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: FrameLimits.headerBytes) { target in
            header.write(into: target)
            return FrameLimits.headerBytes
        }
    }

    /// The frame's bytes in one buffer (tests, vectors, tools).
    public static func encode(_ frame: Frame, allocator: ByteBufferAllocator = ByteBufferAllocator()) throws(FrameError) -> ByteBuffer {
        let header = try FrameHeader(type: frame.type, requestID: frame.requestID,
                                     payloadBytes: UInt32(clamping: frame.payload.readableBytes))
        var buffer = allocator.buffer(capacity: header.frameBytes)
        writeHeader(header, into: &buffer)
        var payload = frame.payload
        buffer.writeBuffer(&payload)
        return buffer
    }
}

@available(*, unavailable)
extension FrameEncoder: Sendable {}
