import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import UpkeepTLS

/// A small HTTP/1.1 server with keep-alive that hands each complete request to a responder:
/// a synchronous one on the connection's event loop (the release server, the fake k3s's health
/// endpoints and fake kine), or an asynchronous one (the simulated API behind a datastore, whose
/// writes wait for it). Pipelined requests are answered in order (NIO's pipelining handler holds
/// the next one until an answer is written).
///
/// `channelPrefix` lets a caller put handlers (the TLS handler) in front of HTTP; it never
/// buffers more than `bodyBytesMax` of one request body (413 beyond that).
public final class SandboxHTTPServer: Sendable {
    public typealias Responder = @Sendable (APIRequest) -> APIResponse
    public typealias AsyncResponder = @Sendable (APIRequest) async -> APIResponse
    public typealias ChannelPrefix = @Sendable (any Channel) throws -> Void

    public let channel: any Channel
    public let host: String
    public let port: Int
    private let accepted: NIOLockedValueBox<Int>
    /// Open connections, closed with the server (as a process's are when it ends).
    private let connections: NIOLockedValueBox<[ObjectIdentifier: any Channel]>

    init(channel: any Channel, host: String, port: Int, accepted: NIOLockedValueBox<Int>,
         connections: NIOLockedValueBox<[ObjectIdentifier: any Channel]>)
    {
        self.channel = channel
        self.host = host
        self.port = port
        self.accepted = accepted
        self.connections = connections
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
        try await start(host: host, port: port, group: group, bodyBytesMax: bodyBytesMax, channelPrefix: channelPrefix,
                        answering: .immediately(responder))
    }

    public static func start(host: String, port: Int, group: any EventLoopGroup, bodyBytesMax: Int = 8 << 20,
                             channelPrefix: ChannelPrefix? = nil, asyncResponder: @escaping AsyncResponder) async throws -> SandboxHTTPServer
    {
        try await start(host: host, port: port, group: group, bodyBytesMax: bodyBytesMax, channelPrefix: channelPrefix,
                        answering: .later(asyncResponder))
    }

    enum Answering: Sendable {
        case immediately(Responder)
        case later(AsyncResponder)
    }

    static func start(host: String, port: Int, group: any EventLoopGroup, bodyBytesMax: Int, channelPrefix: ChannelPrefix?,
                      answering responder: Answering) async throws -> SandboxHTTPServer
    {
        let accepted = NIOLockedValueBox(0)
        let connections = NIOLockedValueBox<[ObjectIdentifier: any Channel]>([:])
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                accepted.withLockedValue { $0 += 1 }
                let id = ObjectIdentifier(channel)
                connections.withLockedValue { $0[id] = channel }
                channel.closeFuture.whenComplete { _ in connections.withLockedValue { $0[id] = nil } }
                return channel.eventLoop.makeCompletedFuture {
                    try channelPrefix?(channel)
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(HTTPResponderHandler(bodyBytesMax: bodyBytesMax, responder: responder))
                }
            }
            .bind(host: host, port: port).get()
        return SandboxHTTPServer(channel: channel, host: host, port: channel.localAddress?.port ?? port, accepted: accepted,
                                 connections: connections)
    }

    /// Stops listening and closes every open connection.
    public func close() async {
        try? await channel.close()
        for connection in connections.withLockedValue({ Array($0.values) }) { try? await connection.close() }
    }
}

final class HTTPResponderHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let bodyBytesMax: Int
    let responder: SandboxHTTPServer.Answering
    var head: HTTPRequestHead?
    var body: [UInt8] = []
    var refused = false

    init(bodyBytesMax: Int, responder: SandboxHTTPServer.Answering) {
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
            switch responder {
            case .immediately(let respond):
                let response = respond(request)
                guard !response.withheld else { return }
                write(response, keepAlive: head.isKeepAlive, context: context, isHead: head.method == .HEAD)
            case .later(let respond):
                let answer = context.eventLoop.makePromise(of: APIResponse.self)
                answer.completeWithTask { await respond(request) }
                answer.futureResult.assumeIsolated().whenSuccess { response in
                    guard !response.withheld, context.channel.isActive else { return }
                    self.write(response, keepAlive: head.isKeepAlive, context: context, isHead: head.method == .HEAD)
                }
            }
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
