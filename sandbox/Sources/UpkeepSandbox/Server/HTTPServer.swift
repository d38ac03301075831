import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import UpkeepTLS

/// A small HTTP/1.1 server with keep-alive that hands each complete request to a synchronous
/// responder. The simulated API, the release server and the fake k3s health endpoints use it.
///
/// `channelPrefix` lets a caller put handlers (the TLS handler) in front of HTTP; it never
/// buffers more than `bodyBytesMax` of one request body (413 beyond that).
public final class SandboxHTTPServer: Sendable {
    public typealias Responder = @Sendable (APIRequest) -> APIResponse
    public typealias ChannelPrefix = @Sendable (any Channel) throws -> Void

    public let channel: any Channel
    public let host: String
    public let port: Int
    private let accepted: NIOLockedValueBox<Int>

    init(channel: any Channel, host: String, port: Int, accepted: NIOLockedValueBox<Int>) {
        self.channel = channel
        self.host = host
        self.port = port
        self.accepted = accepted
    }

    /// Connections accepted so far (to see keep-alive at work).
    public var acceptedConnections: Int { accepted.withLockedValue { $0 } }

    /// A TLS handler in front of HTTP, from `context` (the simulated API's HTTPS, like k3s's 6443).
    public static func tls(_ context: TLSContext) -> ChannelPrefix {
        { channel in try channel.pipeline.syncOperations.addHandler(context.makeServerHandler()) }
    }

    public static func start(host: String, port: Int, group: any EventLoopGroup, bodyBytesMax: Int = 8 << 20,
                             channelPrefix: ChannelPrefix? = nil, responder: @escaping Responder) async throws -> SandboxHTTPServer
    {
        let accepted = NIOLockedValueBox(0)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                accepted.withLockedValue { $0 += 1 }
                return channel.eventLoop.makeCompletedFuture {
                    try channelPrefix?(channel)
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(HTTPResponderHandler(bodyBytesMax: bodyBytesMax, responder: responder))
                }
            }
            .bind(host: host, port: port).get()
        return SandboxHTTPServer(channel: channel, host: host, port: channel.localAddress?.port ?? port, accepted: accepted)
    }

    public func close() async {
        try? await channel.close()
    }
}

final class HTTPResponderHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let bodyBytesMax: Int
    let responder: SandboxHTTPServer.Responder
    var head: HTTPRequestHead?
    var body: [UInt8] = []
    var refused = false

    init(bodyBytesMax: Int, responder: @escaping SandboxHTTPServer.Responder) {
        self.bodyBytesMax = bodyBytesMax
        self.responder = responder
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let requestHead):
            head = requestHead
            body = []
            refused = false
        case .body(var buffer):
            guard !refused else { return }
            if body.count + buffer.readableBytes > bodyBytesMax {
                refused = true
                let error = APIResponse.text("request body larger than \(bodyBytesMax) bytes\n", status: 413)
                write(error, keepAlive: false, context: context)
                return
            }
            body += buffer.readBytes(length: buffer.readableBytes) ?? []
        case .end:
            guard let head, !refused else { return }
            self.head = nil
            let headers = head.headers.map { ($0.name.lowercased(), $0.value) }
            let request = APIRequest(method: head.method.rawValue, uri: head.uri, accept: head.headers.first(name: "accept") ?? "*/*",
                                     contentType: head.headers.first(name: "content-type") ?? "", body: body, headers: headers)
            body = []
            let response = responder(request)
            guard !response.withheld else { return }
            write(response, keepAlive: head.isKeepAlive, context: context, isHead: head.method == .HEAD)
        }
    }

    func write(_ response: APIResponse, keepAlive: Bool, context: ChannelHandlerContext, isHead: Bool = false) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: response.contentType)
        headers.add(name: "Content-Length", value: String(response.body.count))
        for (name, value) in response.headers { headers.add(name: name, value: value) }
        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        let status = HTTPResponseStatus(statusCode: response.status)
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        if !isHead && !response.body.isEmpty {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: response.body)))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
