// Measurement driver for the scripts in bench/. Each mode prints one machine-readable line,
// `key=value ...`, which the scripts turn into ratios against a baseline measured in the same run.
import Foundation
import NIOCore
import NIOPosix
import UpkeepPKI
import UpkeepProtocol
import UpkeepTLS

struct BenchFailure: Error, CustomStringConvertible { let description: String }

func argument(_ name: String, default value: String) -> String {
    let arguments = CommandLine.arguments
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return value }
    return arguments[index + 1]
}

/// Signals the handshake's end (or failure) to whoever dialled.
final class HandshakeWaiter: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    let done: EventLoopPromise<Void>
    init(done: EventLoopPromise<Void>) { self.done = done }
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is TLSHandshakeCompleted { done.succeed() }
    }
    func errorCaught(context: ChannelHandlerContext, error: any Error) { done.fail(error) }
    func channelInactive(context: ChannelHandlerContext) { done.fail(ChannelError.ioOnClosedChannel) }
}

/// Writes `count` copies of `block` whenever the channel is writable.
final class StreamWriter: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let block: ByteBuffer
    var remaining: Int
    init(block: ByteBuffer, count: Int) { self.block = block; remaining = count }
    func handlerAdded(context: ChannelHandlerContext) { pump(context: context) }
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        pump(context: context)
        context.fireChannelWritabilityChanged()
    }
    private func pump(context: ChannelHandlerContext) {
        while remaining > 0 && context.channel.isWritable {
            remaining -= 1
            context.writeAndFlush(wrapOutboundOut(block), promise: nil)
        }
    }
}

/// Counts bytes and signals when `expected` have arrived.
final class ByteCounter: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let expected: Int
    let done: EventLoopPromise<Void>
    var count = 0
    init(expected: Int, done: EventLoopPromise<Void>) { self.expected = expected; self.done = done }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        count += unwrapInboundIn(data).readableBytes
        if count >= expected { done.succeed() }
    }
    func errorCaught(context: ChannelHandlerContext, error: any Error) { done.fail(error) }
}

struct Material {
    let ca: CertificateAuthority
    let agent: TLSContext
    let controller: TLSContext
    let node: PeerIdentity

    init(directory: String?) throws {
        ca = try CertificateAuthority.create(commonName: "bench-ca", keyType: .ecdsaP256, validity: .days(1))
        node = try PeerIdentity(role: .agent, name: "node-1")
        let agentIssued = try ca.issue(identity: node, keyType: .ecdsaP256, validity: .days(1))
        let controllerIssued = try ca.issue(identity: PeerIdentity(role: .controller, name: "controller"),
                                            keyType: .ecdsaP256, validity: .days(1))
        agent = try .internal(ca: [ca.certificate], chain: [agentIssued.certificate], key: agentIssued.key)
        controller = try .internal(ca: [ca.certificate], chain: [controllerIssued.certificate], key: controllerIssued.key)
        if let directory {
            // The same certificates for the openssl baseline.
            try ca.certificate.pem().write(toFile: "\(directory)/ca.crt", atomically: true, encoding: .utf8)
            try agentIssued.certificate.pem().write(toFile: "\(directory)/agent.crt", atomically: true, encoding: .utf8)
            try agentIssued.key.pkcs8PEM().write(toFile: "\(directory)/agent.key", atomically: true, encoding: .utf8)
            try controllerIssued.certificate.pem().write(toFile: "\(directory)/controller.crt", atomically: true, encoding: .utf8)
            try controllerIssued.key.pkcs8PEM().write(toFile: "\(directory)/controller.key", atomically: true, encoding: .utf8)
        }
    }
}

func startServer(group: MultiThreadedEventLoopGroup, context: TLSContext, sink: Bool) async throws -> any Channel {
    try await ServerBootstrap(group: group)
        .serverChannelOption(.backlog, value: 256)
        .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(context.makeServerHandler(expecting: .roles([.controller])))
            }
        }
        .bind(host: "127.0.0.1", port: 0).get()
}

