import NIOCore
import NIOPosix
import UpkeepCore

/// Each node's path to the cluster DNS Service: a UDP responder per node, where the node's agent
/// is told the cluster DNS is (agent.yaml `clusterDNS`), answering as the model's CoreDNS and
/// kube-proxy would for that node (`ClusterModel.clusterDNSReply`). In the loopback layout it
/// listens on the node's own address; with `--netns` the sandbox process cannot bind inside a
/// node's namespace, so each node gets its own port on the bridge's address, which the node
/// reaches through its default route. A query is read bounded (one byte over RFC 1035's 512 for
/// UDP, to tell a long one) and answered at once: no queue. What the model cannot read is
/// dropped, counted (`GET /sandbox/v1/state`, `clusterDNS`) and logged, at most a line per 10 s.
public final class SandboxClusterDNS: Sendable {
    /// The port in the loopback layout (one address per node); with `--netns`, the first port.
    public static let port = 10053
    let channels: [any Channel]

    private init(channels: [any Channel]) {
        self.channels = channels
    }

    /// `host:port` of `node`'s path to the cluster DNS: its own address, or with `--netns`
    /// (`bridgeAddress` given) a port of its own on the bridge.
    public static func address(nodeAddress: String, index: Int, bridgeAddress: String?) -> String {
        bridgeAddress.map { "\($0):\(port + index)" } ?? "\(nodeAddress):\(port)"
    }

    /// Binds one responder per node at its `clusterDNS` address.
    static func start(nodes: [SandboxNode], cluster: SandboxCluster, log: ThrottledLog, group: any EventLoopGroup) async throws -> SandboxClusterDNS {
        var channels: [any Channel] = []
        do {
            for node in nodes {
                guard let address = node.clusterDNS, let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else {
                    continue
                }
                let name = node.name
                let channel = try await DatagramBootstrap(group: group)
                    .channelOption(ChannelOptions.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: DNSMessage.udpBytesMax + 1))
                    .channelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(Responder(node: name, cluster: cluster, log: log))
                        }
                    }
                    .bind(host: String(address[..<colon]), port: port).get()
                channels.append(channel)
            }
        } catch {
            for channel in channels { try? await channel.close() }
            throw SandboxError("cannot serve the cluster DNS of the nodes: \(error)")
        }
        return SandboxClusterDNS(channels: channels)
    }

    func close() async {
        for channel in channels { try? await channel.close() }
    }

    /// Answers each datagram as the model says, from the node it serves.
    final class Responder: ChannelInboundHandler {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        typealias OutboundOut = AddressedEnvelope<ByteBuffer>
        let node: String
        let cluster: SandboxCluster
        let log: ThrottledLog

        init(node: String, cluster: SandboxCluster, log: ThrottledLog) {
            self.node = node
            self.cluster = cluster
            self.log = log
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let envelope = unwrapInboundIn(data)
            let query = envelope.data.getBytes(at: envelope.data.readerIndex, length: envelope.data.readableBytes) ?? []
            let node = node
            let (reply, outcome) = cluster.withModel { $0.clusterDNSReply(from: node, query: query) }
            if outcome == .malformed {
                log.note("cluster-dns", "dropped a query to the cluster DNS of \(node) from \(envelope.remoteAddress) that is not one it reads "
                         + "(malformed, or over \(DNSMessage.udpBytesMax) bytes)")
            }
            guard let reply else { return }
            var buffer = context.channel.allocator.buffer(capacity: reply.count)
            buffer.writeBytes(reply)
            context.writeAndFlush(wrapOutboundOut(AddressedEnvelope(remoteAddress: envelope.remoteAddress, data: buffer)), promise: nil)
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            // An ICMP error for an earlier answer (its sender gone): nothing to do but go on.
            log.note("cluster-dns", "the cluster DNS of \(node): \(error)")
        }
    }
}
