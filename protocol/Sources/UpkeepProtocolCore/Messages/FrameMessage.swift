#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What a frame says, with its payload decoded by the frame's type. Chunk bytes stay in the
/// frame (no copy); everything else is decoded here. Depends on Foundation only (the fuzz
/// harness compiles it directly).
public enum FrameMessage: Equatable, Sendable {
    case hello(Hello)
    case helloReply(HelloReply)
    case request(RequestEnvelope)
    case response(ResponseEnvelope)
    /// On request id 0: the whole connection failed and is closing.
    case error(ErrorResponse)
    case progress(ProgressEvent)
    case goAway(GoAway)
    /// Opaque bytes: the frame's payload.
    case chunk
    case chunkEnd(ChunkEndPayload)
    case cancel
    case windowUpdate(incrementBytes: UInt32)
    case ping(UInt64)
    case pong(UInt64)

    public var frameType: FrameType {
        switch self {
        case .hello: .hello
        case .helloReply: .helloReply
        case .request: .request
        case .response: .response
        case .error: .error
        case .progress: .progress
        case .goAway: .goAway
        case .chunk: .chunk
        case .chunkEnd: .chunkEnd
        case .cancel: .cancel
        case .windowUpdate: .windowUpdate
        case .ping: .ping
        case .pong: .pong
        }
    }

    /// Decodes a payload whose length the header already checked.
    public static func decode(_ type: FrameType, payload: UnsafeRawBufferPointer) throws(MessageError) -> FrameMessage {
        switch type {
        case .hello: return .hello(try WireJSON.decode(Hello.self, from: payload))
        case .helloReply: return .helloReply(try WireJSON.decode(HelloReply.self, from: payload))
        case .request: return .request(try WireJSON.decode(RequestEnvelope.self, from: payload))
        case .response: return .response(try WireJSON.decode(ResponseEnvelope.self, from: payload))
        case .error: return .error(try WireJSON.decode(ErrorResponse.self, from: payload))
        case .progress: return .progress(try WireJSON.decode(ProgressEvent.self, from: payload))
        case .goAway: return .goAway(try WireJSON.decode(GoAway.self, from: payload))
        case .chunk: return .chunk
        case .cancel: return .cancel
        case .chunkEnd, .windowUpdate, .ping, .pong:
            do {
                return try decodeFixed(type, payload)
            } catch {
                throw .invalid("\(error)")
            }
        }
    }

    private static func decodeFixed(_ type: FrameType, _ payload: UnsafeRawBufferPointer) throws(FrameError) -> FrameMessage {
        switch type {
        case .chunkEnd: .chunkEnd(try ChunkEndPayload(parsing: payload))
        case .windowUpdate: .windowUpdate(incrementBytes: try WindowUpdatePayload(parsing: payload).incrementBytes)
        case .ping: .ping(try PingPayload(parsing: payload, type: .ping).opaque)
        case .pong: .pong(try PingPayload(parsing: payload, type: .pong).opaque)
        default: preconditionFailure("\(type) has no fixed-layout payload")
        }
    }

    /// The payload bytes. A chunk's bytes are not here (they are the frame's); asking for them is
    /// a bug. Throws only if a message cannot be encoded as JSON, also a bug.
    public func encodedPayload() throws -> [UInt8] {
        switch self {
        case .hello(let m): try WireJSON.encode(m)
        case .helloReply(let m): try WireJSON.encode(m)
        case .request(let m): try WireJSON.encode(m)
        case .response(let m): try WireJSON.encode(m)
        case .error(let m): try WireJSON.encode(m)
        case .progress(let m): try WireJSON.encode(m)
        case .goAway(let m): try WireJSON.encode(m)
        case .chunk: preconditionFailure("chunk bytes are the frame's payload, not a message")
        case .cancel: []
        case .chunkEnd(let end): end.bytes
        case .windowUpdate(let increment): WindowUpdatePayload(incrementBytes: increment).bytes
        case .ping(let opaque), .pong(let opaque): PingPayload(opaque: opaque).bytes
        }
    }
}

/// Decodes every frame of a byte string and checks that each decoded message encodes to bytes
/// that decode to the same message. The fuzz harness and its regression tests call this; a
/// crash or a failed round trip is a bug. Returns how the input ended.
public enum FrameStreamCheck {
    public enum Outcome: Equatable, Sendable {
        /// Every byte was part of a valid frame.
        case complete(frames: Int)
        /// Valid frames, then a partial one (a truncated stream).
        case truncated(frames: Int, leftoverBytes: Int)
        case frameError(FrameError, afterFrames: Int)
        /// A frame whose payload is not a valid message (answered, not fatal, on a connection).
        case messageError(MessageError, afterFrames: Int)
    }

    public static func run(_ bytes: UnsafeRawBufferPointer) -> Outcome {
        var offset = 0
        var frames = 0
        while offset < bytes.count {
            let rest = UnsafeRawBufferPointer(rebasing: bytes[offset...])
            let scan: FrameScan
            do {
                scan = try FrameScanner.scan(rest)
            } catch {
                return .frameError(error, afterFrames: frames)
            }
            guard case .frame(let header) = scan else {
                return .truncated(frames: frames, leftoverBytes: rest.count)
            }
            let payload = UnsafeRawBufferPointer(rebasing: rest[FrameLimits.headerBytes..<header.frameBytes])
            let message: FrameMessage
            do {
                message = try FrameMessage.decode(header.type, payload: payload)
            } catch {
                return .messageError(error, afterFrames: frames)
            }
            checkRoundTrip(message)
            offset += header.frameBytes
            frames += 1
        }
        return .complete(frames: frames)
    }

    private static func checkRoundTrip(_ message: FrameMessage) {
        guard message != .chunk else { return }
        let encoded: [UInt8]
        do {
            encoded = try message.encodedPayload()
        } catch {
            preconditionFailure("decoded \(message) does not encode: \(error)")
        }
        let again = encoded.withUnsafeBytes { bytes in Result { () throws(MessageError) in try FrameMessage.decode(message.frameType, payload: bytes) } }
        guard case .success(let decoded) = again, decoded == message else {
            preconditionFailure("round trip changed \(message) into \(again)")
        }
    }
}
