import NIOCore
import UpkeepHTTP
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

/// The client side of one connection: carries out what its `ClientSession` decides (PROTOCOL.md
/// sections 5 to 11). It holds what the session cannot: the channel, timers, the callers'
/// promises and their streams. Every input reaches the session on the channel's event loop.
final class ClientConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = Frame
    typealias OutboundOut = Frame
    typealias Session = ClientSession<TLSError>

    /// A caller whose call has no request id yet.
    private struct Starting {
        let deadline: NIODeadline
        let promise: EventLoopPromise<StartedCall>
        /// Armed while the call waits for a slot.
        var timer: Scheduled<Void>?
    }

    /// What a started call's caller waits on.
    private struct Streams {
        let response: EventLoopPromise<ResponseEnvelope>
        let progress: AsyncStream<ProgressEvent>.Continuation
        let download: ChunkStreamProducer
        let uploadGate: CreditGate?
        let deadline: Scheduled<Void>
    }

    private struct PingWaiter {
        let promise: EventLoopPromise<Void>
        let timer: Scheduled<Void>
    }

    private var session: Session
    private let waitsForTLS: Bool
    private let hello: EventLoopPromise<HelloReply>
    private let status: ClientStatus
    private var context: ChannelHandlerContext?
    private var helloTimer: Scheduled<Void>?
    private var starting: [UInt64: Starting] = [:]
    private var calls: [UInt32: Streams] = [:]
    private var pings: [UInt64: PingWaiter] = [:]
    private var nextPingToken: UInt64 = 1

    init(configuration: ClientConfiguration, waitsForTLS: Bool, hello: EventLoopPromise<HelloReply>, status: ClientStatus) {
        session = Session(configuration: configuration)
        self.waitsForTLS = waitsForTLS
        self.hello = hello
        self.status = status
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
        if event is TLSHandshakeCompleted { execute(session.channelSecured()) }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch error {
        case let error as FrameError:
            if case .badPayloadLength = error {
                ProtocolClient.limits.record(.frameBytes, "refused a frame from the agent at \(remote): \(error)")
            }
            execute(session.frameError(error))
        case ByteToMessageDecoderError.dataReceivedInErrorState:
            break
        case let error as TLSError:
            execute(session.tlsFailed(error))
        default:
            execute(session.channelFailed("\(error)"))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        execute(session.channelInactive())
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        execute(session.frameReceived(unwrapInboundIn(data), now: .now()))
    }

    /// Uploads wait while the agent does not read (PROTOCOL.md 7.2; `OutboundBacklogHandler`).
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        let writable = context.channel.isWritable
        for call in calls.values { call.uploadGate?.writabilityChanged(writable) }
        context.fireChannelWritabilityChanged()
    }

    // MARK: Calls (on the event loop, from ProtocolClient)

    /// Starts a call when a slot is free, or queues it (bounded) until one is. The promise gets
    /// the started call, or the reason it never started.
    func start(_ payload: RequestPayload, upload: Bool, deadline: NIODeadline, token: UInt64,
               promise: EventLoopPromise<StartedCall>) {
        starting[token] = Starting(deadline: deadline, promise: promise)
        execute(session.startCall(token: token, payload, upload: upload, deadline: deadline, now: .now()))
    }

    /// The caller stopped waiting (task cancelled) before its call started.
    func cancelWaiting(token: UInt64) {
        execute(session.waiterCancelled(token: token))
    }

    /// The caller no longer wants call `id` (cancelled, deadline, done early): Cancel is sent
    /// and what the caller still waits for fails with `reason`.
    func abandon(_ id: UInt32, _ reason: any Error) {
        execute(session.abandon(requestID: id, (reason as? ProtocolError).map { .error($0) } ?? .cancelled))
    }

    func sendUploadChunk(_ id: UInt32, _ bytes: ByteBuffer) {
        execute(session.uploadChunkReady(bytes, requestID: id))
    }

    func endUpload(_ id: UInt32, _ payload: ChunkEndPayload) {
        execute(session.uploadEnded(payload, requestID: id))
    }

    /// The upload's source threw: the call cannot complete.
    func uploadFailed(_ id: UInt32, _ error: any Error) {
        execute(session.uploadFailed("\(error)", requestID: id))
    }

    /// Sends a Ping (or joins the one outstanding); the promise succeeds on its Pong.
    func ping(deadline: NIODeadline, promise: EventLoopPromise<Void>) {
        let token = nextPingToken
        nextPingToken += 1
        let timer = schedule(deadline: deadline) { $0.pingDeadlinePassed(token: token) }
        pings[token] = PingWaiter(promise: promise, timer: timer)
        execute(session.pingRequested(token: token))
    }

    /// Closes the connection from the caller's side; calls in flight fail.
    func close() {
        execute(session.close())
    }

    // MARK: Carrying out actions

    private func execute(_ actions: [Session.Action]) {
        for action in actions {
            switch action {
            case .send(let message, let id):
                send(message, requestID: id)
            case .sendChunk(let bytes, let id):
                pipelineContext.writeAndFlush(wrapOutboundOut(Frame.chunk(bytes, requestID: id)), promise: nil)
            case .close:
                context?.close(promise: nil)
            case .markUnusable:
                status.markUnusable()
            case .startHelloTimer(let timeout):
                helloTimer = schedule(deadline: .now() + TimeAmount(timeout)) { $0.helloTimerFired() }
            case .cancelHelloTimer:
                helloTimer?.cancel()
                helloTimer = nil
            case .succeedHello(let reply):
                hello.succeed(reply)
            case .failHello(let failure):
                hello.fail(failure)
            case .queueCall(let token):
                guard let deadline = starting[token]?.deadline else { preconditionFailure("call \(token) was never started") }
                starting[token]?.timer = schedule(deadline: deadline) { $0.waiterDeadlinePassed(token: token) }
            case .startCall(let token, let id, let uploadCreditBytes):
                startCall(token, id, uploadCreditBytes: uploadCreditBytes)
            case .reportHelloTimeout(let timeout):
                ProtocolClient.limits.record(.helloTimeout, "no HelloReply from the agent at \(remote) within \(timeout) (connectTimeout)")
            case .reportQueueFull(let waiting):
                ProtocolClient.limits.record(.queuedCalls, "refused a call to \(remote): \(waiting) calls already wait for a slot (queuedCallsMax)")
            case .refuseCall(let token, let failure):
                guard let caller = starting.removeValue(forKey: token) else { break }
                caller.timer?.cancel()
                caller.promise.fail(Self.error(failure))
            case .deliverResponse(let envelope, let id):
                calls[id]?.response.succeed(envelope)
            case .deliverProgress(let event, let id):
                if case .dropped = calls[id]?.progress.yield(event) {
                    ProtocolClient.limits.record(.progressEvents, "dropped the oldest progress event of call \(id) to \(remote): "
                                                 + "\(session.configuration.progressEventsBufferMax) not read yet (progressEventsBufferMax)")
                }
            case .deliverDownloadChunk(let bytes, let id):
                calls[id]?.download.receive(bytes)
            case .endDownload(let end, let id):
                calls[id]?.download.end(end)
            case .grantUploadCredit(let bytes, let id):
                calls[id]?.uploadGate?.grant(bytes)
            case .abandonCall(let failure, let id):
                guard let call = calls[id] else { break }
                let error = Self.error(failure)
                call.deadline.cancel()
                call.response.fail(error)
                call.download.fail(error)
                call.uploadGate?.fail(error)
                call.progress.finish()
            case .endCall(let failure, let downloadRunning, let id):
                guard let call = calls.removeValue(forKey: id) else { break }
                let error = failure ?? ProtocolError.connectionClosed("the call ended")
                call.deadline.cancel()
                call.response.fail(error)  // does nothing once the response arrived
                if downloadRunning { call.download.fail(error) } else { call.download.finishEmpty() }
                call.uploadGate?.fail(error)
                call.progress.finish()
            case .succeedPings(let tokens):
                for token in tokens {
                    guard let waiter = pings.removeValue(forKey: token) else { continue }
                    waiter.timer.cancel()
                    waiter.promise.succeed()
                }
            case .failPings(let tokens, let failure):
                for token in tokens {
                    guard let waiter = pings.removeValue(forKey: token) else { continue }
                    waiter.timer.cancel()
                    waiter.promise.fail(failure)
                }
            }
        }
    }

    private func startCall(_ token: UInt64, _ id: UInt32, uploadCreditBytes: Int?) {
        guard let caller = starting.removeValue(forKey: token) else { preconditionFailure("call \(token) was never started") }
        caller.timer?.cancel()
        let bound = NIOLoopBound(self, eventLoop: pipelineContext.eventLoop)
        let (progress, progressContinuation) = AsyncStream<ProgressEvent>.makeStream(
            bufferingPolicy: .bufferingNewest(session.configuration.progressEventsBufferMax))
        let (producer, download) = ChunkStreamProducer.make { bytes in
            bound.eventLoop.execute { bound.value.execute(bound.value.session.downloadConsumed(bytes: bytes, requestID: id)) }
        }
        let writable = pipelineContext.channel.isWritable
        let gate = uploadCreditBytes.map { CreditGate(creditBytes: $0, isWritable: writable) }
        let response = pipelineContext.eventLoop.makePromise(of: ResponseEnvelope.self)
        let deadline = schedule(deadline: caller.deadline) { $0.callDeadlinePassed(requestID: id) }
        calls[id] = Streams(response: response, progress: progressContinuation, download: producer, uploadGate: gate, deadline: deadline)
        caller.promise.succeed(StartedCall(requestID: id, response: response.futureResult, progress: progress,
                                           download: download, uploadGate: gate))
    }

    private static func error(_ failure: Session.CallFailure) -> any Error {
        switch failure {
        case .cancelled: CancellationError()
        case .error(let error): error
        }
    }

    /// Calls `input` on the session at `deadline`, on the event loop.
    private func schedule(deadline: NIODeadline, _ input: @escaping (inout Session) -> [Session.Action]) -> Scheduled<Void> {
        pipelineContext.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in execute(input(&session)) }
    }

    /// The agent's address, for the log.
    private var remote: String { context?.channel.remoteAddress?.description ?? "an unknown address" }

    private var pipelineContext: ChannelHandlerContext {
        guard let context else { preconditionFailure("used only while the handler is in a pipeline") }
        return context
    }

    private func send(_ message: FrameMessage, requestID: UInt32) {
        do {
            let frame = try Frame(message, requestID: requestID, allocator: pipelineContext.channel.allocator)
            pipelineContext.writeAndFlush(wrapOutboundOut(frame), promise: nil)
        } catch {
            preconditionFailure("\(message.frameType) does not encode: \(error)")
        }
    }
}

@available(*, unavailable)
extension ClientConnectionHandler: Sendable {}
