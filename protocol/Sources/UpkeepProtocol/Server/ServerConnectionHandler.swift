import Logging
import NIOCore
import UpkeepPKI
import UpkeepTLS

/// What every connection of one server shares.
final class ServerShared: Sendable {
    let handler: any RequestHandler
    let configuration: ServerConfiguration
    let registry: ConnectionRegistry
    let logger: Logger

    init(handler: any RequestHandler, configuration: ServerConfiguration, logger: Logger) {
        self.handler = handler
        self.configuration = configuration
        self.registry = ConnectionRegistry(connectionsMax: configuration.connectionsMax)
        self.logger = logger
    }
}

/// The server side of one connection (PROTOCOL.md sections 5 to 11): Hello, request ids,
/// per-request state, flow control, cancellation, deadlines, GoAway. Runs every decision on the
/// channel's event loop; handlers run in their own tasks and report back through the loop.
final class ServerConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = Frame
    typealias OutboundOut = Frame

    private enum Phase {
        /// Waiting for TLS to finish.
        case securing
        case awaitingHello
        case open
        /// GoAway sent: requests above `lastRequestID` are refused.
        case goingAway(lastRequestID: UInt32)
        case closed
    }

    private enum UploadState {
        /// The request has no upload: a chunk for it is a violation.
        case none
        case open(ChunkStreamProducer)
        /// The request was answered before its upload ended: late chunks are discarded.
        case discarding
    }

    /// A request between its Request frame and its terminal frame.
    private final class ActiveRequest {
        let method: Method
        var task: Task<Void, Never>?
        var upload: UploadState = .none
        /// Set once a Response with a download was written.
        var download: CreditGate?
        var timeout: Scheduled<Void>?

        init(method: Method) {
            self.method = method
        }
    }

    private let shared: ServerShared
    private let waitsForTLS: Bool
    private var phase = Phase.securing
    private var context: ChannelHandlerContext?
    private var peer: PeerIdentity?
    private var requests: [UInt32: ActiveRequest] = [:]
    private var highestRequestID: UInt32 = 0
    private var downloadWindowBytes = StreamWindow.bytesDefault
    private var helloTimer: Scheduled<Void>?
    /// The newest frame write, so that closing never drops a frame already sent.
    private var lastWrite: EventLoopFuture<Void>?

    private var configuration: ServerConfiguration { shared.configuration }
    private var logger: Logger { shared.logger }

    init(shared: ServerShared, waitsForTLS: Bool) {
        self.shared = shared
        self.waitsForTLS = waitsForTLS
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func channelActive(context: ChannelHandlerContext) {
        if !waitsForTLS { secured(peer: nil, context: context) }
        context.fireChannelActive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case let handshake as TLSHandshakeCompleted:
            secured(peer: handshake.peer, context: context)
        case IdleStateHandler.IdleStateEvent.read:
            if case .open = phase, requests.isEmpty { goAway(reason: "idle") }
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        phase = .closed
        helloTimer?.cancel()
        for request in requests.values {
            request.task?.cancel()
            request.timeout?.cancel()
            if case .open(let producer) = request.upload {
                producer.fail(ProtocolError.connectionClosed("the client's connection closed"))
            }
            request.download?.fail(CancellationError())
        }
        requests.removeAll()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch error {
        case FrameError.truncatedFrame(let leftover):
            logger.notice("connection closed inside a frame", metadata: ["leftoverBytes": "\(leftover)"])
        case let error as FrameError:
            violation(error.description)
        case ByteToMessageDecoderError.dataReceivedInErrorState:
            break  // already refused
        case let error as TLSError:
            logger.info("TLS failed: \(error)")
            context.close(promise: nil)
        default:
            logger.debug("connection error: \(error)")
            context.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch phase {
        case .closed:
            return
        case .securing:
            violation("a frame arrived before the connection was secured")
        case .awaitingHello:
            guard frame.type == .hello else { return violation("the first frame must be Hello, not \(frame.type)") }
            handleHello(frame)
        case .open, .goingAway:
            dispatch(frame)
        }
    }

    // MARK: Connection setup

    private func secured(peer: PeerIdentity?, context: ChannelHandlerContext) {
        guard case .securing = phase else { return }
        self.peer = peer
        phase = .awaitingHello
        let timeout = configuration.helloTimeout
        helloTimer = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(timeout)) { [self] in
            if case .awaitingHello = phase { violation("no Hello within \(timeout)") }
        }
    }

    private func handleHello(_ frame: Frame) {
        helloTimer?.cancel()
        let hello: Hello
        do {
            guard case .hello(let decoded) = try frame.message() else { preconditionFailure("a Hello frame decodes to Hello") }
            try decoded.validate()
            hello = decoded
        } catch {
            return violation("\(error)")
        }
        let offered = hello.protocolVersionMin...hello.protocolVersionMax
        guard let version = ProtocolVersion.negotiate(offered: offered) else {
            let supported = ProtocolVersion.supported
            return closeAfter(.error(ErrorResponse(.unsupportedVersion,
                "no protocol version in common: client speaks \(offered.lowerBound)...\(offered.upperBound), this agent \(supported.lowerBound)...\(supported.upperBound); upgrade the older side")))
        }
        downloadWindowBytes = hello.streamWindowBytes
        send(.helloReply(HelloReply(protocolVersion: version, agent: shared.handler.agentInfo(),
                                    streamWindowBytes: configuration.streamWindowBytes,
                                    concurrentRequestsMax: configuration.concurrentRequestsPerConnectionMax)), requestID: 0)
        phase = .open
        if shared.registry.isShuttingDown { goAway(reason: "shutting down") }
    }

    // MARK: Frames of an open connection

    private func dispatch(_ frame: Frame) {
        let id = frame.requestID
        switch frame.type {
        case .request:
            handleRequest(frame)
        case .chunk:
            guard let request = active(id, frame.type) else { return }
            switch request.upload {
            case .none:
                violation("Chunk for request \(id), which has no upload")
            case .discarding:
                break
            case .open(let producer):
                if !producer.receive(frame.payload) {
                    violation("request \(id)'s upload exceeds its window of \(producer.windowBytes) bytes or follows its ChunkEnd")
                }
            }
        case .chunkEnd:
            guard let request = active(id, frame.type) else { return }
            switch (request.upload, try? frame.message()) {
            case (.open(let producer), .chunkEnd(let end)?):
                if !producer.end(end) { violation("second ChunkEnd for request \(id)") }
            case (.discarding, _):
                break
            default:
                violation("ChunkEnd for request \(id), which has no open upload")
            }
        case .cancel:
            guard active(id, frame.type) != nil else { return }
            abort(id, ErrorResponse(.cancelled, "cancelled by the client"))
        case .windowUpdate:
            guard let request = active(id, frame.type) else { return }
            guard let gate = request.download, case .windowUpdate(let increment)? = try? frame.message() else {
                return violation("WindowUpdate for request \(id), which has no download running")
            }
            if !gate.add(Int(increment)) {
                violation("WindowUpdate of \(increment) bytes raises request \(id)'s credit above the window of \(gate.windowBytes) bytes")
            }
        case .ping:
            if case .ping(let opaque)? = try? frame.message() { send(.pong(opaque), requestID: 0) }
        case .pong:
            break
        case .hello:
            violation("second Hello")
        case .helloReply, .response, .error, .progress, .goAway:
            violation("\(frame.type) frames go from server to client")
        }
    }

    /// The open request `id`, or nil for a stale id (discarded) or one never opened (violation).
    private func active(_ id: UInt32, _ type: FrameType) -> ActiveRequest? {
        if let request = requests[id] { return request }
        if id > highestRequestID { violation("\(type) for request \(id), which was never sent") }
        return nil
    }

    private func handleRequest(_ frame: Frame) {
        let id = frame.requestID
        guard id > highestRequestID else {
            return violation("request id \(id) is not above the previous one (\(highestRequestID))")
        }
        highestRequestID = id
        if case .goingAway(let last) = phase, id > last {
            return refuse(id, ErrorResponse(.shuttingDown, "the agent is shutting down (GoAway after request \(last)); send it again on a new connection"))
        }
        guard requests.count < configuration.concurrentRequestsPerConnectionMax else {
            return refuse(id, ErrorResponse(.busy, "\(requests.count) requests already running on this connection, the maximum; retry when one finishes"))
        }
        let envelope: RequestEnvelope
        do {
            guard case .request(let decoded) = try frame.message() else { preconditionFailure("a Request frame decodes to a request") }
            try decoded.validate()
            envelope = decoded
        } catch .unknownMethod(let name) {
            return refuse(id, ErrorResponse(.notImplemented, MessageError.unknownMethod(name).description))
        } catch {
            return refuse(id, ErrorResponse(.badRequest, error.description))
        }
        start(id, envelope)
    }

    /// Answers a request that never started.
    private func refuse(_ id: UInt32, _ error: ErrorResponse) {
        send(.error(error), requestID: id)
    }

    private func start(_ id: UInt32, _ envelope: RequestEnvelope) {
        guard let context else { return }
        let request = ActiveRequest(method: envelope.payload.method)
        requests[id] = request
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)

        var upload = ChunkStream.empty
        if envelope.upload {
            let (producer, stream) = ChunkStreamProducer.make(windowBytes: configuration.streamWindowBytes) { bytes in
                bound.eventLoop.execute { bound.value.uploadConsumed(id, bytes) }
            }
            request.upload = .open(producer)
            upload = stream
        }
        if let timeoutMs = envelope.timeoutMs {
            request.timeout = context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(timeoutMs)) { [self] in
                abort(id, ErrorResponse(.timeout, "the request did not finish within its timeoutMs \(timeoutMs)"))
            }
        }
        let incoming = IncomingRequest(
            requestID: id, payload: envelope.payload, peer: peer,
            deadline: envelope.timeoutMs.map { ContinuousClock.now + .milliseconds($0) }, upload: upload,
            progress: { event in
                _ = try? await bound.eventLoop.flatSubmit { bound.value.sendProgress(id, event) }.get()
            })
        let handler = shared.handler
        request.task = Task {
            let outcome: Result<Reply, any Error>
            do {
                outcome = .success(try await handler.handle(incoming))
            } catch {
                outcome = .failure(error)
            }
            let gate = try? await bound.eventLoop.submit { bound.value.answer(id, outcome) }.get()
            guard let gate, case .success(let reply) = outcome, let download = reply.download else { return }
            do {
                let end = try await download.send(through: gate) { piece in
                    bound.eventLoop.execute { bound.value.sendDownloadChunk(id, piece) }
                }
                bound.eventLoop.execute { bound.value.endDownload(id, end) }
            } catch {
                bound.eventLoop.execute { bound.value.failDownload(id, error) }
            }
        }
    }

    // MARK: Reports from request tasks (on the event loop)

    /// Writes the handler's answer. Returns the download's credit gate when chunks follow.
    private func answer(_ id: UInt32, _ outcome: Result<Reply, any Error>) -> CreditGate? {
        guard let request = requests[id], request.download == nil else { return nil }
        switch outcome {
        case .success(let reply):
            guard reply.result.method == request.method else {
                end(id, error: ErrorResponse(.internal, "the agent answered \(reply.result.method) to a \(request.method) request (agent bug)"))
                return nil
            }
            send(.response(ResponseEnvelope(reply.result, download: reply.download != nil)), requestID: id)
            stopReadingUpload(request)
            guard reply.download != nil else {
                end(id)
                return nil
            }
            let gate = CreditGate(windowBytes: downloadWindowBytes)
            request.download = gate
            return gate
        case .failure(let error):
            end(id, error: ProtocolError.errorResponse(for: error))
            return nil
        }
    }

    private func sendProgress(_ id: UInt32, _ event: ProgressEvent) -> EventLoopFuture<Void> {
        guard let request = requests[id], request.download == nil else {
            return pipelineContext.eventLoop.makeSucceededVoidFuture()
        }
        return send(.progress(event), requestID: id)
    }

    private func sendDownloadChunk(_ id: UInt32, _ bytes: ByteBuffer) {
        guard let context, requests[id]?.download != nil else { return }
        context.writeAndFlush(wrapOutboundOut(Frame.chunk(bytes, requestID: id)), promise: nil)
    }

    private func endDownload(_ id: UInt32, _ payload: ChunkEndPayload) {
        guard requests[id]?.download != nil else { return }
        send(.chunkEnd(payload), requestID: id)
        end(id)
    }

    private func failDownload(_ id: UInt32, _ error: any Error) {
        end(id, error: ProtocolError.errorResponse(for: error))
    }

    private func uploadConsumed(_ id: UInt32, _ bytes: Int) {
        guard case .open(let producer)? = requests[id]?.upload else { return }
        let increment = producer.creditReturned(bytes)
        if increment > 0 { send(.windowUpdate(incrementBytes: UInt32(increment)), requestID: id) }
    }

    // MARK: Ending requests and the connection

    /// Late chunks of an answered request are dropped, not buffered.
    private func stopReadingUpload(_ request: ActiveRequest) {
        if case .open(let producer) = request.upload {
            producer.fail(CancellationError())
            request.upload = .discarding
        }
    }

    /// The request's terminal frame: `error` if given (the Response or ChunkEnd was already sent
    /// otherwise). Frees its slot.
    private func end(_ id: UInt32, error: ErrorResponse? = nil) {
        guard let request = requests.removeValue(forKey: id) else { return }
        request.timeout?.cancel()
        stopReadingUpload(request)
        request.download?.fail(CancellationError())
        if let error { send(.error(error), requestID: id) }
        if case .goingAway = phase, requests.isEmpty { closeWhenWritten() }
    }

    /// Stops a running request (Cancel, deadline, shutdown) and answers `error`.
    private func abort(_ id: UInt32, _ error: ErrorResponse) {
        requests[id]?.task?.cancel()
        end(id, error: error)
    }

    /// Sends GoAway: no new requests; the connection closes when the running ones are done.
    func goAway(reason: String) {
        switch phase {
        case .securing, .awaitingHello:
            phase = .closed
            context?.close(promise: nil)
        case .open:
            phase = .goingAway(lastRequestID: highestRequestID)
            send(.goAway(GoAway(lastRequestID: highestRequestID, reason: reason)), requestID: 0)
            if requests.isEmpty { closeWhenWritten() }
        case .goingAway, .closed:
            break
        }
    }

    /// Ends the connection now: running requests are stopped and answered `cancelled`.
    func forceClose(reason: String) {
        for id in requests.keys.sorted() {
            abort(id, ErrorResponse(.cancelled, "\(reason) before the request finished; it may be partly done, so retry with the same operation id"))
        }
        phase = .closed
        closeWhenWritten()
    }

    /// The peer broke the protocol: say why on request id 0, then close.
    private func violation(_ detail: String) {
        if case .closed = phase { return }
        logger.notice("protocol violation by client: \(detail)")
        closeAfter(.error(ErrorResponse(.protocolViolation, detail)))
    }

    /// Sends a last frame on request id 0, then closes.
    private func closeAfter(_ message: FrameMessage) {
        phase = .closed
        send(message, requestID: 0)
        closeWhenWritten()
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

    @discardableResult
    private func send(_ message: FrameMessage, requestID: UInt32) -> EventLoopFuture<Void> {
        let context = pipelineContext
        let frame: Frame
        do {
            frame = try Frame(message, requestID: requestID, allocator: context.channel.allocator)
        } catch {
            preconditionFailure("\(message.frameType) does not encode: \(error)")
        }
        let written = context.writeAndFlush(wrapOutboundOut(frame))
        lastWrite = written
        return written
    }
}

@available(*, unavailable)
extension ServerConnectionHandler: Sendable {}

/// Answers a connection beyond the server's limit (or during shutdown) with one Error on
/// request id 0, then closes it. Under TLS the write waits for the handshake.
final class ConnectionRefuser: ChannelInboundHandler {
    typealias InboundIn = Frame
    typealias OutboundOut = Frame

    private let refusal: ErrorResponse

    init(_ refusal: ErrorResponse) {
        self.refusal = refusal
    }

    func channelActive(context: ChannelHandlerContext) {
        let channel = context.channel
        if let frame = try? Frame(.error(refusal), requestID: 0, allocator: channel.allocator) {
            context.writeAndFlush(wrapOutboundOut(frame)).whenComplete { _ in channel.close(promise: nil) }
        }
        context.eventLoop.scheduleTask(in: .seconds(15)) { channel.close(promise: nil) }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension ConnectionRefuser: Sendable {}
