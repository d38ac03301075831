import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import UpkeepHTTP

/// Tells the connection's handler that bytes arrived, before HTTP decoding: a request's first
/// byte starts its header read time, which the decoded head alone could not show.
final class ByteWatch: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let handler: HTTPServerHandler

    init(handler: HTTPServerHandler) { self.handler = handler }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        handler.bytesArrived()
        context.fireChannelRead(data)
    }
}

/// Carries out, for one connection, what `ConnectionDeadlines` decides about time bounds,
/// reads each request whole within the size bounds, hands it to the responder and writes the
/// answer. Loop-bound: every method runs on the connection's event loop.
final class HTTPServerHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// What every connection of one server shares.
    struct Shared: Sendable {
        let configuration: HTTPServer.Configuration
        let responder: HTTPServer.Responder
        let limits: LimitLog<ServerLimit>
        let connections: OpenConnections
    }

    /// Bodies go to the socket in pieces of at most this size.
    static let writeBytesMax = 64 << 10

    private let shared: Shared
    private let connection: Int
    /// The place the first request's head found; nil before it.
    private var placement: OpenConnections.Placement?
    private var machine: ConnectionDeadlines
    private var context: ChannelHandlerContext?
    private var timer: Scheduled<Void>?
    private var timerAt: Int64?
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    /// The current request was answered early (413, 503 on a reserve connection): the rest of
    /// it is dropped and the connection closes.
    private var answeredEarly = false
    /// The responder withheld its answer: the request time bound closes the connection quietly.
    private var withheld = false
    /// Counts requests handed to a blocking or async responder, so that an answer arriving
    /// after the request time bound answered 503 is dropped.
    private var dispatched = 0
    /// A complete request not answered yet because the client has not read the answers before
    /// it (the channel is not writable): answered once it is (or cut by `OutboundBacklogHandler`).
    private var waitingForWritable: (request: HTTPServerRequest, head: HTTPRequestHead)?
    /// The answer whose body is streaming now (a watch), until it ends or the connection closes.
    private var streaming: HTTPResponseStream?

    init(shared: Shared, connection: Int) {
        self.shared = shared
        self.connection = connection
        machine = ConnectionDeadlines(bounds: shared.configuration.bounds, now: Self.now())
    }

    private static func now() -> Int64 { Int64(NIODeadline.now().uptimeNanoseconds) }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        rearm()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        stop()
    }

    func channelInactive(context: ChannelHandlerContext) {
        stop()
        context.fireChannelInactive()
    }

    private func stop() {
        if let stream = streaming {
            streaming = nil
            stream.closed()
        }
        machine.handle(.closing, now: Self.now())
        timer?.cancel()
        timer = nil
        timerAt = nil
    }

    func bytesArrived() {
        handle(.bytesArrived)
    }

    private func handle(_ event: ConnectionDeadlines.Event) {
        machine.handle(event, now: Self.now())
        rearm()
    }

    /// Schedules the machine's deadline, unless the timer already runs for it.
    private func rearm() {
        guard let context else { return }
        let deadline = machine.deadline
        guard deadline?.at != timerAt else { return }
        timer?.cancel()
        timer = nil
        timerAt = deadline?.at
        guard let deadline else { return }
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(deadline: NIODeadline.uptimeNanoseconds(UInt64(max(0, deadline.at)))) {
            loopBound.value.deadlineReached()
        }
    }

    private func deadlineReached() {
        timer = nil
        timerAt = nil
        guard let context else { return }
        guard let reached = machine.reached(now: Self.now()) else {
            rearm()
            return
        }
        let configuration = shared.configuration
        let bound: String = switch reached.limit {
        case .headerReadTimeout: "no complete request head within \(configuration.headerReadTimeoutSeconds) s"
        case .requestTimeout: "no complete request and answer within \(configuration.requestTimeoutSeconds) s"
        case .idleTimeout: "no request within \(configuration.idleTimeoutSeconds) s"
        default: reached.limit.rawValue
        }
        shared.limits.record(reached.limit, "closed connection \(connection) from \(peer(context)): \(bound)")
        if let status = reached.answer, !withheld, !answeredEarly {
            write(HTTPServerResponse.text("\(bound)\n", status: status), keepAlive: false, isHead: head?.method == .HEAD, context: context)
        } else {
            context.close(promise: nil)
        }
    }

    private func peer(_ context: ChannelHandlerContext) -> String {
        context.channel.remoteAddress.map { "\($0)" } ?? "an unknown peer"
    }

    // MARK: - Requests

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let requestHead):
            handle(.headArrived)
            head = requestHead
            body = []
            answeredEarly = false
            withheld = false
            if placement == nil {
                let path = String(requestHead.uri.prefix { $0 != "?" })
                let configuration = shared.configuration
                placement = shared.connections.place(context.channel, reservedPath: configuration.reservedPaths.contains(path))
                if placement == .full {
                    shared.limits.record(.connections, "answered 503 to a request from \(peer(context)): \(configuration.connectionsMax) connections "
                        + "served at once (connectionsMax)" + (configuration.reservedPaths.contains(path) ? ", and the reserve" : ""))
                    answerEarly(.text("the server is at its connection limit (\(configuration.connectionsMax)); retry later\n", status: 503),
                                context: context)
                    return
                }
            }
            if let length = requestHead.headers.first(name: "content-length").flatMap({ Int($0) }), length > shared.configuration.bodyBytesMax {
                refuseBody(context: context)
            }
        case .body(var buffer):
            guard !answeredEarly else { return }
            guard body.count + buffer.readableBytes <= shared.configuration.bodyBytesMax else {
                refuseBody(context: context)
                return
            }
            body += buffer.readBytes(length: buffer.readableBytes) ?? []
        case .end:
            guard !answeredEarly, let head else { return }
            handle(.requestArrived)
            let request = HTTPServerRequest(method: head.method.rawValue, uri: head.uri, accept: head.headers.first(name: "accept") ?? "*/*",
                                            contentType: head.headers.first(name: "content-type") ?? "", body: body,
                                            headers: head.headers.map { ($0.name.lowercased(), $0.value) }, connection: connection)
            body = []
            guard context.channel.isWritable else {
                waitingForWritable = (request, head)
                return
            }
            respond(to: request, head: head, context: context)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, let waiting = waitingForWritable {
            waitingForWritable = nil
            if case .responding = machine.phase { respond(to: waiting.request, head: waiting.head, context: context) }
        }
        context.fireChannelWritabilityChanged()
    }

    private func refuseBody(context: ChannelHandlerContext) {
        shared.limits.record(.bodyBytes, "refused a request body larger than \(shared.configuration.bodyBytesMax) bytes from \(peer(context))")
        answerEarly(.text("request body larger than \(shared.configuration.bodyBytesMax) bytes\n", status: 413), context: context)
    }

    /// Answers before the request is complete, then closes: the rest of it is never read.
    private func answerEarly(_ response: HTTPServerResponse, context: ChannelHandlerContext) {
        answeredEarly = true
        write(response, keepAlive: false, isHead: head?.method == .HEAD, context: context)
    }

    private func respond(to request: HTTPServerRequest, head: HTTPRequestHead, context: ChannelHandlerContext) {
        switch shared.responder {
        case .nonBlocking(let answer):
            deliver(answer(request), head: head, context: context)
        case .blocking(let answer):
            later(NIOThreadPool.singleton.runIfActive(eventLoop: context.eventLoop) { answer(request) }, head: head, context: context)
        case .async(let answer):
            let promise = context.eventLoop.makePromise(of: HTTPServerResponse.self)
            promise.completeWithTask { await answer(request) }
            later(promise.futureResult, head: head, context: context)
        }
    }

    /// Delivers an answer that comes later, unless the request time bound answered 503 meanwhile
    /// or the connection closed.
    private func later(_ answer: EventLoopFuture<HTTPServerResponse>, head: HTTPRequestHead, context: ChannelHandlerContext) {
        dispatched += 1
        let ticket = dispatched
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        answer.whenComplete { result in
            let (handler, context) = loopBound.value
            guard ticket == handler.dispatched, case .responding = handler.machine.phase else {
                if case .success(let response) = result, case .stream(let stream) = response.delivery { stream.closed() }
                return
            }
            switch result {
            case .success(let response): handler.deliver(response, head: head, context: context)
            case .failure: handler.deliver(.text("the server is shutting down\n", status: 503), head: head, context: context)
            }
        }
    }

    private func deliver(_ response: HTTPServerResponse, head: HTTPRequestHead, context: ChannelHandlerContext) {
        switch response.delivery {
        case .withhold:
            withheld = true
        case .closeWithoutAnswer:
            context.close(promise: nil)
        case .stream(let stream):
            let keepAlive = head.isKeepAlive && placement == .placed
            startStream(stream, response: response, keepAlive: keepAlive, context: context)
        case .answer:
            // A 400 means the request was not understood: what follows it on the connection cannot be trusted either.
            let keepAlive = head.isKeepAlive && !response.closesConnection && placement == .placed && response.status != 400
            write(response, keepAlive: keepAlive, isHead: head.method == .HEAD, context: context)
        }
    }

    /// Writes a whole answer; without `keepAlive` the connection closes once it is written.
    private func write(_ response: HTTPServerResponse, keepAlive: Bool, isHead: Bool, context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(.head(Self.head(of: response, keepAlive: keepAlive, streamed: false))), promise: nil)
        if !isHead {
            var offset = 0
            while offset < response.body.count {
                let end = min(response.body.count, offset + Self.writeBytesMax)
                context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: response.body[offset..<end])))),
                              promise: nil)
                offset = end
            }
        }
        // Answered before the end is written: writing it hands the next pipelined request (held
        // by NIO's HTTPServerPipelineHandler) to channelRead at once, which must find the
        // connection idle, not still responding.
        handle(.answerWritten(keepAlive: keepAlive))
        let written = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            written.whenComplete { _ in channel.close(promise: nil) }
        }
    }

    /// The answer's head: its headers, `Content-Length` (a streamed answer: `Transfer-Encoding:
    /// chunked`) and `Connection` unless it sets them.
    private static func head(of response: HTTPServerResponse, keepAlive: Bool, streamed: Bool) -> HTTPResponseHead {
        var headers = HTTPHeaders()
        if !response.contentType.isEmpty { headers.add(name: "Content-Type", value: response.contentType) }
        for (name, value) in response.headers { headers.add(name: name, value: value) }
        if streamed {
            headers.replaceOrAdd(name: "Transfer-Encoding", value: "chunked")
            headers.remove(name: "Content-Length")
        } else if !headers.contains(name: "content-length") && !headers.contains(name: "transfer-encoding") {
            headers.add(name: "Content-Length", value: String(response.body.count))
        }
        if !headers.contains(name: "connection") { headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close") }
        return HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: response.status), headers: headers)
    }

    /// Writes a streamed answer's head, then each piece its producer sends, until it ends.
    private func startStream(_ stream: HTTPResponseStream, response: HTTPServerResponse, keepAlive: Bool, context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(.head(Self.head(of: response, keepAlive: keepAlive, streamed: true))), promise: nil)
        handle(.streamStarted)
        streaming = stream
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        stream.attach { piece in
            eventLoop.execute {
                let (handler, context) = loopBound.value
                handler.streamed(piece, stream: stream, keepAlive: keepAlive, context: context)
            }
        }
    }

    private func streamed(_ piece: HTTPResponseStream.Piece, stream: HTTPResponseStream, keepAlive: Bool, context: ChannelHandlerContext) {
        guard streaming === stream, context.channel.isActive else { return }
        switch piece {
        case .bytes(let bytes):
            guard !bytes.isEmpty else { return }
            context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: bytes)))), promise: nil)
        case .end:
            streaming = nil
            handle(.answerWritten(keepAlive: keepAlive))
            let written = context.writeAndFlush(wrapOutboundOut(.end(nil)))
            if !keepAlive {
                let channel = context.channel
                written.whenComplete { _ in channel.close(promise: nil) }
            }
            stream.closed()
        }
    }

    // MARK: - Malformed requests

    /// With NIO's own error handler left out, this answers what the decoder refuses: 431 for a
    /// head beyond `headerBytesMax`, 400 for anything else; the decoder then closes.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parserError = error as? HTTPParserError else {
            context.close(promise: nil)
            return
        }
        let response: HTTPServerResponse
        if case .headerOverflow = parserError {
            shared.limits.record(.headerBytes, "refused a request head larger than \(shared.configuration.headerBytesMax) bytes from \(peer(context))")
            response = .text("request head larger than \(shared.configuration.headerBytesMax) bytes\n", status: 431)
        } else {
            response = .text("malformed HTTP/1.1 request\n", status: 400)
        }
        switch machine.phase {
        case .idle, .readingHead: write(response, keepAlive: false, isHead: false, context: context)
        case .readingBody, .responding, .streaming, .closed: context.close(promise: nil)
        }
    }
}
