import Logging
import NIOCore
import UpkeepHTTP
import UpkeepPKI
import UpkeepTLS

/// What every connection of one server shares.
final class ServerShared: Sendable {
    let handler: any RequestHandler
    let configuration: ServerConfiguration
    let registry: ConnectionRegistry
    let logger: Logger

    init(handler: any RequestHandler, configuration: ServerConfiguration, logger: Logger, limits: LimitLog<ProtocolServerLimit>,
         handshakes: LimitTally<HandshakeOutcome>) {
        self.handler = handler
        self.configuration = configuration
        self.registry = ConnectionRegistry(configuration: configuration, limits: limits, handshakes: handshakes)
        self.logger = logger
    }

    var limits: LimitLog<ProtocolServerLimit> { registry.limits }
}

/// The server side of one connection: carries out what its `ServerSession` decides (PROTOCOL.md
/// sections 5 to 11). It holds what the session cannot: the channel, timers, the request
/// handlers' tasks and their streams. Every input reaches the session on the channel's event
/// loop; handlers run in their own tasks and report back through the loop.
final class ServerConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = Frame
    typealias OutboundOut = Frame

    /// What a running request holds on this side.
    private struct Running {
        var task: Task<Void, Never>?
        var timer: Scheduled<Void>?
        var upload: ChunkStreamProducer?
        var download: CreditGate?
    }

    private var session: ServerSession
    private let shared: ServerShared
    private let waitsForTLS: Bool
    private var context: ChannelHandlerContext?
    private var peer: PeerIdentity?
    private var running: [UInt32: Running] = [:]
    private var helloTimer: Scheduled<Void>?
    /// The newest frame write, so that closing never drops a frame already sent.
    private var lastWrite: EventLoopFuture<Void>?

    private var logger: Logger { shared.logger }

    /// A connection to serve, or with `refusal` one to refuse (over the limit, shutting down).
    init(shared: ServerShared, waitsForTLS: Bool, refusal: ErrorResponse? = nil) {
        self.shared = shared
        self.waitsForTLS = waitsForTLS
        let agent = shared.handler.agentInfo()
        session = if let refusal {
            ServerSession(configuration: shared.configuration, agent: agent, refusing: refusal)
        } else {
            ServerSession(configuration: shared.configuration, agent: agent)
        }
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func channelActive(context: ChannelHandlerContext) {
        if !waitsForTLS { execute(session.channelSecured()) }
        context.fireChannelActive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case let handshake as TLSHandshakeCompleted:
            peer = handshake.peer
            switch shared.registry.secured(context.channel) {
            case .admitted, .handshaking: execute(session.channelSecured())
            case .refused(let refusal): execute(session.channelSecured(refusing: refusal))
            case .dropped: context.close(promise: nil)
            }
        case IdleStateHandler.IdleStateEvent.read:
            execute(session.idleTimerFired())
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }

    /// Downloads wait while the client does not read (PROTOCOL.md 7.2; `OutboundBacklogHandler`).
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        let writable = context.channel.isWritable
        for request in running.values { request.download?.writabilityChanged(writable) }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        execute(session.channelInactive())
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch error {
        case let error as FrameError:
            if case .truncatedFrame(let leftover) = error {
                logger.notice("connection closed inside a frame", metadata: ["leftoverBytes": "\(leftover)"])
            }
            if case .badPayloadLength = error {
                shared.limits.record(.frameBytes, "refused a frame from \(remote): \(error)")
            }
            execute(session.frameError(error))
        case ByteToMessageDecoderError.dataReceivedInErrorState:
            break  // already refused
        case let error as TLSError:
            shared.registry.handshakeFailed(context.channel)
            let from = "from \(context.channel.remoteAddress?.description ?? "an unknown address")"
            switch error {
            case .handshakeTimeout:
                shared.limits.record(.handshakeTimeout, "closed a connection \(from): no TLS handshake within "
                                     + "\(shared.configuration.handshakeTimeout) (handshakeTimeout)")
            case .closedDuringHandshake, .uncleanShutdown, .closed:
                logger.debug("TLS connection \(from) ended: \(error)")
            default:
                shared.limits.record(.tlsRefused, "refused a TLS connection \(from): \(error)")
            }
            context.close(promise: nil)
        default:
            logger.debug("connection error: \(error)")
            context.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        execute(session.frameReceived(unwrapInboundIn(data)))
    }

    /// Sends GoAway: no new requests; the connection closes when the running ones are done.
    func goAway(reason: String) {
        execute(session.goAway(reason: reason))
    }

    /// Ends the connection now: running requests are stopped and answered `cancelled`.
    func forceClose(reason: String) {
        execute(session.forceClose(reason: reason))
    }

    // MARK: Carrying out actions

    /// Carries out `actions` in order; returns the last frame write, if any.
    @discardableResult
    private func execute(_ actions: [ServerSession.Action]) -> EventLoopFuture<Void>? {
        var written: EventLoopFuture<Void>?
        for action in actions {
            switch action {
            case .send(let message, let id):
                written = send(message, requestID: id)
            case .sendChunk(let bytes, let id):
                written = write(Frame.chunk(bytes, requestID: id))
            case .close:
                closeWhenWritten()
            case .startHelloTimer(let timeout):
                helloTimer = schedule(in: TimeAmount(timeout)) { $0.helloTimerFired() }
            case .cancelHelloTimer:
                helloTimer?.cancel()
                helloTimer = nil
            case .startHandler(let envelope, let id):
                startHandler(envelope, id)
            case .startRequestTimer(let milliseconds, let id):
                running[id]?.timer = schedule(in: .milliseconds(milliseconds)) { $0.requestTimerFired(requestID: id) }
            case .deliverUploadChunk(let bytes, let id):
                running[id]?.upload?.receive(bytes)
            case .endUpload(let end, let id):
                running[id]?.upload?.end(end)
            case .stopUpload(let id):
                running[id]?.upload?.fail(CancellationError())
            case .startDownload(let creditBytes, let id):
                running[id]?.download = CreditGate(creditBytes: creditBytes, isWritable: pipelineContext.channel.isWritable)
            case .grantDownloadCredit(let bytes, let id):
                running[id]?.download?.grant(bytes)
            case .endRequest(let end, let id):
                guard let request = running.removeValue(forKey: id) else { break }
                request.timer?.cancel()
                request.download?.fail(CancellationError())
                switch end {
                case .finished:
                    request.upload?.fail(CancellationError())
                case .stopped:
                    request.task?.cancel()
                    request.upload?.fail(CancellationError())
                case .connectionLost:
                    request.task?.cancel()
                    request.upload?.fail(ProtocolError.connectionClosed("the client's connection closed"))
                }
            case .reportViolation(let detail):
                shared.limits.record(.protocolViolation, "protocol violation by the client at \(remote)\(peer.map { " (\($0.uri))" } ?? ""): "
                                     + "\(detail); the connection was closed")
            case .reportDroppedProgress(let events, let id):
                shared.limits.record(.progressEvents, times: events, "\(events) progress events of request \(id) from \(remote) not sent: more than "
                                     + "\(shared.configuration.progressEventsBurst) at once or \(shared.configuration.progressEventsPerSecond) a second")
            case .reportTooManyRequests(let running):
                shared.limits.record(.requestsPerConnection, "answered busy to a request from \(remote): \(running) requests running on its "
                                     + "connection (concurrentRequestsPerConnectionMax)")
            }
        }
        return written
    }

    /// The peer's address, for the log.
    private var remote: String { context?.channel.remoteAddress?.description ?? "an unknown address" }

    /// Calls `input` on the session after `delay`, on the event loop.
    private func schedule(in delay: TimeAmount, _ input: @escaping (inout ServerSession) -> [ServerSession.Action]) -> Scheduled<Void> {
        pipelineContext.eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in execute(input(&session)) }
    }

    /// Runs the request handler in a task of its own; it reports back through the event loop.
    private func startHandler(_ envelope: RequestEnvelope, _ id: UInt32) {
        let bound = NIOLoopBound(self, eventLoop: pipelineContext.eventLoop)
        var request = Running()
        var upload = ChunkStream.empty
        if envelope.upload {
            let (producer, stream) = ChunkStreamProducer.make { bytes in
                bound.eventLoop.execute { bound.value.execute(bound.value.session.uploadConsumed(bytes: bytes, requestID: id)) }
            }
            request.upload = producer
            upload = stream
        }
        let incoming = IncomingRequest(
            requestID: id, payload: envelope.payload, peer: peer,
            deadline: envelope.timeoutMs.map { ContinuousClock.now + .milliseconds($0) }, upload: upload,
            progress: { event in
                _ = try? await bound.eventLoop.flatSubmit { bound.value.progressReported(event, id) }.get()
            })
        let handler = shared.handler
        request.task = Task {
            let outcome: Result<Reply, any Error>
            do {
                outcome = .success(try await handler.handle(incoming))
            } catch {
                outcome = .failure(error)
            }
            let gate = try? await bound.eventLoop.submit { bound.value.answered(id, outcome) }.get()
            guard let gate, case .success(let reply) = outcome, let download = reply.download else { return }
            do {
                let end = try await download.send(through: gate) { piece in
                    try await bound.eventLoop.submit { _ = bound.value.execute(bound.value.session.downloadChunkReady(piece, requestID: id)) }.get()
                }
                bound.eventLoop.execute { bound.value.execute(bound.value.session.downloadEnded(end, requestID: id)) }
            } catch {
                let answer = ProtocolError.errorResponse(for: error)
                bound.eventLoop.execute { bound.value.execute(bound.value.session.downloadFailed(answer, requestID: id)) }
            }
        }
        running[id] = request
    }

    /// The handler's outcome. Returns the download's credit gate when chunks follow.
    private func answered(_ id: UInt32, _ outcome: Result<Reply, any Error>) -> CreditGate? {
        switch outcome {
        case .success(let reply):
            execute(session.handlerAnswered(reply.result, download: reply.download != nil, requestID: id))
        case .failure(let error):
            execute(session.handlerFailed(ProtocolError.errorResponse(for: error), requestID: id))
        }
        return running[id]?.download
    }

    /// A progress event; the future completes when it is written (or at once when not sent).
    private func progressReported(_ event: ProgressEvent, _ id: UInt32) -> EventLoopFuture<Void> {
        execute(session.progressReported(event, requestID: id, now: .now())) ?? pipelineContext.eventLoop.makeSucceededVoidFuture()
    }

    /// Closes once every frame sent so far is written, or after a bound if the peer does not
    /// read.
    private func closeWhenWritten() {
        guard let context else { return }
        let channel = context.channel
        (lastWrite ?? context.eventLoop.makeSucceededVoidFuture()).whenComplete { _ in channel.close(promise: nil) }
        context.eventLoop.scheduleTask(in: .seconds(2)) { channel.close(promise: nil) }
    }

    private var pipelineContext: ChannelHandlerContext {
        guard let context else { preconditionFailure("used only while the handler is in a pipeline") }
        return context
    }

    private func send(_ message: FrameMessage, requestID: UInt32) -> EventLoopFuture<Void> {
        let frame: Frame
        do {
            frame = try Frame(message, requestID: requestID, allocator: pipelineContext.channel.allocator)
        } catch {
            preconditionFailure("\(message.frameType) does not encode: \(error)")
        }
        return write(frame)
    }

    private func write(_ frame: Frame) -> EventLoopFuture<Void> {
        let written = pipelineContext.writeAndFlush(wrapOutboundOut(frame))
        lastWrite = written
        return written
    }
}

@available(*, unavailable)
extension ServerConnectionHandler: Sendable {}
