// The frame layer's pure core: header layout, limits and validation.
//
// This file depends on the Swift standard library only, so that the libFuzzer harness in
// `fuzz/` can compile it directly (SwiftPM cannot build fuzzers). Everything here works on raw
// bytes and never allocates before a length has been checked against its limit.

/// The kinds of frame. The numeric values are on the wire (PROTOCOL.md, "Frame types").
public enum FrameType: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case hello = 0x01
    case helloReply = 0x02
    case request = 0x03
    case response = 0x04
    case error = 0x05
    case progress = 0x06
    case chunk = 0x07
    case chunkEnd = 0x08
    case cancel = 0x09
    case windowUpdate = 0x0A
    case ping = 0x0B
    case pong = 0x0C
    case goAway = 0x0D

    public var description: String {
        switch self {
        case .hello: "Hello"
        case .helloReply: "HelloReply"
        case .request: "Request"
        case .response: "Response"
        case .error: "Error"
        case .progress: "Progress"
        case .chunk: "Chunk"
        case .chunkEnd: "ChunkEnd"
        case .cancel: "Cancel"
        case .windowUpdate: "WindowUpdate"
        case .ping: "Ping"
        case .pong: "Pong"
        case .goAway: "GoAway"
        }
    }

    /// Which request ids a frame of this type may carry.
    public enum RequestIDRule: Sendable {
        /// Connection-level frames: the id is always 0.
        case zero
        /// Per-request frames: the id is never 0.
        case nonZero
        /// Error frames: 0 for a connection-level error, otherwise the failed request.
        case any
    }

    public var requestIDRule: RequestIDRule {
        switch self {
        case .hello, .helloReply, .ping, .pong, .goAway: .zero
        case .request, .response, .progress, .chunk, .chunkEnd, .cancel, .windowUpdate: .nonZero
        case .error: .any
        }
    }

    /// The payload sizes a frame of this type may have.
    public var payloadBytesRange: ClosedRange<Int> {
        switch self {
        case .hello, .helloReply, .request, .response, .error, .progress, .goAway:
            2...FrameLimits.controlPayloadBytesMax  // JSON: at least "{}"
        case .chunk: 1...FrameLimits.chunkPayloadBytesMax
        case .chunkEnd: ChunkEndPayload.byteCount...ChunkEndPayload.byteCount
        case .cancel: 0...0
        case .windowUpdate: WindowUpdatePayload.byteCount...WindowUpdatePayload.byteCount
        case .ping, .pong: PingPayload.byteCount...PingPayload.byteCount
        }
    }

    /// Whether the payload is a JSON document (PROTOCOL.md, "Control payloads").
    public var hasJSONPayload: Bool {
        switch self {
        case .hello, .helloReply, .request, .response, .error, .progress, .goAway: true
        case .chunk, .chunkEnd, .cancel, .windowUpdate, .ping, .pong: false
        }
    }
}

/// Fixed limits of frame format version 1. They are part of the wire format, not settings.
public enum FrameLimits {
    /// "UK": the first two bytes of every frame.
    public static let magic: (UInt8, UInt8) = (0x55, 0x4B)
    /// The frame format version this code reads and writes (byte 2 of the header).
    public static let frameFormatVersion: UInt8 = 1
    /// Size of the fixed header in bytes.
    public static let headerBytes = 12
    /// Largest JSON payload (Hello, Request, Response, Error, Progress, GoAway): 1 MiB.
    public static let controlPayloadBytesMax = 1 << 20
    /// Largest Chunk payload: 256 KiB.
    public static let chunkPayloadBytesMax = 256 << 10
    /// Largest payload of any frame; a length above this is refused before anything is allocated.
    public static let frameBytesMax = headerBytes + controlPayloadBytesMax
}

