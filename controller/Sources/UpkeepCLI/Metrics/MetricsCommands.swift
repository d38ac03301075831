import ArgumentParser
import Foundation
import NIOCore
import NIOHTTP1
import NIOConcurrencyHelpers
import NIOPosix
import UpkeepCore
import UpkeepStore
import UpkeepUpdates
import UpkeepPOSIX

enum MetricsSource {
    static let version = Upkeep.configuration.version

    /// The exposition for the state directory of `config`.
    static func exposition(_ config: ControllerConfig) throws -> String {
        let store = try openStateStore(config)
        let checks = JSONLinesCheckHistory(stateDirectory: config.resolvedStateDirectory())
        do {
            return try MetricsSnapshot.gather(store: store, checks: checks, now: .wallClockNow()).exposition(version: version)
        } catch {
            throw CommandFailure(code: RolloutExitCode.state, message: error.description)
        }
    }
}

/// `upkeep metrics`: the Prometheus exposition once, for node_exporter's textfile collector.
struct Metrics: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print Upkeep's Prometheus metrics once (rollouts, node upgrades, backups, the last check), or write them to a file.",
        discussion: "For node_exporter's textfile collector: `upkeep metrics --output /var/lib/node_exporter/textfile/upkeep.prom` from a timer. "
            + "`upkeep serve` serves the same over HTTP. docs/metrics.md lists the metrics."
    )

    @OptionGroup var configOption: ConfigOption

    @Option(name: .shortAndLong, help: ArgumentHelp("Write to this file (atomically, mode 0644) instead of standard output.", valueName: "PATH"))
    var output: String?

    func run() throws {
        let text = try MetricsSource.exposition(try configOption.load())
        guard let output else {
            print(text, terminator: "")
            return
        }
        try writeReplacing(output, with: text)
    }
}

/// `upkeep serve`: the controller as a service. Serves `/metrics` (computed from the state
/// database at each scrape) and `/healthz` until SIGTERM or SIGINT.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run as a service: serve Prometheus metrics on /metrics and a liveness check on /healthz.",
        discussion: "Bind to loopback or a management network; the metrics carry no secrets but say what the cluster runs. "
            + "Stops on SIGTERM or SIGINT. deploy/upkeep.service runs it under systemd."
    )

    @OptionGroup var configOption: ConfigOption

    @Option(name: .long, help: ArgumentHelp("Address and port to listen on.", valueName: "HOST:PORT"))
    var listen = "127.0.0.1:9661"

    func run() async throws {
        let config = try configOption.load()
        _ = try openStateStore(config)  // a wrong state directory fails now, not at the first scrape
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]), (0...65535).contains(port) else {
            throw CommandFailure(code: RolloutExitCode.usage, message: "--listen \(listen): write HOST:PORT, e.g. 127.0.0.1:9661")
        }
        let host = String(listen[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        let server: MetricsServer
        do {
            server = try await MetricsServer.start(host: host, port: port) { try MetricsSource.exposition(config) }
        } catch {
            throw CommandFailure(code: RolloutExitCode.usage, message: "cannot listen on \(listen): \(error)")
        }
        FileHandle.standardOutput.write(Data("serving metrics on http://\(host.contains(":") ? "[\(host)]" : host):\(server.port)/metrics\n".utf8))
        _ = await Signals.wait(for: [SIGTERM, SIGINT])
        await server.close()
    }
}

/// A small HTTP/1.1 server for `/metrics` and `/healthz`: GET only, no request bodies, at most
/// `connectionsMax` connections, each closed after `idleSeconds` without a request.
final class MetricsServer: Sendable {
    static let connectionsMax = 64
    static let idleSeconds: Int64 = 30
    let channel: any Channel
    let port: Int

    private init(channel: any Channel) {
        self.channel = channel
        port = channel.localAddress?.port ?? 0
    }

    static func start(host: String, port: Int, metrics: @escaping @Sendable () throws -> String) async throws -> MetricsServer {
        let open = ConnectionCount()
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                guard open.increment() <= connectionsMax else {
                    open.decrement()
                    return channel.close()
                }
                channel.closeFuture.whenComplete { _ in open.decrement() }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: .seconds(idleSeconds)))
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(MetricsHTTPHandler(metrics: metrics))
                }
            }
            .bind(host: host, port: port).get()
        return MetricsServer(channel: channel)
    }

    func close() async {
        try? await channel.close()
    }
}

/// Open connections, shared by the accept path of every event loop.
final class ConnectionCount: Sendable {
    private let value = NIOLockedValueBox(0)
    func increment() -> Int { value.withLockedValue { $0 += 1; return $0 } }
    func decrement() { value.withLockedValue { $0 -= 1 } }
}

/// Answers one request at a time; the exposition is computed off the event loop.
final class MetricsHTTPHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let metrics: @Sendable () throws -> String
    private var head: HTTPRequestHead?

    init(metrics: @escaping @Sendable () throws -> String) { self.metrics = metrics }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body:
            break  // GET only; a body is ignored and never buffered
        case .end:
            guard let head else { return }
            self.head = nil
            respond(to: head, context: context)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent { context.close(promise: nil) } else { context.fireUserInboundEventTriggered(event) }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        let keepAlive = head.isKeepAlive
        let loop = context.eventLoop
        guard head.method == .GET || head.method == .HEAD else {
            send(status: .methodNotAllowed, body: "GET /metrics or /healthz\n", keepAlive: keepAlive, head: head, context: context)
            return
        }
        switch path {
        case "/healthz":
            send(status: .ok, body: "ok\n", keepAlive: keepAlive, head: head, context: context)
        case "/metrics":
            let metrics = metrics
            let bound = NIOLoopBound((self, context), eventLoop: loop)
            DispatchQueue.global().async {
                let result = Result { try metrics() }
                loop.execute {
                    let (handler, context) = bound.value
                    switch result {
                    case .success(let text):
                        handler.send(status: .ok, body: text, keepAlive: keepAlive, head: head, context: context,
                                     contentType: "text/plain; version=0.0.4; charset=utf-8")
                    case .failure(let error):
                        handler.send(status: .internalServerError, body: "\(error)\n", keepAlive: keepAlive, head: head, context: context)
                    }
                }
            }
        default:
            send(status: .notFound, body: "GET /metrics or /healthz\n", keepAlive: keepAlive, head: head, context: context)
        }
    }

    private func send(status: HTTPResponseStatus, body: String, keepAlive: Bool, head request: HTTPRequestHead,
                      context: ChannelHandlerContext, contentType: String = "text/plain; charset=utf-8") {
        guard context.channel.isActive else { return }
        var headers = HTTPHeaders([("Content-Type", contentType), ("Content-Length", String(body.utf8.count))])
        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))), promise: nil)
        if request.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
