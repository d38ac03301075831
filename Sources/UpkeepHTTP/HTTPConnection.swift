#if canImport(Glibc)
import Glibc
#endif
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import UpkeepTLS

/// A failed exchange, and whether any byte of a response had arrived: a keep-alive connection
/// the server closed while idle fails with nothing received, and is safe to replace at once.
struct ExchangeFailure: Error {
    var error: HTTPClientError
    var nothingReceived: Bool
}

/// One HTTP/1.1 connection (TLS first when the origin is https), carrying one request at a time.
///
/// It is ready only once TCP is connected and, for https, the TLS handshake verified the
/// server's certificate for the origin's host. Every exchange has a response timeout and a
/// body bound; exceeding either closes the connection.
final class HTTPConnection: Sendable {
    let origin: Origin
    let channel: any Channel
    private let collector: NIOLoopBound<ResponseCollector>

    private init(origin: Origin, channel: any Channel, collector: NIOLoopBound<ResponseCollector>) {
        self.origin = origin
        self.channel = channel
        self.collector = collector
    }

    /// `tlsServerName`: verify the certificate for (and send as SNI) this name instead of the
    /// origin's host (a kubeconfig's `tls-server-name`).
    static func connect(origin: Origin, tls: TLSContext?, tlsServerName: String? = nil, tlsPeer: PeerExpectation? = nil, group: any EventLoopGroup,
                        timeoutSeconds: Double) async throws -> HTTPConnection {
        let loop = group.next()
        let ready = loop.makePromise(of: Void.self)
        // The collector, kept as the channel is made: a peer that refuses the handshake may close
        // the channel (and empty its pipeline) before it could be looked up afterwards.
        let made = NIOLockedValueBox<NIOLoopBound<ResponseCollector>?>(nil)
        let timeout = TimeAmount.nanoseconds(Int64(timeoutSeconds * 1e9))
        if origin.scheme == .https, tls == nil {
            throw HTTPClientError.tls(origin: origin.description, reason: "no TLS context configured")
        }
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(timeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let operations = channel.pipeline.syncOperations
                    if origin.scheme == .https, let tls {
                        let name = tlsServerName ?? origin.host
                        let isAddress = name.contains(":") || name.allSatisfy { $0.isNumber || $0 == "." }
                        try operations.addHandler(tls.makeClientHandler(expecting: tlsPeer ?? .host(name), serverName: isAddress ? nil : name,
                                                                        handshakeTimeout: timeout))
                    }
                    try operations.addHTTPClientHandlers()
                    let collector = ResponseCollector(origin: origin, ready: ready, waitsForTLS: origin.scheme == .https)
                    try operations.addHandler(collector)
                    made.withLockedValue { $0 = NIOLoopBound(collector, eventLoop: channel.eventLoop) }
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: origin.host, port: origin.port).get()
        } catch {
            ready.fail(error)
            throw Self.connectError(error, origin: origin, timeoutSeconds: timeoutSeconds)
        }
        // TCP is up; the TLS handshake (bounded by the handler's own timeout) may still run.
        let deadline = loop.scheduleTask(in: timeout) {
            ready.fail(HTTPClientError.connectTimeout(origin: origin.description, seconds: timeoutSeconds))
            channel.close(promise: nil)
        }
        do {
            try await ready.futureResult.get()
            deadline.cancel()
        } catch {
            deadline.cancel()
            channel.close(promise: nil)
            throw error as? HTTPClientError ?? HTTPClientError.connectFailed(origin: origin.description, reason: "\(error)")
        }
        guard let collector = made.withLockedValue({ $0 }) else {
            channel.close(promise: nil)
            throw HTTPClientError.connectFailed(origin: origin.description, reason: "the connection was set up without its HTTP handlers")
        }
        return HTTPConnection(origin: origin, channel: channel, collector: collector)
    }

    private static func connectError(_ error: any Error, origin: Origin, timeoutSeconds: Double) -> HTTPClientError {
        if let error = error as? HTTPClientError { return error }
        if case ChannelError.connectTimeout = error { return .connectTimeout(origin: origin.description, seconds: timeoutSeconds) }
        if let error = error as? NIOConnectionError {
            if let first = error.connectionErrors.first {
                let reason = (first.error as? IOError).map { String(cString: strerror($0.errnoCode)).lowercased() } ?? "\(first.error)"
                return .connectFailed(origin: origin.description, reason: reason)
            }
            if let resolution = error.dnsAAAAError ?? error.dnsAError {
                return .connectFailed(origin: origin.description, reason: "cannot resolve \(origin.host): \(resolution)")
            }
        }
        return .connectFailed(origin: origin.description, reason: "\(error)")
    }

    var isActive: Bool { channel.isActive }

    /// Sends one request and waits for the complete response, at most `timeoutSeconds`.
    /// Throws `ExchangeFailure`. Cancelling the task closes the connection.
    func exchange(_ head: HTTPRequestHead, body: [UInt8], url: String, timeoutSeconds: Double,
                  bodyBytesMax: Int) async throws -> (head: HTTPResponseHead, body: [UInt8])
    {
        let loop = channel.eventLoop
        let promise = loop.makePromise(of: (head: HTTPResponseHead, body: [UInt8]).self)
        let channel = self.channel
        let collector = self.collector
        loop.execute {
            let handler = collector.value
            guard handler.pending == nil else {
                promise.fail(ExchangeFailure(error: .invalidResponse(url: url, reason: "connection already busy"), nothingReceived: true))
                return
            }
            guard channel.isActive else {
                promise.fail(ExchangeFailure(error: handler.failure ?? .connectionClosed(url: url), nothingReceived: true))
                return
            }
            handler.begin(promise: promise, url: url, bodyBytesMax: bodyBytesMax)
            handler.timeout = loop.scheduleTask(in: .nanoseconds(Int64(timeoutSeconds * 1e9))) {
                collector.value.fail(.responseTimeout(url: url, seconds: timeoutSeconds))
                channel.close(promise: nil)
            }
            channel.write(HTTPClientRequestPart.head(head), promise: nil)
            if !body.isEmpty {
                channel.write(HTTPClientRequestPart.body(.byteBuffer(channel.allocator.buffer(bytes: body))), promise: nil)
            }
            channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        }
        return try await withTaskCancellationHandler {
            try await promise.futureResult.get()
        } onCancel: {
            channel.close(promise: nil)
        }
    }

    /// Sends one request whose answer streams (a Kubernetes watch) and returns its head, which
    /// must arrive within `headTimeoutSeconds`; the body's pieces then go to `sink` as they
    /// arrive, the last one `.end` or `.failed`. The whole exchange is cut at `timeoutSeconds`
    /// (`.failed(.responseTimeout)`). The connection closes after it: it is never reused.
    func stream(_ head: HTTPRequestHead, url: String, headTimeoutSeconds: Double, timeoutSeconds: Double,
                sink: @escaping @Sendable (HTTPStreamPiece) -> Void) async throws -> HTTPResponseHead
    {
        let loop = channel.eventLoop
        let promise = loop.makePromise(of: HTTPResponseHead.self)
        let channel = self.channel
        let collector = self.collector
        loop.execute {
            let handler = collector.value
            guard handler.pending == nil, channel.isActive else {
                promise.fail(ExchangeFailure(error: handler.failure ?? .connectionClosed(url: url), nothingReceived: true))
                return
            }
            handler.beginStream(head: promise, sink: sink, url: url)
            handler.headTimeout = loop.scheduleTask(in: .nanoseconds(Int64(headTimeoutSeconds * 1e9))) {
                collector.value.fail(.responseTimeout(url: url, seconds: headTimeoutSeconds))
                channel.close(promise: nil)
            }
            handler.timeout = loop.scheduleTask(in: .nanoseconds(Int64(timeoutSeconds * 1e9))) {
                collector.value.fail(.responseTimeout(url: url, seconds: timeoutSeconds))
                channel.close(promise: nil)
            }
            channel.writeAndFlush(HTTPClientRequestPart.head(head), promise: nil)
            channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        }
        return try await withTaskCancellationHandler {
            try await promise.futureResult.get()
        } onCancel: {
            channel.close(promise: nil)
        }
    }

    func close() async {
        try? await channel.close()
    }
}

