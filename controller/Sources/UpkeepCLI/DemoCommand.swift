import ArgumentParser
import Foundation
import NIOCore
import NIOPosix
import UpkeepPKI
import UpkeepTLS

/// `upkeep demo`: the first thing a new user runs.
///
/// Until the sandbox cluster can be upgraded end to end, it shows the foundation everything
/// else stands on: a cluster PKI created in a temporary directory, a controller and an agent
/// completing a mutual TLS 1.3 handshake on loopback, and the refusals an operator would see
/// for a wrong role and a wrong node. Everything it creates is removed at the end.
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Show Upkeep's PKI and an agent-controller mutual TLS handshake on this machine."
    )

    @Option(name: .long, help: "Keep the demo's PKI in this directory instead of a temporary one.")
    var dir: String?

    func run() async throws {
        let path = dir ?? NSTemporaryDirectory() + "upkeep-demo-\(UUID().uuidString)"
        defer { if dir == nil { try? FileManager.default.removeItem(atPath: path) } }
        let pki = PKIDirectory(path: path)
        let ca = try pki.initialize(validity: PKIDirectory.validity(days: 2))
        say("created the cluster CA in \(path): \(ca.certificate.subject)")
        let node = try PeerIdentity(role: .agent, name: "node-1")
        let agent = try pki.issue(node, validity: PKIDirectory.validity(days: 1))
        let controller = try pki.issue(PeerIdentity(role: .controller, name: PKIDirectory.defaultControllerName),
                                       validity: PKIDirectory.validity(days: 1))
        let impostor = try pki.issue(PeerIdentity(role: .agent, name: "node-2"), validity: PKIDirectory.validity(days: 1))
        for issued in [agent, controller, impostor] {
            say("issued \(issued.identity.uri) -> \(issued.certificatePath) (key mode 0600)")
        }

        let agentContext = try TLSContext.internal(ca: [ca.certificate], chain: [agent.certificate], key: agent.key)
        let controllerContext = try TLSContext.internal(ca: [ca.certificate], chain: [controller.certificate], key: controller.key)
        let impostorContext = try TLSContext.internal(ca: [ca.certificate], chain: [impostor.certificate], key: impostor.key)

        let refusals = DemoRefusals()
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(agentContext.makeServerHandler(expecting: .roles([.controller])))
                    try channel.pipeline.syncOperations.addHandler(DemoObserver(report: refusals.record))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = server.localAddress?.port ?? 0
        say("agent node-1 listens on 127.0.0.1:\(port) and accepts controllers only")

        let completed = try await dial(port: port, context: controllerContext, expecting: .identity(node))
        say("controller -> node-1: \(completed)")
        let wrongNode = try await dial(port: port, context: controllerContext,
                                       expecting: .identity(PeerIdentity(role: .agent, name: "node-9")))
        say("controller expecting node-9 -> node-1: \(wrongNode)")
        _ = try await dial(port: port, context: impostorContext, expecting: .identity(node))
        try await Task.sleep(for: .milliseconds(100))
        say("agent node-2 posing as a controller -> node-1: agent says \(refusals.last ?? "nothing")")
        try await server.close()
        say("done; the sandbox cluster demo arrives with the controller")
    }

    private func say(_ line: String) { print("upkeep demo: \(line)") }

    /// Dials once and describes how the handshake ended, from the dialler's side.
    private func dial(port: Int, context: TLSContext, expecting: PeerExpectation) async throws -> String {
        let outcome = MultiThreadedEventLoopGroup.singleton.next().makePromise(of: String.self)
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(context.makeClientHandler(expecting: expecting))
                    try channel.pipeline.syncOperations.addHandler(DemoObserver { outcome.succeed($0) })
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        let result = try await outcome.futureResult.get()
        try? await channel.close()
        return result
    }
}

/// The last outcome the demo's agent reported, shared with its connections' event loops.
final class DemoRefusals: @unchecked Sendable {
    private let lock = NSLock()
    private var value: String?
    var last: String? { lock.withLock { value } }
    func record(_ text: String) { lock.withLock { value = text } }
}

/// Reports the first handshake outcome of a connection as text.
final class DemoObserver: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private let report: @Sendable (String) -> Void
    private var reported = false

    init(report: @escaping @Sendable (String) -> Void) { self.report = report }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let done = event as? TLSHandshakeCompleted {
            once("\(done.protocolVersion) \(done.cipher), verified peer \(done.peer?.uri ?? "-")")
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { once("refused: \(error)") }

    func channelInactive(context: ChannelHandlerContext) { once("closed") }

    private func once(_ text: String) {
        guard !reported else { return }
        reported = true
        report(text)
    }
}
