import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import UpkeepPKI
import UpkeepTLS

/// Why a request to the API server got no HTTP answer.
public enum KubeTransportError: Error, Equatable, Sendable, CustomStringConvertible {
    case connectFailed(String, String)
    case tls(String)
    case connectionClosed
    case timeout(seconds: Double)
    case responseTooLarge(bytesMax: Int)
    case invalidResponse(String)
    case tooManyWaiters(Int)
    case shutDown

    public var description: String {
        switch self {
        case .connectFailed(let server, let reason): "cannot connect to the Kubernetes API at \(server): \(reason)"
        case .tls(let reason): "TLS with the Kubernetes API failed: \(reason)"
        case .connectionClosed: "the Kubernetes API closed the connection before answering"
        case .timeout(let seconds): "the Kubernetes API did not answer within \(seconds) s"
        case .responseTooLarge(let bytesMax): "the Kubernetes API answered with more than \(bytesMax) bytes"
        case .invalidResponse(let reason): "the Kubernetes API sent an invalid response: \(reason)"
        case .tooManyWaiters(let count): "more than \(count) requests are waiting for a connection to the Kubernetes API"
        case .shutDown: "the Kubernetes client was shut down"
        }
    }
}

/// One HTTP/1.1 response.
struct HTTPReply: Sendable {
    var status: Int
    var headers: HTTPHeaders
    var body: [UInt8]
}

/// One keep-alive HTTP/1.1 connection carrying one request at a time.
final class HTTPConnection: Sendable {
    let channel: any Channel
    private let handler: NIOLoopBound<ReplyHandler>

    private init(channel: any Channel, handler: NIOLoopBound<ReplyHandler>) {
        self.channel = channel
        self.handler = handler
    }

    static func connect(host: String, port: Int, tls: TLSContext?, expectedHost: String, group: any EventLoopGroup,
                        connectTimeoutSeconds: Int64, bodyBytesMax: Int) async throws -> HTTPConnection
    {
        // Failures seen before the caller holds the handler (a TLS refusal can close the
        // channel right after connect) are kept here so the cause is not lost.
        let earlyFailure = NIOLockedValueBox<KubeTransportError?>(nil)
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(.seconds(connectTimeoutSeconds))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        let isAddress = expectedHost.allSatisfy { $0.isNumber || $0 == "." || $0 == ":" }
                        try channel.pipeline.syncOperations.addHandler(
                            tls.makeClientHandler(expecting: .host(expectedHost), serverName: isAddress ? nil : expectedHost))
                    }
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(ReplyHandler(bodyBytesMax: bodyBytesMax, earlyFailure: earlyFailure))
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: host, port: port).get()
        } catch {
            throw KubeTransportError.connectFailed("\(host):\(port)", "\(error)")
        }
        let handler: NIOLoopBound<ReplyHandler>
        do {
            handler = try await channel.eventLoop.submit {
                NIOLoopBound(try channel.pipeline.syncOperations.handler(type: ReplyHandler.self), eventLoop: channel.eventLoop)
            }.get()
        } catch {
            throw earlyFailure.withLockedValue { $0 } ?? KubeTransportError.connectionClosed
        }
        return HTTPConnection(channel: channel, handler: handler)
    }

    var isActive: Bool { channel.isActive }

    func send(_ head: HTTPRequestHead, body: [UInt8], timeoutSeconds: Double) async throws -> HTTPReply {
        let loop = channel.eventLoop
        let promise = loop.makePromise(of: HTTPReply.self)
        let channel = self.channel
        let handler = self.handler
        loop.execute {
            let replies = handler.value
            guard replies.pending == nil else {
                promise.fail(KubeTransportError.invalidResponse("connection already busy"))
                return
            }
            guard channel.isActive else {
                promise.fail(replies.failure ?? KubeTransportError.connectionClosed)
                return
            }
            replies.pending = promise
            replies.timeout = loop.scheduleTask(in: .milliseconds(Int64(timeoutSeconds * 1000))) {
                handler.value.fail(KubeTransportError.timeout(seconds: timeoutSeconds))
                channel.close(promise: nil)
            }
            channel.write(HTTPClientRequestPart.head(head), promise: nil)
            if !body.isEmpty {
                channel.write(HTTPClientRequestPart.body(.byteBuffer(channel.allocator.buffer(bytes: body))), promise: nil)
            }
            channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        }
        return try await promise.futureResult.get()
    }

    func close() async {
        try? await channel.close()
    }
}

/// Collects one response at a time and completes the waiting request with it.
final class ReplyHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    let bodyBytesMax: Int
    var pending: EventLoopPromise<HTTPReply>?
    var timeout: Scheduled<Void>?
    var head: HTTPResponseHead?
    var body: [UInt8] = []
    /// Why the connection failed (a TLS refusal arrives before the channel closes), so a
    /// request sent afterwards reports the cause rather than just "closed".
    var failure: KubeTransportError?

    let earlyFailure: NIOLockedValueBox<KubeTransportError?>

    init(bodyBytesMax: Int, earlyFailure: NIOLockedValueBox<KubeTransportError?>) {
        self.bodyBytesMax = bodyBytesMax
        self.earlyFailure = earlyFailure
    }

    func fail(_ error: any Error) {
        timeout?.cancel()
        timeout = nil
        let promise = pending
        pending = nil
        head = nil
        body = []
        promise?.fail(error)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let responseHead):
            head = responseHead
            body = []
        case .body(var buffer):
            if body.count + buffer.readableBytes > bodyBytesMax {
                fail(KubeTransportError.responseTooLarge(bytesMax: bodyBytesMax))
                context.close(promise: nil)
                return
            }
            body += buffer.readBytes(length: buffer.readableBytes) ?? []
        case .end:
            guard let head else { return }
            timeout?.cancel()
            timeout = nil
            let reply = HTTPReply(status: Int(head.status.code), headers: head.headers, body: body)
            let keepAlive = head.isKeepAlive
            self.head = nil
            body = []
            let promise = pending
            pending = nil
            if !keepAlive { context.close(promise: nil) }
            promise?.succeed(reply)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let failure: KubeTransportError = if let tls = error as? TLSError {
            .tls(tls.description)
        } else {
            .invalidResponse("\(error)")
        }
        self.failure = self.failure ?? failure
        earlyFailure.withLockedValue { $0 = $0 ?? failure }
        fail(failure)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(failure ?? KubeTransportError.connectionClosed)
        context.fireChannelInactive()
    }
}
