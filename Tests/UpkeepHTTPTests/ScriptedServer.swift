import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import UpkeepHTTP
import UpkeepTLS

/// A real HTTP/1.1 server on 127.0.0.1 whose answers a test scripts request by request:
/// respond, never answer, or close the connection. It records every request and connection.
final class ScriptedServer: Sendable {
    enum Action: Sendable {
        case respond(status: Int, headers: [(String, String)] = [], body: [UInt8] = [])
        /// Read the request and never answer.
        case hang
        /// Close the connection without answering.
        case close
    }

    struct Received: Sendable {
        var method: String
        var uri: String
        var headers: [(String, String)]
        var connection: Int
        var atSeconds: Double

        func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
    }

    typealias Script = @Sendable (_ request: Received, _ index: Int) -> Action

    private let channel: any Channel
    let port: Int
    private let state: NIOLockedValueBox<(requests: [Received], connections: Int)>

    var requests: [Received] { state.withLockedValue { $0.requests } }
    var connections: Int { state.withLockedValue { $0.connections } }
    var url: String { "http://127.0.0.1:\(port)" }

    init(tls: TLSContext? = nil, script: @escaping Script) async throws {
        let state = NIOLockedValueBox<(requests: [Received], connections: Int)>(([], 0))
        self.state = state
        channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let number = state.withLockedValue { value -> Int in
                        value.connections += 1
                        return value.connections
                    }
                    if let tls { try channel.pipeline.syncOperations.addHandler(tls.makeServerHandler()) }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(ScriptHandler(connection: number, state: state, script: script))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        port = channel.localAddress?.port ?? 0
    }

    func close() async {
        try? await channel.close()
    }
}

private final class ScriptHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let connection: Int
    let state: NIOLockedValueBox<(requests: [ScriptedServer.Received], connections: Int)>
    let script: ScriptedServer.Script
    var head: HTTPRequestHead?

    init(connection: Int, state: NIOLockedValueBox<(requests: [ScriptedServer.Received], connections: Int)>,
         script: @escaping ScriptedServer.Script)
    {
        self.connection = connection
        self.state = state
        self.script = script
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case let .head(requestHead): head = requestHead
        case .body: break
        case .end:
            guard let head else { return }
            let received = ScriptedServer.Received(method: head.method.rawValue, uri: head.uri,
                                                   headers: head.headers.map { ($0.name, $0.value) }, connection: connection,
                                                   atSeconds: HTTPClock.system.now())
            let index = state.withLockedValue { value -> Int in
                value.requests.append(received)
                return value.requests.count - 1
            }
            switch script(received, index) {
            case .hang:
                break
            case .close:
                context.close(promise: nil)
            case let .respond(status, extra, body):
                var headers = HTTPHeaders(extra)
                if !headers.contains(name: "content-length") && !headers.contains(name: "transfer-encoding") {
                    headers.add(name: "Content-Length", value: String(body.count))
                }
                let keepAlive = head.isKeepAlive && !headers[canonicalForm: "connection"].contains("close")
                context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: status),
                                                                     headers: headers))), promise: nil)
                // Several writes, so a chunked answer has several chunks.
                for piece in stride(from: 0, to: body.count, by: 1000) {
                    let slice = body[piece..<min(body.count, piece + 1000)]
                    context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: slice)))), promise: nil)
                }
                let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
                if !keepAlive {
                    let channel = context.channel
                    done.whenComplete { _ in channel.close(promise: nil) }
                }
            }
        }
    }
}

extension String {
    var bytes: [UInt8] { Array(utf8) }
}
