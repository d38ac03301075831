import NIOCore
@testable import UpkeepProtocolCore
import UpkeepProtocol
import UpkeepTLS

/// Scripts for the session machines: feed inputs, read actions. No channel, no socket, no clock
/// (time is a number the script moves).

typealias Client = ClientSession<TLSError>

func frame(_ message: FrameMessage, _ requestID: UInt32 = 0) throws -> Frame {
    try Frame(message, requestID: requestID)
}

/// A Request frame whose payload is the JSON given, byte for byte.
func rawRequest(_ json: String, _ requestID: UInt32) -> Frame {
    Frame(type: .request, requestID: requestID, payload: ByteBuffer(string: json))
}

func chunk(_ bytes: Int, _ requestID: UInt32, fill: UInt8 = 7) -> Frame {
    Frame.chunk(ByteBuffer(repeating: fill, count: bytes), requestID: requestID)
}

let someDigest = ChunkEndPayload(sha256: Array(repeating: 0xAB, count: 32), totalBytes: 3)
let stageSHA = SHA256Hex(rawValue: String(repeating: "a", count: 64))!

func stageRequest(_ id: String = "stage-1", bytes: Int64 = 1 << 20) -> RequestEnvelope {
    RequestEnvelope(.stage(StageRequest(operationID: OperationID(rawValue: id)!, k3sVersion: "v1.31.2+k3s1", sha256: stageSHA,
                                        bytes: bytes)), upload: true)
}

func cordon(_ id: String = "c-1") -> RequestEnvelope {
    RequestEnvelope(.cordon(CordonRequest(operationID: OperationID(rawValue: id)!)))
}

let cordonAnswer = ResponsePayload.cordon(CordonResult(wasUnschedulable: false))
let backupAnswer = ResponsePayload.backup(BackupResult(format: .etcdSnapshot, fileName: "snap", bytes: 3))

extension ServerSession {
    /// A session past Hello, with the client's download window `downloadWindowBytes`.
    static func established(_ configuration: ServerConfiguration = ServerConfiguration(),
                            downloadWindowBytes: Int = StreamWindow.bytesDefault) throws -> ServerSession {
        var session = ServerSession(configuration: configuration, agent: TestAgent.info)
        _ = session.channelSecured()
        let reply = session.frameReceived(try frame(.hello(Hello(software: "script", streamWindowBytes: downloadWindowBytes))))
        precondition(reply.contains { if case .send(.helloReply, 0) = $0 { true } else { false } }, "Hello answered")
        return session
    }

    mutating func receive(_ message: FrameMessage, _ requestID: UInt32 = 0) throws -> [Action] {
        frameReceived(try frame(message, requestID))
    }

    /// Sends Request `id` and checks it started.
    mutating func open(_ envelope: RequestEnvelope, _ id: UInt32) throws {
        let actions = try receive(.request(envelope), id)
        precondition(actions.first == .startHandler(envelope, requestID: id), "request \(id) started: \(actions)")
    }
}

extension Array where Element == ServerSession.Action {
    /// The connection-level violation: reported, answered on id 0, closed.
    var isViolation: Bool {
        guard case .reportViolation? = first, count >= 3 else { return false }
        guard case .send(.error(let error), 0) = self[count - 2], error.code == .protocolViolation else { return false }
        return last == .close
    }

    /// The Error frames sent, by request id.
    var errors: [UInt32: ErrorCode] {
        reduce(into: [:]) { answers, action in
            if case .send(.error(let error), let id) = action { answers[id] = error.code }
        }
    }

    var framesSent: [FrameType] {
        compactMap { action in
            switch action {
            case .send(let message, _): message.frameType
            case .sendChunk: .chunk
            default: nil
            }
        }
    }
}

extension ClientSession {
    /// A session past HelloReply with the server's limits.
    static func established(_ configuration: ClientConfiguration = ClientConfiguration(), concurrentRequestsMax: Int = 32,
                            uploadWindowBytes: Int = StreamWindow.bytesDefault, requestIDsAfter: UInt32 = 0) throws -> ClientSession {
        var session = ClientSession(configuration: configuration, requestIDsAfter: requestIDsAfter)
        _ = session.channelSecured()
        let reply = HelloReply(protocolVersion: 1, agent: TestAgent.info, streamWindowBytes: uploadWindowBytes,
                               concurrentRequestsMax: concurrentRequestsMax)
        let actions = session.frameReceived(try frame(.helloReply(reply)), now: .uptimeNanoseconds(0))
        precondition(actions.contains(.succeedHello(reply)), "HelloReply accepted")
        return session
    }

    mutating func receive(_ message: FrameMessage, _ requestID: UInt32 = 0, at now: NIODeadline = .uptimeNanoseconds(0)) throws -> [Action] {
        frameReceived(try frame(message, requestID), now: now)
    }

    /// Starts a call at time 0 with a deadline at 60 s.
    mutating func call(_ token: UInt64, _ payload: RequestPayload = .status(StatusRequest()), upload: Bool = false,
                       deadline: NIODeadline = .uptimeNanoseconds(60_000_000_000), now: NIODeadline = .uptimeNanoseconds(0)) -> [Action] {
        startCall(token: token, payload, upload: upload, deadline: deadline, now: now)
    }
}

extension Array where Element == Client.Action {
    /// The request ids of the Request frames sent.
    func requestsSent() -> [UInt32] {
        compactMap { if case .send(.request, let id) = $0 { id } else { nil } }
    }

    var framesSent: [FrameType] {
        compactMap { action in
            switch action {
            case .send(let message, _): message.frameType
            case .sendChunk: .chunk
            default: nil
            }
        }
    }
}
