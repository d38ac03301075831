import NIOCore
import NIOHTTP1
import NIOPosix
import UpkeepPKI
import UpkeepTLS

/// A health endpoint: scheme, host, port and path of an `http://` or `https://` URL.
public struct HTTPProbeTarget: Equatable, Sendable {
    public var scheme: String
    public var host: String
    public var port: Int
    public var path: String

    /// Nil unless the URL is `http(s)://host[:port]/path` (IPv6 hosts in brackets).
    public init?(url: String) {
        // Prefix tests, not split(separator: "://"): a String separator is _StringProcessing's
        // searcher, whose code would be paged in at every agent start for this alone.
        guard let scheme = ["http", "https"].first(where: { url.hasPrefix($0 + "://") }) else { return nil }
        self.scheme = scheme
        let rest = url.dropFirst(scheme.count + 3)
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = rest[..<slash]
        path = slash == rest.endIndex ? "/" : String(rest[slash...])
        var hostPart = Substring(authority)
        var portPart: Substring?
        if authority.hasPrefix("["), let close = authority.firstIndex(of: "]") {
            hostPart = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if after.hasPrefix(":") { portPart = after.dropFirst() } else if !after.isEmpty { return nil }
        } else if let colon = authority.lastIndex(of: ":") {
            hostPart = authority[..<colon]
            portPart = authority[authority.index(after: colon)...]
        }
        guard !hostPart.isEmpty else { return nil }
        host = String(hostPart)
        if let portPart {
            guard let value = Int(portPart), (1...65535).contains(value) else { return nil }
            port = value
        } else {
            port = scheme == "https" ? 443 : 80
        }
    }

    public var url: String { "\(scheme)://\(host.contains(":") ? "[\(host)]" : host):\(port)\(path)" }
}

/// One bounded HTTP/1.1 GET for health checks: `Connection: close`, a response body of at most
/// 64 KiB, and one deadline covering connect, handshake and response.
public enum HTTPProbe {
    public static let bodyBytesMax = 64 * 1024

    public struct Response: Equatable, Sendable {
        public var status: Int
        public var body: String
    }

    public static func get(_ target: HTTPProbeTarget, tls: TLSContext?, timeoutMs: Int,
                           group: any EventLoopGroup) async throws -> Response {
        let loop = group.next()
        let promise = loop.makePromise(of: Response.self)
        let timeout = TimeAmount.milliseconds(Int64(timeoutMs))
        let timer = loop.scheduleTask(in: timeout) {
            promise.fail(HTTPProbeError.timedOut(timeoutMs))
        }
        promise.futureResult.whenComplete { _ in timer.cancel() }
        let host = target.host
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let tls {
                        try sync.addHandler(tls.makeClientHandler(expecting: .host(host), handshakeTimeout: timeout))
                    }
                    try sync.addHTTPClientHandlers()
                    try sync.addHandler(ResponseCollector(promise: promise))
                }
            }
        do {
            let channel = try await bootstrap.connect(host: target.host, port: target.port).get()
            promise.futureResult.whenComplete { _ in channel.close(promise: nil) }
            var headers = HTTPHeaders()
            headers.add(name: "Host", value: target.host)
            headers.add(name: "Connection", value: "close")
            headers.add(name: "User-Agent", value: "upkeep-agent")
            let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: target.path, headers: headers)
            channel.write(HTTPClientRequestPart.head(head), promise: nil)
            channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        } catch {
            promise.fail(error)
        }
        return try await promise.futureResult.get()
    }
}

public enum HTTPProbeError: Error, Equatable, CustomStringConvertible {
    case timedOut(Int)
    case closedEarly
    case bodyTooLarge

    public var description: String {
        switch self {
        case .timedOut(let ms): "no answer within \(ms) ms"
        case .closedEarly: "the connection closed before a complete response"
        case .bodyTooLarge: "the response body exceeds \(HTTPProbe.bodyBytesMax) bytes"
        }
    }
}

private final class ResponseCollector: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    private let promise: EventLoopPromise<HTTPProbe.Response>
    private var status: Int?
    private var body: [UInt8] = []

    init(promise: EventLoopPromise<HTTPProbe.Response>) { self.promise = promise }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = Int(head.status.code)
        case .body(let buffer):
            guard body.count + buffer.readableBytes <= HTTPProbe.bodyBytesMax else {
                promise.fail(HTTPProbeError.bodyTooLarge)
                return
            }
            body.append(contentsOf: buffer.readableBytesView)
        case .end:
            promise.succeed(HTTPProbe.Response(status: status ?? 0, body: String(decoding: body, as: UTF8.self)))
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(HTTPProbeError.closedEarly)
    }
}