/// Why bytes on the wire are not a valid frame. Every case closes the connection.
public enum FrameError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The first two bytes are not "UK": the peer does not speak this protocol (or a TLS peer
    /// is talking to a plaintext endpoint).
    case badMagic(UInt8, UInt8)
    /// The frame format version byte is one this code cannot read.
    case unsupportedFrameVersion(UInt8)
    /// The type byte names no known frame type.
    case unknownFrameType(UInt8)
    /// The declared payload length is outside what this frame type allows.
    case badPayloadLength(type: FrameType, bytes: UInt32, allowed: ClosedRange<Int>)
    /// The request id breaks the rule of this frame type (0 or non-zero).
    case badRequestID(type: FrameType, requestID: UInt32)
    /// The connection ended inside a frame; `leftoverBytes` were received and never decoded.
    case truncatedFrame(leftoverBytes: Int)

    public var description: String {
        switch self {
        case .badMagic(let a, let b):
            "frame does not start with \"UK\" (got 0x\(hex(a))\(hex(b))): the peer does not speak the Upkeep protocol, or expects TLS where this side is plaintext (or the reverse)"
        case .unsupportedFrameVersion(let v):
            "frame format version \(v) is not supported (this side reads version \(FrameLimits.frameFormatVersion)): upgrade the older side"
        case .unknownFrameType(let t):
            "unknown frame type 0x\(hex(t)) (this side knows 0x01...0x0D): upgrade the older side"
        case .badPayloadLength(let type, let bytes, let allowed):
            "\(type) frame declares \(bytes) payload bytes; allowed \(allowed.lowerBound)...\(allowed.upperBound): the peer is broken or hostile"
        case .badRequestID(let type, let id):
            "\(type) frame carries request id \(id), which its type does not allow: the peer is broken"
        case .truncatedFrame(let n):
            "connection closed inside a frame with \(n) bytes left undecoded: the peer died or the network cut the stream"
        }
    }
}

private func hex(_ byte: UInt8) -> String {
    let digits = Array("0123456789abcdef")
    return String([digits[Int(byte >> 4)], digits[Int(byte & 0x0F)]])
}

/// The 12-byte header that starts every frame.
public struct FrameHeader: Equatable, Sendable {
    public var type: FrameType
    public var requestID: UInt32
    public var payloadBytes: UInt32

    /// Creates a header after checking the id rule and the payload size of `type`.
    public init(type: FrameType, requestID: UInt32, payloadBytes: UInt32) throws(FrameError) {
        try Self.validate(type: type, requestID: requestID, payloadBytes: payloadBytes)
        self.type = type
        self.requestID = requestID
        self.payloadBytes = payloadBytes
    }

    private static func validate(type: FrameType, requestID: UInt32, payloadBytes: UInt32) throws(FrameError) {
        switch type.requestIDRule {
        case .zero where requestID != 0, .nonZero where requestID == 0:
            throw .badRequestID(type: type, requestID: requestID)
        case .zero, .nonZero, .any:
            break
        }
        let allowed = type.payloadBytesRange
        guard allowed.contains(Int(payloadBytes)) else {
            throw .badPayloadLength(type: type, bytes: payloadBytes, allowed: allowed)
        }
    }

    /// Parses and validates a header from the first `FrameLimits.headerBytes` of `bytes`.
    /// Returns nil when fewer bytes are available. Checks happen in wire order (magic, version,
    /// type, id, length), each as soon as its bytes are present, so garbage is refused early.
    public static func parse(_ bytes: UnsafeRawBufferPointer) throws(FrameError) -> FrameHeader? {
        if bytes.count >= 2, bytes[0] != FrameLimits.magic.0 || bytes[1] != FrameLimits.magic.1 {
            throw .badMagic(bytes[0], bytes[1])
        }
        if bytes.count == 1, bytes[0] != FrameLimits.magic.0 {
            throw .badMagic(bytes[0], 0)
        }
        if bytes.count >= 3, bytes[2] != FrameLimits.frameFormatVersion {
            throw .unsupportedFrameVersion(bytes[2])
        }
        guard bytes.count >= 4 else { return nil }
        guard let type = FrameType(rawValue: bytes[3]) else { throw .unknownFrameType(bytes[3]) }
        guard bytes.count >= FrameLimits.headerBytes else { return nil }
        let requestID = UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        let payloadBytes = UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        return try FrameHeader(type: type, requestID: requestID, payloadBytes: payloadBytes)
    }