/// Sequential full handshakes (one connection at a time, like `openssl s_time -new`).
func handshakes(seconds: Double) async throws {
    let material = try Material(directory: nil)
    let serverGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let clientGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let server = try await startServer(group: serverGroup, context: material.agent, sink: true)
    let port = server.localAddress!.port!
    // The loop runs on the client's event loop with futures, so no task hop is counted.
    let loop = clientGroup.next()
    let start = Date()
    let deadline = NIODeadline.now() + .nanoseconds(Int64(seconds * 1e9))
    let finished = loop.makePromise(of: Int.self)
    @Sendable func dial(_ count: Int) {
        guard NIODeadline.now() < deadline else {
            finished.succeed(count)
            return
        }
        let done = loop.makePromise(of: Void.self)
        ClientBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        material.controller.makeClientHandler(expecting: .identity(material.node)))
                    try channel.pipeline.syncOperations.addHandler(HandshakeWaiter(done: done))
                }
            }
            .connect(host: "127.0.0.1", port: port)
            .flatMap { channel in done.futureResult.flatMap { channel.close() } }
            .whenComplete { result in
                switch result {
                case .success: dial(count + 1)
                case let .failure(error): finished.fail(error)
                }
            }
    }
    loop.execute { dial(0) }
    let count = try await finished.futureResult.get()
    let elapsed = Date().timeIntervalSince(start)
    print("handshakes=\(count) seconds=\(String(format: "%.3f", elapsed)) per_second=\(String(format: "%.1f", Double(count) / elapsed))")
    try await server.close()
    try await serverGroup.shutdownGracefully()
    try await clientGroup.shutdownGracefully()
}

/// One mTLS connection carrying `bytes` from client to server in 256 KiB writes.
func tlsStream(bytes: Int) async throws {
    let material = try Material(directory: nil)
    let serverGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let clientGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let received = serverGroup.next().makePromise(of: Void.self)
    let server = try await ServerBootstrap(group: serverGroup)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(material.agent.makeServerHandler(expecting: .roles([.controller])))
                try channel.pipeline.syncOperations.addHandler(ByteCounter(expected: bytes, done: received))
            }
        }
        .bind(host: "127.0.0.1", port: 0).get()
    let loop = clientGroup.next()
    let handshake = loop.makePromise(of: Void.self)
    let channel = try await ClientBootstrap(group: loop)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(material.controller.makeClientHandler(expecting: .identity(material.node)))
                try channel.pipeline.syncOperations.addHandler(HandshakeWaiter(done: handshake))
            }
        }
        .connect(host: "127.0.0.1", port: server.localAddress!.port!).get()
    try await handshake.futureResult.get()
    let chunk = 256 * 1024
    var block = channel.allocator.buffer(capacity: chunk)
    block.writeRepeatingByte(0x5a, count: chunk)
    let start = Date()
    let sent = (bytes / chunk) * chunk
    // The writes are issued on the event loop while the channel is writable (NIO's own back
    // pressure bounds what is in flight), as the protocol's stream writer does.
    let payload = block
    try await channel.eventLoop.submit {
        try channel.pipeline.syncOperations.addHandler(StreamWriter(block: payload, count: bytes / chunk))
    }.get()
    try await received.futureResult.get()
    let elapsed = Date().timeIntervalSince(start)
    let cipher = try await channel.pipeline.handler(type: TLSHandler.self).map { $0.session?.cipher ?? "" }.get()
    print("bytes=\(sent) seconds=\(String(format: "%.3f", elapsed)) bytes_per_second=\(Int(Double(sent) / elapsed)) cipher=\(cipher)")
    try await channel.close()
    try await server.close()
    try await serverGroup.shutdownGracefully()
    try await clientGroup.shutdownGracefully()
}

// As the agent and the controller set it (their chunk streams are what this measures).
StreamAllocator.configure()
let mode = CommandLine.arguments.dropFirst().first ?? ""
switch mode {
case "certs":
    _ = try Material(directory: argument("--dir", default: "."))
case "handshakes":
    try await handshakes(seconds: Double(argument("--seconds", default: "5")) ?? 5)
case "tls-stream":
    try await tlsStream(bytes: (Int(argument("--mib", default: "512")) ?? 512) * 1024 * 1024)
case "artifact-stream":
    try await artifactStream(bytes: (Int(argument("--mib", default: "512")) ?? 512) * 1024 * 1024)
default:
    print("usage: upkeep-bench certs --dir D | handshakes [--seconds S] | tls-stream [--mib N] | artifact-stream [--mib N]")
    exit(2)
}
