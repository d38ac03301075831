import NIOCore
import NIOEmbedded
import Testing
import UpkeepPKI
@testable import UpkeepTLS

/// The handler with no sockets: two EmbeddedChannels wired back to back, so the tests decide
/// exactly how ciphertext is cut before it reaches the other side.
@Suite struct EmbeddedTLSTests {
    let pki: TestPKI
    let node1: PeerIdentity

    init() throws {
        pki = try TestPKI()
        node1 = try PeerIdentity(role: .agent, name: "node-1")
    }

    /// A connected pair: client (controller) and server (agent for node-1).
    func pair() throws -> (client: EmbeddedChannel, server: EmbeddedChannel) {
        let client = EmbeddedChannel(handler: try pki.context(.controller, "controller").makeClientHandler(expecting: .identity(node1)))
        let server = EmbeddedChannel(handler: try pki.context(.agent, "node-1").makeServerHandler(expecting: .roles([.controller])))
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: 1)
        _ = try server.connect(to: address).wait()
        _ = try client.connect(to: address).wait()
        return (client, server)
    }

    /// Moves everything `from` wrote into `to`, in pieces of `piece` bytes (nil: all at once).
    /// Returns the number of bytes moved.
    @discardableResult
    func pump(from: EmbeddedChannel, to: EmbeddedChannel, piece: Int?) throws -> Int {
        var moved = 0
        while var buffer = try from.readOutbound(as: ByteBuffer.self) {
            moved += buffer.readableBytes
            if let piece {
                while buffer.readableBytes > 0, let slice = buffer.readSlice(length: min(piece, buffer.readableBytes)) {
                    try to.writeInbound(slice)
                }
            } else {
                try to.writeInbound(buffer)
            }
        }
        return moved
    }

    func converse(piece: Int?) throws {
        let (client, server) = try pair()
        // An early write: queued until the handshake completes.
        let early = client.writeAndFlush(ByteBuffer(string: "status?"))
        for _ in 0..<20 {
            let moved = try pump(from: client, to: server, piece: piece) + pump(from: server, to: client, piece: piece)
            if moved == 0 { break }
        }
        let serverHandler = try server.pipeline.syncOperations.handler(type: TLSHandler.self)
        let clientHandler = try client.pipeline.syncOperations.handler(type: TLSHandler.self)
        #expect(serverHandler.session?.peer == (try PeerIdentity(role: .controller, name: "controller")))
        #expect(clientHandler.session?.peer == node1)

        var received = ""
        while let buffer = try server.readInbound(as: ByteBuffer.self) { received += String(buffer: buffer) }
        #expect(received == "status?")
        try early.wait()

        // The server answers; then the client closes with close_notify, which the server answers.
        try server.writeOutbound(ByteBuffer(string: "ok"))
        try pump(from: server, to: client, piece: piece)
        var answer = ""
        while let buffer = try client.readInbound(as: ByteBuffer.self) { answer += String(buffer: buffer) }
        #expect(answer == "ok")

        let closed = client.close()
        try pump(from: client, to: server, piece: piece)
        try pump(from: server, to: client, piece: piece)
        try closed.wait()
        #expect(!server.isActive, "the server closed after answering close_notify")
        #expect(try client.finish(acceptAlreadyClosed: true).isClean)
        #expect(try server.finish(acceptAlreadyClosed: true).isClean)
    }

    @Test func ciphertextDeliveredAllAtOnce() throws { try converse(piece: nil) }

    @Test func ciphertextDeliveredByteByByte() throws { try converse(piece: 1) }

    @Test func ciphertextDeliveredInOddPieces() throws { try converse(piece: 7) }

    @Test func theHandshakeTimeoutFiresOnTheEventLoopClock() throws {
        let handler = try pki.context(.agent, "node-1").makeServerHandler(expecting: .roles([.controller]),
                                                                         handshakeTimeout: .seconds(5))
        let server = EmbeddedChannel(handler: handler)
        _ = try server.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        server.embeddedEventLoop.advanceTime(by: .seconds(4))
        #expect(server.isActive)
        server.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(throws: TLSError.handshakeTimeout) { try server.throwIfErrorCaught() }
        #expect(!server.isActive)
    }
}
