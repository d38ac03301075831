import NIOCore
import NIOPosix
import UpkeepCore

/// The `clusterDNS` method (PROTOCOL.md): one A query for a name, over UDP from this node to the
/// cluster DNS address (`clusterDNS` in agent.yaml; k3s's default 10.43.0.10,
/// https://docs.k3s.io/cli/server#networking), bounded by a timeout; the first answer that
/// carries the query's id is read with `DNSMessage` (RFC 1035). No answer, a malformed one, one
/// with another id: the result says so; it never throws for what the network did. An answer
/// longer than `DNSMessage.udpBytesMax` is not read: it is counted (`AgentLimit.dnsAnswerBytes`)
/// and the result says so.
public struct ClusterDNSProbe: Sendable {
    public let host: String
    public let port: Int
    public let group: any EventLoopGroup
    /// Where an answer over the bound is counted.
    public let limits: AgentLimits?

    public init(host: String, port: Int, group: any EventLoopGroup, limits: AgentLimits? = nil) {
        self.host = host
        self.port = port
        self.group = group
        self.limits = limits
    }

    /// What one query found.
    public struct Outcome: Equatable, Sendable {
        public var answer: DNSMessage.Answer?
        /// Why there is no answer.
        public var problem: String
        public var elapsedMs: Int
    }

    public func resolve(_ name: String, id: UInt16, timeoutSeconds: Int) async -> Outcome {
        let started = ContinuousClock.now
        func elapsed() -> Int {
            let duration = ContinuousClock.now - started
            return Int(duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000)
        }
        let query: [UInt8]
        do {
            query = try DNSMessage.query(id: id, name: name)
        } catch {
            return Outcome(answer: nil, problem: "\(error)", elapsedMs: 0)
        }
        let loop = group.next()
        let promise = loop.makePromise(of: [UInt8].self)
        let channel: any Channel
        do {
            let address = try SocketAddress(ipAddress: host, port: port)
            channel = try await DatagramBootstrap(group: loop)
                .channelOption(ChannelOptions.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: Self.receiveBytesMax))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(AnswerHandler(id: id, promise: promise)) }
                }
                .bind(host: address.protocol == .inet6 ? "::" : "0.0.0.0", port: 0).get()
            let timeout = loop.scheduleTask(in: .seconds(Int64(timeoutSeconds))) {
                promise.fail(ClusterDNSTimeout())
            }
            promise.futureResult.whenComplete { _ in timeout.cancel() }
            var buffer = channel.allocator.buffer(capacity: query.count)
            buffer.writeBytes(query)
            try await channel.writeAndFlush(AddressedEnvelope(remoteAddress: address, data: buffer)).get()
        } catch {
            promise.fail(error)
            return Outcome(answer: nil, problem: "the query to \(host):\(port) could not be sent: \(error)", elapsedMs: elapsed())
        }
        defer { channel.close(promise: nil) }
        do {
            let bytes = try await promise.futureResult.get()
            return Outcome(answer: try DNSMessage.answer(bytes), problem: "", elapsedMs: elapsed())
        } catch is ClusterDNSTimeout {
            return Outcome(answer: nil, problem: "no answer from \(host):\(port) within \(timeoutSeconds) s", elapsedMs: elapsed())
        } catch is AnswerTooLong {
            let problem = "the answer from \(host):\(port) is longer than the \(DNSMessage.udpBytesMax) bytes a DNS message over UDP may have "
                + "(RFC 1035 section 4.2.1); it was not read. "
                + "The cluster DNS should set TC (truncated) instead: check its configuration (CoreDNS's bufsize plugin)"
            limits?.record(.dnsAnswerBytes, "clusterDNS: \(problem)")
            return Outcome(answer: nil, problem: problem, elapsedMs: elapsed())
        } catch {
            return Outcome(answer: nil, problem: "\(error)", elapsedMs: elapsed())
        }
    }

    struct ClusterDNSTimeout: Error {}

    /// An answer to our query longer than `DNSMessage.udpBytesMax` (it arrives cut to
    /// `receiveBytesMax`, the receive buffer).
    struct AnswerTooLong: Error {}

    /// One byte over the bound: enough to tell a long answer from one that fits.
    static let receiveBytesMax = DNSMessage.udpBytesMax + 1

    /// Completes the promise with the first datagram that carries the query's id (others are
    /// dropped: a late answer to an earlier query); an ICMP refusal fails it.
    final class AnswerHandler: ChannelInboundHandler {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        let id: UInt16
        let promise: EventLoopPromise<[UInt8]>

        init(id: UInt16, promise: EventLoopPromise<[UInt8]>) {
            self.id = id
            self.promise = promise
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let envelope = unwrapInboundIn(data)
            let length = envelope.data.readableBytes
            guard let answerID = envelope.data.getInteger(at: envelope.data.readerIndex, as: UInt16.self), answerID == id else { return }
            guard length <= DNSMessage.udpBytesMax else {
                promise.fail(AnswerTooLong())
                return
            }
            guard let bytes = envelope.data.getBytes(at: envelope.data.readerIndex, length: length) else { return }
            promise.succeed(bytes)
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            promise.fail(error)
        }
    }
}
