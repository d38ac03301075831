import NIOCore
import UpkeepPKI

/// Serves requests on a `ProtocolServer` (the agent implements it). Called concurrently, once
/// per request, each in its own task. A handler must return promptly when its task is cancelled
/// (Cancel, deadline, shutdown): the request has already been answered then and its slot freed.
public protocol RequestHandler: Sendable {
    /// What HelloReply reports; read once per connection on its event loop, so it must be
    /// cheap (a cached value) and must not block.
    func agentInfo() -> AgentInfo

    /// Does the work and answers. Throw `ErrorResponse` for a typed error; any other error is
    /// answered `internal` (`CancellationError`: `cancelled`). The result's method must be the
    /// request's.
    func handle(_ request: IncomingRequest) async throws -> Reply
}

/// One request as a handler sees it.
public struct IncomingRequest: Sendable {
    public let requestID: UInt32
    public let payload: RequestPayload
    /// Who sent it, from the TLS certificate; nil on a plaintext connection (tests).
    public let peer: PeerIdentity?
    /// When the client gives up (from `timeoutMs`); the task is cancelled then.
    public let deadline: ContinuousClock.Instant?
    /// The upload (empty unless the method has one). Iterate once; the end is verified against
    /// ChunkEnd, and the sender is held back while this side does not read.
    public let upload: ChunkStream
    let progressSink: @Sendable (ProgressEvent) async -> Void

    public var method: Method { payload.method }

    /// Sends a progress event to the client. Waits until it is written (so a handler cannot
    /// outrun a slow connection); does nothing once the request has ended.
    public func progress(_ event: ProgressEvent) async {
        await progressSink(event)
    }

    public init(requestID: UInt32, payload: RequestPayload, peer: PeerIdentity?, deadline: ContinuousClock.Instant?,
                upload: ChunkStream, progress: @escaping @Sendable (ProgressEvent) async -> Void) {
        self.requestID = requestID
        self.payload = payload
        self.peer = peer
        self.deadline = deadline
        self.upload = upload
        progressSink = progress
    }
}

/// A handler's answer: the result, and for methods with a download, the bytes that follow it.
public struct Reply: Sendable {
    public var result: ResponsePayload
    public var download: ChunkSource?

    public init(_ result: ResponsePayload, download: ChunkSource? = nil) {
        self.result = result
        self.download = download
    }
}
