import NIOCore
import UpkeepCore
import UpkeepPKI

/// Bounds what one connection holds for a peer that stops reading: sets the channel's write
/// buffer water marks from `OutboundBounds`, closes the connection when the bytes waiting for the
/// socket pass `pendingBytesMax`, or when the channel stays unwritable (above the high mark, not
/// yet drained below the low one) for `drainTimeout`. `OutboundBacklog` decides; this only
/// executes. Each close is reported once through `reached` with what to log: the peer's address
/// and, once its TLS handshake told it, its identity.
///
/// Place it first in the pipeline, below the TLS handler, so that it sees every write (the
/// ciphertext) on its way to the socket; it passes everything through unchanged. TLS does not
/// need it for a peer that never completes the handshake: `TLSHandler` bounds what it queues
/// before then (`pendingWriteBytesMax`) and the handshake has its own timeout.
public final class OutboundBacklogHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = NIOAny
    public typealias InboundOut = NIOAny
    public typealias OutboundIn = NIOAny
    public typealias OutboundOut = NIOAny

    private var backlog: OutboundBacklog
    private let reached: (OutboundBacklog.Limit, String) -> Void
    private var deadline: Scheduled<Void>?

    /// `reached` runs on the channel's event loop, once, just before the connection is closed.
    public init(bounds: OutboundBounds, reached: @escaping (OutboundBacklog.Limit, String) -> Void) {
        backlog = OutboundBacklog(bounds: bounds)
        self.reached = reached
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        let bounds = backlog.bounds
        try? context.channel.syncOptions?.setOption(
            .writeBufferWaterMark, value: .init(low: bounds.lowWaterMarkBytes, high: bounds.highWaterMarkBytes))
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }

    public func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        context.fireChannelInactive()
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        context.write(data, promise: promise)
        guard let pending = try? context.channel.syncOptions?.getOption(.bufferedWritableBytes) else { return }
        execute(backlog.handle(.queued(pendingBytes: pending)), context: context)
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        execute(backlog.handle(.writabilityChanged(isWritable: context.channel.isWritable)), context: context)
        context.fireChannelWritabilityChanged()
    }

    private func execute(_ actions: [OutboundBacklog.Action], context: ChannelHandlerContext) {
        for action in actions {
            switch action {
            case .startDrainDeadline(let timeout):
                deadline = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(timeout)) { [self] in
                    deadline = nil
                    execute(backlog.handle(.drainDeadlinePassed), context: context)
                }
            case .cancelDrainDeadline:
                deadline?.cancel()
                deadline = nil
            case .close(let limit, let pendingBytes):
                reached(limit, describe(limit, pendingBytes: pendingBytes, context: context))
                context.close(promise: nil)
            }
        }
    }

    private func describe(_ limit: OutboundBacklog.Limit, pendingBytes: Int, context: ChannelHandlerContext) -> String {
        let bounds = backlog.bounds
        let identity = (try? context.pipeline.syncOperations.handler(type: TLSHandler.self))?.session?.peer.map { " (\($0.uri))" } ?? ""
        let peer = "\(context.channel.remoteAddress?.description ?? "an unknown address")\(identity)"
        switch limit {
        case .pendingBytes:
            return "closed the connection to \(peer): \(pendingBytes) bytes waiting to be sent, more than "
                + "\(bounds.pendingBytesMax) (pendingBytesMax); the peer does not read"
        case .drainTimeout:
            return "closed the connection to \(peer): \(pendingBytes) bytes waiting to be sent were not read below "
                + "\(bounds.lowWaterMarkBytes) within \(bounds.drainTimeout) (drainTimeout); the peer does not read"
        }
    }
}

@available(*, unavailable)
extension OutboundBacklogHandler: Sendable {}