    /// Writes the header into the first `FrameLimits.headerBytes` of `target`.
    public func write(into target: UnsafeMutableRawBufferPointer) {
        precondition(target.count >= FrameLimits.headerBytes, "header needs \(FrameLimits.headerBytes) bytes")
        target[0] = FrameLimits.magic.0
        target[1] = FrameLimits.magic.1
        target[2] = FrameLimits.frameFormatVersion
        target[3] = type.rawValue
        target.storeBytes(of: requestID.bigEndian, toByteOffset: 4, as: UInt32.self)
        target.storeBytes(of: payloadBytes.bigEndian, toByteOffset: 8, as: UInt32.self)
    }

    /// Total size of the frame this header starts.
    public var frameBytes: Int { FrameLimits.headerBytes + Int(payloadBytes) }
}

/// What the start of a byte stream holds.
public enum FrameScan: Equatable, Sendable {
    /// Not enough bytes yet: at least `bytesMissing` more are needed.
    case incomplete(bytesMissing: Int)
    /// A complete frame: its header, with the payload at `FrameLimits.headerBytes` ..< `header.frameBytes`.
    case frame(FrameHeader)
}

public enum FrameScanner {
    /// Looks at the start of `bytes` and says whether a complete, valid frame is there.
    /// Throws as soon as the header is invalid, before the payload is awaited or allocated.
    public static func scan(_ bytes: UnsafeRawBufferPointer) throws(FrameError) -> FrameScan {
        guard let header = try FrameHeader.parse(bytes) else {
            return .incomplete(bytesMissing: FrameLimits.headerBytes - bytes.count)
        }
        let missing = header.frameBytes - bytes.count
        return missing > 0 ? .incomplete(bytesMissing: missing) : .frame(header)
    }
}

/// Payload of a ChunkEnd frame: the SHA-256 of every chunk byte of the stream and their count.
public struct ChunkEndPayload: Equatable, Sendable {
    public static let byteCount = 40
    /// 32 bytes.
    public var sha256: [UInt8]
    public var totalBytes: UInt64

    public init(sha256: [UInt8], totalBytes: UInt64) {
        precondition(sha256.count == 32, "a SHA-256 digest has 32 bytes")
        self.sha256 = sha256
        self.totalBytes = totalBytes
    }

    public init(parsing bytes: UnsafeRawBufferPointer) throws(FrameError) {
        guard bytes.count == Self.byteCount else {
            throw .badPayloadLength(type: .chunkEnd, bytes: UInt32(clamping: bytes.count),
                                    allowed: FrameType.chunkEnd.payloadBytesRange)
        }
        sha256 = Array(bytes[0..<32])
        totalBytes = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 32, as: UInt64.self))
    }

    public var bytes: [UInt8] {
        var out = sha256
        withUnsafeBytes(of: totalBytes.bigEndian) { out.append(contentsOf: $0) }
        return out
    }
}

/// Payload of a WindowUpdate frame: how many more chunk bytes the receiver accepts.
public struct WindowUpdatePayload: Equatable, Sendable {
    public static let byteCount = 4
    public var incrementBytes: UInt32

    public init(incrementBytes: UInt32) {
        self.incrementBytes = incrementBytes
    }

    public init(parsing bytes: UnsafeRawBufferPointer) throws(FrameError) {
        guard bytes.count == Self.byteCount else {
            throw .badPayloadLength(type: .windowUpdate, bytes: UInt32(clamping: bytes.count),
                                    allowed: FrameType.windowUpdate.payloadBytesRange)
        }
        incrementBytes = UInt32(bigEndian: bytes.loadUnaligned(as: UInt32.self))
    }

    public var bytes: [UInt8] { withUnsafeBytes(of: incrementBytes.bigEndian) { Array($0) } }
}

/// Payload of Ping and Pong: 8 opaque bytes the Pong echoes.
public struct PingPayload: Equatable, Sendable {
    public static let byteCount = 8
    public var opaque: UInt64

    public init(opaque: UInt64) {
        self.opaque = opaque
    }

    public init(parsing bytes: UnsafeRawBufferPointer, type: FrameType) throws(FrameError) {
        guard bytes.count == Self.byteCount else {
            throw .badPayloadLength(type: type, bytes: UInt32(clamping: bytes.count),
                                    allowed: type.payloadBytesRange)
        }
        opaque = UInt64(bigEndian: bytes.loadUnaligned(as: UInt64.self))
    }

    public var bytes: [UInt8] { withUnsafeBytes(of: opaque.bigEndian) { Array($0) } }
}