/// A piece of a streamed answer's body, as `HTTPConnection.stream` hands it over.
enum HTTPStreamPiece: Sendable {
    case bytes([UInt8])
    case end
    case failed(HTTPClientError)
}

/// Completes the connection's readiness, then collects one response at a time.
final class ResponseCollector: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    private let origin: Origin
    private var ready: EventLoopPromise<Void>?
    private let waitsForTLS: Bool

    private(set) var pending: EventLoopPromise<(head: HTTPResponseHead, body: [UInt8])>?
    var timeout: Scheduled<Void>?
    /// A streamed answer: its head's promise until the head arrives, and where its body goes.
    private var streamHead: EventLoopPromise<HTTPResponseHead>?
    private var streamSink: (@Sendable (HTTPStreamPiece) -> Void)?
    var headTimeout: Scheduled<Void>?
    private var url = ""
    private var bodyBytesMax = 0
    private var head: HTTPResponseHead?
    private var body: [UInt8] = []
    /// Why the connection broke, so a later request reports the cause rather than "closed".
    private(set) var failure: HTTPClientError?

    init(origin: Origin, ready: EventLoopPromise<Void>, waitsForTLS: Bool) {
        self.origin = origin
        self.ready = ready
        self.waitsForTLS = waitsForTLS
    }

    func begin(promise: EventLoopPromise<(head: HTTPResponseHead, body: [UInt8])>, url: String, bodyBytesMax: Int) {
        pending = promise
        self.url = url
        self.bodyBytesMax = bodyBytesMax
        head = nil
        body = []
    }

    func beginStream(head: EventLoopPromise<HTTPResponseHead>, sink: @escaping @Sendable (HTTPStreamPiece) -> Void, url: String) {
        streamHead = head
        streamSink = sink
        self.url = url
    }

    /// The streamed answer ended: tells its reader, once.
    private func endStream(_ piece: HTTPStreamPiece) {
        timeout?.cancel()
        timeout = nil
        headTimeout?.cancel()
        headTimeout = nil
        let (head, sink) = (streamHead, streamSink)
        streamHead = nil
        streamSink = nil
        if case .failed(let error) = piece { head?.fail(ExchangeFailure(error: error, nothingReceived: true)) }
        sink?(piece)
    }

    func fail(_ error: HTTPClientError) {
        if streamSink != nil {
            endStream(.failed(error))
            return
        }
        timeout?.cancel()
        timeout = nil
        let promise = pending
        let nothingReceived = head == nil
        pending = nil
        head = nil
        body = []
        promise?.fail(ExchangeFailure(error: error, nothingReceived: nothingReceived))
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive, !waitsForTLS { markReady() }
    }

    func channelActive(context: ChannelHandlerContext) {
        if !waitsForTLS { markReady() }
        context.fireChannelActive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is TLSHandshakeCompleted { markReady() }
        context.fireUserInboundEventTriggered(event)
    }

    private func markReady() {
        ready?.succeed()
        ready = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case let .head(responseHead):
            // 1xx answers precede the real one.
            guard responseHead.status.code >= 200 || responseHead.status.code == 101 else { return }
            if streamSink != nil {
                headTimeout?.cancel()
                headTimeout = nil
                streamHead?.succeed(responseHead)
                streamHead = nil
                return
            }
            head = responseHead
            body = []
        case var .body(buffer):
            if let sink = streamSink {
                sink(.bytes(buffer.readBytes(length: buffer.readableBytes) ?? []))
                return
            }
            guard pending != nil else { return }
            guard body.count + buffer.readableBytes <= bodyBytesMax else {
                fail(.responseTooLarge(url: url, bytesMax: bodyBytesMax))
                context.close(promise: nil)
                return
            }
            body += buffer.readBytes(length: buffer.readableBytes) ?? []
        case .end:
            if streamSink != nil {
                endStream(.end)
                context.close(promise: nil)
                return
            }
            guard let head, let promise = pending else {
                // An answer nobody asked for: the connection cannot be trusted any more.
                context.close(promise: nil)
                return
            }
            timeout?.cancel()
            timeout = nil
            let result = (head: head, body: body)
            self.head = nil
            body = []
            pending = nil
            if !head.isKeepAlive { context.close(promise: nil) }
            promise.succeed(result)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let mapped: HTTPClientError = if let tls = error as? TLSError {
            .tls(origin: origin.description, reason: tls.description)
        } else if let client = error as? HTTPClientError {
            client
        } else {
            .invalidResponse(url: url.isEmpty ? origin.description : url, reason: "\(error)")
        }
        failure = failure ?? mapped
        ready?.fail(mapped)
        ready = nil
        fail(mapped)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        ready?.fail(failure ?? .connectFailed(origin: origin.description, reason: "the server closed the connection while connecting"))
        ready = nil
        fail(failure ?? .connectionClosed(url: url))
        context.fireChannelInactive()
    }
}
