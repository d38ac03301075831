import NIOCore

/// One frame: header fields plus the payload bytes, as the codec reads and writes them.
public struct Frame: Sendable, Equatable {
    public var type: FrameType
    public var requestID: UInt32
    public var payload: ByteBuffer

    public init(type: FrameType, requestID: UInt32, payload: ByteBuffer) {
        self.type = type
        self.requestID = requestID
        self.payload = payload
    }
}

extension Frame {
    /// The frame carrying `message` (not a chunk: use `init(type:requestID:payload:)`).
    public init(_ message: FrameMessage, requestID: UInt32, allocator: ByteBufferAllocator = ByteBufferAllocator()) throws {
        self.init(type: message.frameType, requestID: requestID, payload: allocator.buffer(bytes: try message.encodedPayload()))
    }

    public static func chunk(_ bytes: ByteBuffer, requestID: UInt32) -> Frame {
        Frame(type: .chunk, requestID: requestID, payload: bytes)
    }

    /// The decoded payload.
    public func message() throws(MessageError) -> FrameMessage {
        let type = type
        do {
            return try payload.withUnsafeReadableBytes { bytes in try FrameMessage.decode(type, payload: bytes) }
        } catch let error as MessageError {
            throw error
        } catch {
            preconditionFailure("FrameMessage.decode throws only MessageError, got \(error)")
        }
    }
}
