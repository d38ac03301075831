import NIOCore
import UpkeepHTTP
import UpkeepTLS
import NIOPosix
import Synchronization

/// One connection to an agent. Many calls run on it at once, multiplexed by request id, up to
/// a bounded number in flight (more wait, bounded too). Every call has a deadline and follows
/// its task's cancellation (Cancel is sent). Memory stays bounded whatever the agent does:
/// streams are flow-controlled and progress buffers drop the oldest events.
public final class ProtocolClient: Sendable {
    /// What the agent said in HelloReply.
    public let hello: HelloReply
    private let channel: any Channel
    private let handler: NIOLoopBound<ClientConnectionHandler>
    private let status: ClientStatus
    private let tokens = Atomic<UInt64>(0)

    private init(hello: HelloReply, channel: any Channel, handler: NIOLoopBound<ClientConnectionHandler>, status: ClientStatus) {
        self.hello = hello
        self.channel = channel
        self.handler = handler
        self.status = status
    }

    /// Connects, secures (TLS when `security` says so) and exchanges Hello, all within
    /// `configuration.connectTimeout`. Throws `ProtocolError` (`.tls`, `.remote` for a refusal
    /// such as `busy` or `unsupportedVersion`, `.connectFailed`, `.protocolViolation`).
    public static func connect(host: String, port: Int, security: ConnectionSecurity = .plaintext,
                               configuration: ClientConfiguration = ClientConfiguration(),
                               eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> ProtocolClient {
        let eventLoop = eventLoopGroup.next()
        let hello = eventLoop.makePromise(of: HelloReply.self)
        let status = ClientStatus()
        let handlerBox = NIOLoopBoundBox<ClientConnectionHandler?>.makeEmptyBox(eventLoop: eventLoop)
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: eventLoop)
                .connectTimeout(TimeAmount(configuration.connectTimeout))
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let pipeline = channel.pipeline.syncOperations
                        let waitsForTLS = try security.install(in: pipeline, side: .client)
                        try pipeline.addHandler(OutboundBacklogHandler(bounds: configuration.outbound) { limits.recordOutbound($0, $1) },
                                                position: .first)
                        let handler = ClientConnectionHandler(configuration: configuration, waitsForTLS: waitsForTLS,
                                                              hello: hello, status: status)
                        try pipeline.addHandlers(FrameReader(), FrameEncoder(), handler)
                        handlerBox.value = handler
                    }
                }
                .connect(host: host, port: port).get()
        } catch {
            hello.fail(error)
            throw ProtocolError.connectFailed("\(host):\(port): \(error)")
        }
        let reply: HelloReply
        do {
            reply = try await hello.futureResult.get()
        } catch {
            channel.close(promise: nil)
            if case ProtocolError.remote(let response) = error, response.code == .busy {
                limits.record(.agentBusy, "the agent at \(host):\(port) is at its connection limit: \(response.message)")
            }
            throw error
        }
        let handler = try await eventLoop.submit {
            guard let handler = handlerBox.value else { preconditionFailure("the initializer set the handler") }
            return NIOLoopBound(handler, eventLoop: eventLoop)
        }.get()
        return ProtocolClient(hello: reply, channel: channel, handler: handler, status: status)
    }

    /// False after GoAway or once the connection closed: new calls would fail as not processed.
    public var isUsable: Bool { status.isUsable }

    /// Sends `message` and returns its result. Methods with an upload take `upload`.
    public func call<M: RequestMessage>(_ message: M, upload: ChunkSource? = nil,
                                        deadline: ContinuousClock.Instant) async throws -> M.Result {
        try await withCall(message, upload: upload, deadline: deadline) { call in try await call.response() }
    }

    /// Runs a call and hands it to `body` for its progress events, result and download. The
    /// deadline covers the whole call, streams included. When `body` returns or throws while
    /// the call is still open, the call is cancelled.
    public func withCall<M: RequestMessage, R: Sendable>(
        _ message: M, upload: ChunkSource? = nil, deadline: ContinuousClock.Instant,
        _ body: (ActiveCall<M>) async throws -> R
    ) async throws -> R {
        try RequestEnvelope(message.payload, upload: upload != nil).validate()
        let started = try await start(message.payload, upload: upload != nil, deadline: deadline)
        let id = started.requestID
        let handler = handler
        let abandon: @Sendable (any Error) -> Void = { reason in
            handler.eventLoop.execute { handler.value.abandon(id, reason) }
        }
        return try await withTaskCancellationHandler {
            if Task.isCancelled { abandon(CancellationError()) }
            return try await withThrowingTaskGroup(of: Void.self) { group in
                if let upload, let gate = started.uploadGate {
                    group.addTask { await Self.send(upload, through: gate, requestID: id, handler: handler) }
                }
                do {
                    let result = try await body(ActiveCall(started))
                    abandon(CancellationError())
                    try await group.waitForAll()
                    return result
                } catch {
                    abandon(error)
                    try? await group.waitForAll()
                    throw error
                }
            }
        } onCancel: {
            abandon(CancellationError())
        }
    }

    private func start(_ payload: RequestPayload, upload: Bool, deadline: ContinuousClock.Instant) async throws -> StartedCall {
        let remaining = deadline - .now
        let nioDeadline = NIODeadline.now() + TimeAmount(max(remaining, .zero))
        let token = tokens.add(1, ordering: .relaxed).newValue
        let handler = handler
        return try await withTaskCancellationHandler {
            let promise = handler.eventLoop.makePromise(of: StartedCall.self)
            handler.eventLoop.execute {
                handler.value.start(payload, upload: upload, deadline: nioDeadline, token: token, promise: promise)
            }
            return try await promise.futureResult.get()
        } onCancel: {
            handler.eventLoop.execute { handler.value.cancelWaiting(token: token) }
        }
    }

    private static func send(_ upload: ChunkSource, through gate: CreditGate, requestID id: UInt32,
                             handler: NIOLoopBound<ClientConnectionHandler>) async {
        do {
            let end = try await upload.send(through: gate) { piece in
                try await handler.eventLoop.submit { handler.value.sendUploadChunk(id, piece) }.get()
            }
            handler.eventLoop.execute { handler.value.endUpload(id, end) }
        } catch {
            handler.eventLoop.execute { handler.value.uploadFailed(id, error) }
        }
    }

    /// Measures a round trip with Ping/Pong.
    public func ping(deadline: ContinuousClock.Instant) async throws -> Duration {
        let started = ContinuousClock.now
        let handler = handler
        let nioDeadline = NIODeadline.now() + TimeAmount(max(deadline - started, .zero))
        let promise = handler.eventLoop.makePromise(of: Void.self)
        handler.eventLoop.execute { handler.value.ping(deadline: nioDeadline, promise: promise) }
        try await promise.futureResult.get()
        return .now - started
    }

    /// Closes the connection; calls still in flight fail with `connectionClosed`.
    public func close() async {
        let handler = handler
        handler.eventLoop.execute { handler.value.close() }
        try? await channel.closeFuture.get()
    }
}

/// A call in progress, inside `ProtocolClient.withCall`.
public struct ActiveCall<M: RequestMessage>: Sendable {
    public let requestID: UInt32
    /// Progress events until the call ends. When the consumer falls behind, the oldest are
    /// dropped (the result carries the outcome).
    public let progress: AsyncStream<ProgressEvent>
    /// The bytes after the result, for methods with a download (empty otherwise). Verified
    /// against ChunkEnd at its end.
    public let download: ChunkStream
    private let responseFuture: EventLoopFuture<ResponseEnvelope>

    init(_ started: StartedCall) {
        requestID = started.requestID
        progress = started.progress
        download = started.download
        responseFuture = started.response
    }

    /// Waits for the result (throws the agent's error as `ProtocolError.remote`).
    public func response() async throws -> M.Result {
        let envelope = try await responseFuture.get()
        guard let result = envelope.payload.typedResult(for: M.self) else {
            throw ProtocolError.protocolViolation("\(M.method) was answered as \(envelope.payload.method)")
        }
        return result
    }
}
