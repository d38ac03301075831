import NIOCore
import UpkeepPKI

/// Fired as a user inbound event once the handshake succeeded and the peer passed every check.
public struct TLSHandshakeCompleted: Sendable {
    /// The peer's Upkeep identity (internal mode), nil in public mode.
    public let peer: PeerIdentity?
    public let peerCertificate: Certificate?
    public let protocolVersion: String
    public let cipher: String
}

/// A SwiftNIO handler that runs TLS through OpenSSL memory BIOs.
///
/// Place it first in the pipeline: ciphertext below it, plaintext `ByteBuffer`s above it.
/// - Application writes made before the handshake completes are queued (bounded by
///   `pendingWriteBytesMax`) and sent once it does.
/// - The handshake must complete within its timeout, otherwise the connection is closed with
///   `TLSError.handshakeTimeout`.
/// - Closing sends close_notify and waits (bounded by `closeNotifyTimeout`) for the peer's;
///   a close_notify from the peer is answered. EOF without close_notify on an established
///   session is reported as `TLSError.uncleanShutdown` through `errorCaught`.
/// - Any failure is reported through `errorCaught` as a `TLSError`, after which the channel is
///   closed. It never passes plaintext to the application before the peer is verified.
public final class TLSHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    /// Bound on plaintext queued while the handshake is in progress.
    public static let pendingWriteBytesMax = 16 * 1024 * 1024
    /// How long a close waits for the peer's close_notify before closing the socket anyway.
    public static let closeNotifyTimeout: TimeAmount = .seconds(3)

    private enum State {
        case idle
        case handshaking
        case active
        /// We sent close_notify and wait for the peer's.
        case closing
        case closed
    }

    private let tlsContext: TLSContext
    private let role: TLSEngine.Role
    private let expectation: PeerExpectation
    private let serverName: String?
    private let handshakeTimeout: TimeAmount

    private var engine: TLSEngine?
    private var state = State.idle
    private var pendingWrites: [(data: ByteBuffer, promise: EventLoopPromise<Void>?)] = []
    private var pendingWriteBytes = 0
    private var timer: Scheduled<Void>?
    private var closePromise: EventLoopPromise<Void>?
    private var receivedCloseNotify = false

    /// The verified handshake facts, once the handshake completed.
    public private(set) var session: TLSHandshakeCompleted?

    init(context: TLSContext, role: TLSEngine.Role, expectation: PeerExpectation, serverName: String?, handshakeTimeout: TimeAmount) {
        self.tlsContext = context
        self.role = role
        self.expectation = expectation
        self.serverName = serverName
        self.handshakeTimeout = handshakeTimeout
    }

    // MARK: - Lifecycle

    public func handlerAdded(context: ChannelHandlerContext) {
        do {
            engine = try TLSEngine(context: tlsContext, role: role, expectation: expectation, serverName: serverName,
                                   allocator: context.channel.allocator)
        } catch {
            fail(error as? TLSError ?? .invalidConfiguration("\(error)"), context: context)
            return
        }
        if context.channel.isActive { beginHandshake(context: context) }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        failPendingWrites(TLSError.closed)
        closePromise?.succeed()
        closePromise = nil
        state = .closed
        engine = nil
    }

    public func channelActive(context: ChannelHandlerContext) {
        context.fireChannelActive()
        beginHandshake(context: context)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        let previous = state
        state = .closed
        failPendingWrites(TLSError.closed)
        switch previous {
        case .handshaking:
            context.fireErrorCaught(TLSError.closedDuringHandshake)
        case .active where !receivedCloseNotify:
            context.fireErrorCaught(TLSError.uncleanShutdown)
        case .closing:
            closePromise?.succeed()
            closePromise = nil
        case .idle, .active, .closed:
            break
        }
        context.fireChannelInactive()
    }

    private func beginHandshake(context: ChannelHandlerContext) {
        guard case .idle = state, engine != nil else { return }
        state = .handshaking
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: handshakeTimeout) { [self] in
            if case .handshaking = state { fail(.handshakeTimeout, context: context) }
        }
        driveHandshake(context: context)
    }

    private func driveHandshake(context: ChannelHandlerContext) {
        guard let engine else { return }
        switch engine.handshake() {
        case .wantRead:
            sendCiphertext(context: context, flush: true)
        case let .failed(error):
            fail(error, context: context)
        case .complete:
            timer?.cancel()
            timer = nil
            state = .active
            sendCiphertext(context: context, flush: true)
            let completed = TLSHandshakeCompleted(peer: engine.verifier.identity, peerCertificate: engine.peerCertificate,
                                                  protocolVersion: engine.protocolVersion, cipher: engine.cipher)
            session = completed
            context.fireUserInboundEventTriggered(completed)
            writePendingWrites(context: context)
            // Application data may have arrived in the same read as the handshake's last flight.
            readPlaintext(context: context)
        }
    }

    // MARK: - Inbound

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let engine else { return }
        engine.feed(unwrapInboundIn(data))
        switch state {
        case .handshaking:
            driveHandshake(context: context)
        case .active, .closing:
            readPlaintext(context: context)
        case .idle, .closed:
            break
        }
    }

    private func readPlaintext(context: ChannelHandlerContext) {
        guard let engine else { return }
        while true {
            // Sized from the ciphertext at hand (plaintext is never longer), so large transfers
            // read into one allocation and small messages do not hold 64 KiB each.
            let capacity = min(TLSEngine.readChunkBytesMax, max(4096, engine.bufferedCiphertextBytes))
            var plaintext = context.channel.allocator.buffer(capacity: capacity)
            let result = engine.read(into: &plaintext)
            if plaintext.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(plaintext)) }
            switch result {
            case .data:
                continue
            case .wantRead:
                // Post-handshake messages (key updates) may need an answer.
                sendCiphertext(context: context, flush: true)
                return
            case .closeNotify:
                receivedCloseNotify = true
                peerClosed(context: context)
                return
            case let .failed(error):
                fail(error, context: context)
                return
            }
        }
    }

    private func peerClosed(context: ChannelHandlerContext) {
        switch state {
        case .active:
            // Answer the peer's close_notify, then close.
            engine?.shutdown()
            sendCiphertext(context: context, flush: true)
            state = .closed
            context.close(promise: nil)
        case .closing:
            timer?.cancel()
            state = .closed
            let promise = closePromise
            closePromise = nil
            context.close(promise: promise)
        case .idle, .handshaking, .closed:
            break
        }
    }

    // MARK: - Outbound

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let buffer = unwrapOutboundIn(data)
        switch state {
        case .idle, .handshaking:
            guard pendingWriteBytes + buffer.readableBytes <= Self.pendingWriteBytesMax else {
                promise?.fail(TLSError.writeQueueFull(bytesMax: Self.pendingWriteBytesMax))
                return
            }
            pendingWriteBytes += buffer.readableBytes
            pendingWrites.append((buffer, promise))
        case .active:
            encryptAndWrite(buffer, promise: promise, context: context)
        case .closing, .closed:
            promise?.fail(TLSError.closed)
        }
    }

    public func flush(context: ChannelHandlerContext) {
        // Before the handshake completes there is nothing to flush; the handshake's end flushes.
        if case .active = state { context.flush() }
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard mode == .all else {
            context.close(mode: mode, promise: promise)
            return
        }
        switch state {
        case .active:
            state = .closing
            closePromise = promise
            engine?.shutdown()
            sendCiphertext(context: context, flush: true)
            timer = context.eventLoop.assumeIsolated().scheduleTask(in: Self.closeNotifyTimeout) { [self] in
                guard case .closing = state else { return }
                state = .closed
                let promise = closePromise
                closePromise = nil
                context.close(promise: promise)
            }
        case .closing:
            if let promise {
                if let closePromise { closePromise.futureResult.cascade(to: promise) } else { promise.succeed() }
            }
        case .idle, .handshaking, .closed:
            timer?.cancel()
            state = .closed
            failPendingWrites(TLSError.closed)
            context.close(mode: mode, promise: promise)
        }
    }

    private func encryptAndWrite(_ buffer: ByteBuffer, promise: EventLoopPromise<Void>?, context: ChannelHandlerContext) {
        guard let engine else {
            promise?.fail(TLSError.closed)
            return
        }
        if let error = engine.write(buffer) {
            promise?.fail(error)
            fail(error, context: context)
            return
        }
        let ciphertext = engine.takeCiphertext(allocator: context.channel.allocator) ?? context.channel.allocator.buffer(capacity: 0)
        context.write(wrapOutboundOut(ciphertext), promise: promise)
    }

    private func writePendingWrites(context: ChannelHandlerContext) {
        let writes = pendingWrites
        pendingWrites = []
        pendingWriteBytes = 0
        guard !writes.isEmpty else { return }
        for write in writes {
            encryptAndWrite(write.data, promise: write.promise, context: context)
        }
        context.flush()
    }

    private func failPendingWrites(_ error: TLSError) {
        let writes = pendingWrites
        pendingWrites = []
        pendingWriteBytes = 0
        for write in writes { write.promise?.fail(error) }
    }

    private func sendCiphertext(context: ChannelHandlerContext, flush: Bool) {
        guard let ciphertext = engine?.takeCiphertext(allocator: context.channel.allocator) else { return }
        context.write(wrapOutboundOut(ciphertext), promise: nil)
        if flush { context.flush() }
    }

    // MARK: - Failure

    /// Sends whatever alert OpenSSL queued, reports `error` once, and closes the connection.
    private func fail(_ error: TLSError, context: ChannelHandlerContext) {
        if case .closed = state { return }
        timer?.cancel()
        state = .closed
        sendCiphertext(context: context, flush: true)
        failPendingWrites(error)
        context.fireErrorCaught(error)
        let promise = closePromise
        closePromise = nil
        context.close(promise: promise)
    }
}

@available(*, unavailable)
extension TLSHandler: Sendable {}
