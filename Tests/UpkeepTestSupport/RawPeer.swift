import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A TCP peer that writes exactly the bytes a test gives (one at a time if it likes) and
/// records what comes back and when the server closed: what a real HTTP client would hide.
public final class RawPeer: Sendable {
    private struct Seen {
        var bytes: [UInt8] = []
        var closedAtNanoseconds: UInt64?
    }

    private final class Recorder: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        let seen: NIOLockedValueBox<Seen>
        init(seen: NIOLockedValueBox<Seen>) { self.seen = seen }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = unwrapInboundIn(data)
            seen.withLockedValue { $0.bytes += Array(buffer.readableBytesView) }
        }

        func channelInactive(context: ChannelHandlerContext) {
            seen.withLockedValue { $0.closedAtNanoseconds = NIODeadline.now().uptimeNanoseconds }
            context.fireChannelInactive()
        }
    }

    private let channel: any Channel
    private let seen: NIOLockedValueBox<Seen>

    /// `receiveBufferBytes` shrinks the socket's receive buffer (a peer that stops reading then
    /// holds little in its kernel); `prepare` puts handlers first in the pipeline (a TLS client:
    /// the recorded bytes are then the plaintext).
    public init(port: Int, host: String = "127.0.0.1", receiveBufferBytes: Int? = nil,
                prepare: @escaping @Sendable (ChannelPipeline.SynchronousOperations) throws -> Void = { _ in }) async throws {
        let seen = NIOLockedValueBox(Seen())
        self.seen = seen
        var bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).channelOption(.allowRemoteHalfClosure, value: false)
        if let receiveBufferBytes { bootstrap = bootstrap.channelOption(.socketOption(.so_rcvbuf), value: SocketOptionValue(receiveBufferBytes)) }
        channel = try await bootstrap
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try prepare(channel.pipeline.syncOperations)
                    try channel.pipeline.syncOperations.addHandler(Recorder(seen: seen))
                }
            }
            .connect(host: host, port: port).get()
    }

    /// Stops reading from the socket, as a peer that never calls recv: what the server sends
    /// stays in the kernel's buffers, then in the server's.
    public func pauseReading() async throws {
        try await channel.setOption(.autoRead, value: false).get()
    }

    /// Reads again (and so notices a close by the server, which a peer that does not read cannot;
    /// a write may have found it closed already).
    public func resumeReading() async {
        _ = try? await channel.setOption(.autoRead, value: true).get()
    }

    public func send(_ text: String) async throws {
        try await channel.writeAndFlush(channel.allocator.buffer(string: text))
    }

    /// Everything received so far, as text.
    public var received: String { String(decoding: seen.withLockedValue { $0.bytes }, as: UTF8.self) }
    public var isClosed: Bool { seen.withLockedValue { $0.closedAtNanoseconds != nil } }
    public var closedAtNanoseconds: UInt64? { seen.withLockedValue { $0.closedAtNanoseconds } }

    /// Waits (polling, bounded) until the server closed the connection; false if it did not within `seconds`.
    public func waitClosed(within seconds: Double) async throws -> Bool {
        let end = NIODeadline.now() + .nanoseconds(Int64(seconds * 1e9))
        while !isClosed, NIODeadline.now() < end { try await Task.sleep(nanoseconds: 10_000_000) }
        return isClosed
    }

    /// Waits (bounded) until the received text contains `text`.
    public func waitFor(_ text: String, within seconds: Double = 10) async throws -> Bool {
        let end = NIODeadline.now() + .nanoseconds(Int64(seconds * 1e9))
        while !received.contains(text), NIODeadline.now() < end { try await Task.sleep(nanoseconds: 10_000_000) }
        return received.contains(text)
    }

    public func close() async {
        try? await channel.close()
    }
}
