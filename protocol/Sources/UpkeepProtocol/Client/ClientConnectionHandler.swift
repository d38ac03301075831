import NIOCore
import Synchronization
import UpkeepTLS

/// A call the connection has sent, as the caller holds it.
struct StartedCall: Sendable {
    let requestID: UInt32
    let response: EventLoopFuture<ResponseEnvelope>
    let progress: AsyncStream<ProgressEvent>
    let download: ChunkStream
    let uploadGate: CreditGate?
}

/// Whether new calls may use the connection; readable from any thread.
final class ClientStatus: Sendable {
    private let usable = Mutex(true)
    var isUsable: Bool { usable.withLock { $0 } }
    func markUnusable() { usable.withLock { $0 = false } }
}

/// The client side of one connection (PROTOCOL.md sections 5 to 11): Hello, request ids, slots,
/// streams, cancellation, deadlines, GoAway. Every decision runs on the channel's event loop.
final class ClientConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = Frame
    typealias OutboundOut = Frame

    private enum Phase {
        case securing
        case awaitingHelloReply
        case open
        case closed
    }

    /// A call between its Request and its terminal frame.
    private final class Call {
        let method: Method
        let response: EventLoopPromise<ResponseEnvelope>
        var responded = false
        let progress: AsyncStream<ProgressEvent>.Continuation
        let download: ChunkStreamProducer
        var downloading = false
        let uploadGate: CreditGate?
        /// Cancel was sent: only the terminal frame is awaited, to free the slot.
        var abandoned = false
        var deadline: Scheduled<Void>?

        init(method: Method, response: EventLoopPromise<ResponseEnvelope>, progress: AsyncStream<ProgressEvent>.Continuation,
             download: ChunkStreamProducer, uploadGate: CreditGate?) {
            self.method = method
            self.response = response
            self.progress = progress
            self.download = download
            self.uploadGate = uploadGate
        }
    }

    /// A call waiting for a free slot.
    private struct Waiter {
        let token: UInt64
        let payload: RequestPayload
        let upload: Bool
        let deadline: NIODeadline
        let promise: EventLoopPromise<StartedCall>
        let timer: Scheduled<Void>
    }

    /// How much later than the caller's deadline the agent stops the work (`timeoutMs`).
    static let agentDeadlineMarginMs: Int64 = 1_000

    private let configuration: ClientConfiguration
    private let waitsForTLS: Bool
    private let hello: EventLoopPromise<HelloReply>
    private let status: ClientStatus
    private var phase = Phase.securing
    private var context: ChannelHandlerContext?
    private var calls: [UInt32: Call] = [:]
    private var waiters = CircularBuffer<Waiter>()
    private var nextRequestID: UInt32 = 1
    private var slotsMax = 1
    private var uploadWindowBytes = StreamWindow.bytesDefault
    private var goAwayLastRequestID: UInt32?
    /// Why the connection ended, when it is known before it closes.
    private var closeReason: ProtocolError?
    private var pings: [UInt64: EventLoopPromise<Void>] = [:]
    private var nextPing: UInt64 = 1

    init(configuration: ClientConfiguration, waitsForTLS: Bool, hello: EventLoopPromise<HelloReply>, status: ClientStatus) {
        self.configuration = configuration
        self.waitsForTLS = waitsForTLS
        self.hello = hello
        self.status = status
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func channelActive(context: ChannelHandlerContext) {
        if !waitsForTLS { secured() }
        context.fireChannelActive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is TLSHandshakeCompleted { secured() }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch error {
        case FrameError.truncatedFrame:
            break  // the connection is ending; calls fail as "connection closed"
        case let error as FrameError:
            fail(.protocolViolation(error.description))
        case ByteToMessageDecoderError.dataReceivedInErrorState:
            break
        case let error as TLSError:
            fail(.tls(error))
        default:
            fail(.connectionClosed("\(error)"))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        phase = .closed
        status.markUnusable()
        let reason = closeReason ?? .connectionClosed("the agent closed the connection")
        hello.fail(reason.connectFailure)
        for (id, call) in calls.sorted(by: { $0.key < $1.key }) {
            let error: ProtocolError
            if let last = goAwayLastRequestID, id > last {
                error = .notProcessed("the agent sent GoAway after request \(last)")
            } else {
                error = reason.asCallFailure
            }
            finish(call, failing: error)
        }
        calls.removeAll()
        while let waiter = waiters.popFirst() {
            waiter.timer.cancel()
            waiter.promise.fail(ProtocolError.notProcessed("the connection closed before the call could start"))
        }
        for promise in pings.values { promise.fail(reason.asCallFailure) }
        pings.removeAll()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch phase {
        case .closed:
            return
        case .securing:
            fail(.protocolViolation("a frame arrived before the connection was secured"))
        case .awaitingHelloReply:
            handleHelloReply(frame)
        case .open:
            dispatch(frame)
        }
    }

    // MARK: Connection setup

    private func secured() {
        guard case .securing = phase, let context else { return }
        phase = .awaitingHelloReply
        send(.hello(Hello(software: configuration.software, streamWindowBytes: configuration.streamWindowBytes)), requestID: 0)
        let timeout = configuration.connectTimeout
        context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(timeout)) { [self] in
            if case .awaitingHelloReply = phase { fail(.connectFailed("no HelloReply within \(timeout)")) }
        }
    }

    private func handleHelloReply(_ frame: Frame) {
        do {
            switch try frame.message() {
            case .helloReply(let reply):
                try reply.validate()
                phase = .open
                slotsMax = max(1, min(configuration.concurrentRequestsMax, reply.concurrentRequestsMax))
                uploadWindowBytes = reply.streamWindowBytes
                hello.succeed(reply)
            case .error(let error) where frame.requestID == 0:
                fail(.remote(error))
            default:
                fail(.protocolViolation("expected HelloReply, got \(frame.type)"))
            }
        } catch {
            fail(.protocolViolation("invalid HelloReply: \(error)"))
        }
    }

    // MARK: Frames of an open connection

    private func dispatch(_ frame: Frame) {
        let id = frame.requestID
        let message: FrameMessage
        do {
            message = try frame.message()
        } catch {
            if frame.type == .progress { return }  // an unknown progress kind is ignored
            return fail(.protocolViolation("\(frame.type) for request \(id): \(error)"))
        }
        switch message {
        case .error(let error) where id == 0:
            fail(.remote(error))
        case .goAway(let goAway):
            handleGoAway(goAway)
        case .ping(let opaque):
            send(.pong(opaque), requestID: 0)
        case .pong(let opaque):
            pings.removeValue(forKey: opaque)?.succeed()
        case .hello, .helloReply, .request, .cancel:
            fail(.protocolViolation("\(frame.type) is not a frame a server sends on an open connection"))
        case .error, .response, .progress, .chunk, .chunkEnd, .windowUpdate:
            guard let call = call(id, frame.type) else { return }
            handle(message, frame, for: call, id: id)
        }
    }

    private func handle(_ message: FrameMessage, _ frame: Frame, for call: Call, id: UInt32) {
        switch message {
        case .error(let error):
            end(id, failing: .remote(error))
        case .response(let envelope):
            guard !call.responded else { return fail(.protocolViolation("second Response for request \(id)")) }
            guard envelope.payload.method == call.method else {
                return fail(.protocolViolation("request \(id) is \(call.method) but was answered as \(envelope.payload.method)"))
            }
            call.responded = true
            call.response.succeed(envelope)
            if envelope.download {
                // Abandoned or not, the stream ends with ChunkEnd or Error; the slot is held until then.
                call.downloading = true
            } else {
                end(id)
            }
        case .progress(let event):
            if !call.abandoned { call.progress.yield(event) }
        case .chunk:
            guard call.downloading else { return fail(.protocolViolation("Chunk for request \(id) before a Response with download")) }
            if call.abandoned { return }
            if !call.download.receive(frame.payload) {
                fail(.protocolViolation("request \(id)'s download exceeds the window of \(call.download.windowBytes) bytes"))
            }
        case .chunkEnd(let payload):
            guard call.downloading else { return fail(.protocolViolation("ChunkEnd for request \(id) before a Response with download")) }
            _ = call.download.end(payload)
            end(id)
        case .windowUpdate(let increment):
            guard let gate = call.uploadGate else { return fail(.protocolViolation("WindowUpdate for request \(id), which has no upload")) }
            if !gate.add(Int(increment)) {
                fail(.protocolViolation("WindowUpdate of \(increment) bytes raises request \(id)'s credit above the window of \(gate.windowBytes) bytes"))
            }
        default:
            preconditionFailure("dispatch passes only per-request frames")
        }
    }

    /// The call `id`, or nil for a stale id (discarded) or one never sent (violation).
    private func call(_ id: UInt32, _ type: FrameType) -> Call? {
        if let call = calls[id] { return call }
        if id >= nextRequestID { fail(.protocolViolation("\(type) for request \(id), which was never sent")) }
        return nil
    }

    private func handleGoAway(_ goAway: GoAway) {
        goAwayLastRequestID = min(goAway.lastRequestID, goAwayLastRequestID ?? .max)
        status.markUnusable()
        while let waiter = waiters.popFirst() {
            waiter.timer.cancel()
            waiter.promise.fail(ProtocolError.notProcessed("the agent is going away (\(goAway.reason))"))
        }
        if calls.isEmpty { context?.close(promise: nil) }
    }

    // MARK: Calls (on the event loop, from ProtocolClient)

    /// Sends the request when a slot is free, or queues it (bounded) until one is. The promise
    /// gets the started call, or the reason it never started.
    func start(_ payload: RequestPayload, upload: Bool, deadline: NIODeadline, token: UInt64,
               promise: EventLoopPromise<StartedCall>) {
        guard let context, case .open = phase, goAwayLastRequestID == nil else {
            let detail = goAwayLastRequestID == nil ? "the connection is closed" : "the agent sent GoAway"
            return promise.fail(closeReason.map { $0.asCallFailure } ?? ProtocolError.notProcessed(detail))
        }
        if calls.count < slotsMax && waiters.isEmpty {
            return launch(payload, upload: upload, deadline: deadline, promise: promise)
        }
        guard waiters.count < configuration.queuedCallsMax else {
            return promise.fail(ProtocolError.notProcessed("\(waiters.count) calls already wait for a slot on this connection"))
        }
        let operation = payload.method.rawValue
        let timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            if let index = waiters.firstIndex(where: { $0.token == token }) {
                waiters.remove(at: index).promise.fail(ProtocolError.deadlineExceeded(operation: operation))
            }
        }
        waiters.append(Waiter(token: token, payload: payload, upload: upload, deadline: deadline, promise: promise, timer: timer))
    }

    /// The caller stopped waiting (task cancelled) before its call started.
    func cancelWaiting(token: UInt64) {
        guard let index = waiters.firstIndex(where: { $0.token == token }) else { return }
        let waiter = waiters.remove(at: index)
        waiter.timer.cancel()
        waiter.promise.fail(CancellationError())
    }

    private func launch(_ payload: RequestPayload, upload: Bool, deadline: NIODeadline, promise: EventLoopPromise<StartedCall>) {
        guard let context else { return }
        guard nextRequestID < .max else {
            status.markUnusable()
            return promise.fail(ProtocolError.notProcessed("request ids of this connection are used up; open a new one"))
        }
        let id = nextRequestID
        nextRequestID += 1
        let remaining = deadline - .now()
        guard remaining > .zero else {
            return promise.fail(ProtocolError.deadlineExceeded(operation: payload.method.rawValue))
        }
        // The agent's own deadline is a backstop for a Cancel that never arrives: it lies a
        // margin after ours, so that our Cancel (and deadline error) normally comes first.
        let timeoutMs = max(1, Int64(remaining.nanoseconds / 1_000_000)) + Self.agentDeadlineMarginMs
        send(.request(RequestEnvelope(payload, upload: upload, timeoutMs: timeoutMs)), requestID: id)

        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let (progress, progressContinuation) = AsyncStream<ProgressEvent>.makeStream(
            bufferingPolicy: .bufferingNewest(configuration.progressEventsBufferMax))
        let (producer, download) = ChunkStreamProducer.make(windowBytes: configuration.streamWindowBytes) { bytes in
            bound.eventLoop.execute { bound.value.downloadConsumed(id, bytes) }
        }
        let gate = upload ? CreditGate(windowBytes: uploadWindowBytes) : nil
        let call = Call(method: payload.method, response: context.eventLoop.makePromise(), progress: progressContinuation,
                        download: producer, uploadGate: gate)
        let operation = payload.method.rawValue
        call.deadline = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            abandon(id, ProtocolError.deadlineExceeded(operation: operation))
        }
        calls[id] = call
        promise.succeed(StartedCall(requestID: id, response: call.response.futureResult, progress: progress,
                                    download: download, uploadGate: gate))
    }

    /// The caller no longer wants call `id` (cancelled, deadline, done early): send Cancel and
    /// fail what the caller still waits for. The slot stays taken until the terminal frame.
    func abandon(_ id: UInt32, _ reason: any Error) {
        guard let call = calls[id], !call.abandoned else { return }
        call.abandoned = true
        call.deadline?.cancel()
        send(.cancel, requestID: id)
        if !call.responded { call.response.fail(reason) }
        call.download.fail(reason)
        call.uploadGate?.fail(reason)
        call.progress.finish()
    }

    func sendUploadChunk(_ id: UInt32, _ bytes: ByteBuffer) {
        guard let context, let call = calls[id], !call.abandoned, !call.responded else { return }
        context.writeAndFlush(wrapOutboundOut(Frame.chunk(bytes, requestID: id)), promise: nil)
    }

    func endUpload(_ id: UInt32, _ payload: ChunkEndPayload) {
        guard let call = calls[id], !call.abandoned, !call.responded else { return }
        send(.chunkEnd(payload), requestID: id)
    }

    /// The upload's source threw: the call cannot complete.
    func uploadFailed(_ id: UInt32, _ error: any Error) {
        guard let call = calls[id], !call.abandoned, !call.responded else { return }
        abandon(id, ProtocolError.uploadFailed("\(error)"))
    }

    private func downloadConsumed(_ id: UInt32, _ bytes: Int) {
        guard let call = calls[id], !call.abandoned else { return }
        let increment = call.download.creditReturned(bytes)
        if increment > 0 { send(.windowUpdate(incrementBytes: UInt32(increment)), requestID: id) }
    }

    /// Sends a Ping; the promise succeeds on its Pong.
    func ping(deadline: NIODeadline, promise: EventLoopPromise<Void>) {
        guard let context, case .open = phase else {
            return promise.fail(closeReason?.asCallFailure ?? ProtocolError.connectionClosed("the connection is closed"))
        }
        let opaque = nextPing
        nextPing += 1
        pings[opaque] = promise
        send(.ping(opaque), requestID: 0)
        context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            pings.removeValue(forKey: opaque)?.fail(ProtocolError.deadlineExceeded(operation: "ping"))
        }
    }

    // MARK: Ending calls and the connection

    /// Call `id` got its terminal frame: fail what is still open with `error`, free the slot,
    /// start a waiting call.
    private func end(_ id: UInt32, failing error: ProtocolError? = nil) {
        guard let call = calls.removeValue(forKey: id) else { return }
        finish(call, failing: error ?? .connectionClosed("the call ended"))
        if goAwayLastRequestID != nil, calls.isEmpty { context?.close(promise: nil) }
        while calls.count < slotsMax, let waiter = waiters.popFirst() {
            waiter.timer.cancel()
            launch(waiter.payload, upload: waiter.upload, deadline: waiter.deadline, promise: waiter.promise)
        }
    }

    private func finish(_ call: Call, failing error: ProtocolError) {
        call.deadline?.cancel()
        if !call.responded { call.response.fail(error) }
        if call.downloading { call.download.fail(error) } else { call.download.finishEmpty() }
        call.uploadGate?.fail(error)
        call.progress.finish()
    }

    /// The connection cannot go on: remember why, and close.
    private func fail(_ reason: ProtocolError) {
        if closeReason == nil { closeReason = reason }
        status.markUnusable()
        if case .closed = phase { return }
        phase = .closed
        context?.close(promise: nil)
    }

    /// Closes the connection from the caller's side; calls in flight fail.
    func close() {
        fail(.connectionClosed("the client closed the connection"))
    }

    private func send(_ message: FrameMessage, requestID: UInt32) {
        guard let context else { preconditionFailure("writes happen only while in a pipeline") }
        do {
            let frame = try Frame(message, requestID: requestID, allocator: context.channel.allocator)
            context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
        } catch {
            preconditionFailure("\(message.frameType) does not encode: \(error)")
        }
    }
}

@available(*, unavailable)
extension ClientConnectionHandler: Sendable {}

extension ProtocolError {
    /// How a connection-level reason is reported to a call that was in flight.
    var asCallFailure: ProtocolError {
        switch self {
        case .connectionClosed, .notProcessed: self
        default: .connectionClosed("\(self)")
        }
    }

    /// How a reason is reported to `connect` (before HelloReply).
    var connectFailure: ProtocolError {
        switch self {
        case .remote, .tls, .connectFailed, .protocolViolation: self
        default: .connectFailed("\(self)")
        }
    }
}
