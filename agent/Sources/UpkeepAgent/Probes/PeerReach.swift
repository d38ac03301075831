import NIOCore
import NIOPosix
import UpkeepCore
import UpkeepProtocol

#if canImport(Glibc)
import Glibc
#endif

/// The `reachPeers` method (PROTOCOL.md): one TCP connect from this node to each peer, closed as
/// soon as it is made, nothing sent. At most `concurrencyMax` connects at once, each bounded by
/// the request's timeout; peers not started before the request's deadline (less a margin for the
/// answer) are reported so, never left out. It never throws for what the network did.
public struct PeerReach: Sendable {
    /// Connects in flight at once.
    public static let concurrencyMax = ReachPeersRequest.connectsAtOnceMax
    /// Kept from the request's deadline for the answer to travel back.
    public static let answerMarginSeconds = 1
    /// A result's `message` at most (an errno text is far shorter).
    static let messageBytesMax = 200

    public let group: any EventLoopGroup
    /// Told when the deadline left peers untried (`AgentLimit.reachPeersDeadline`).
    public let deadlineReached: @Sendable (_ untried: Int, _ of: Int) -> Void

    public init(group: any EventLoopGroup, deadlineReached: @escaping @Sendable (_ untried: Int, _ of: Int) -> Void = { _, _ in }) {
        self.group = group
        self.deadlineReached = deadlineReached
    }

    /// One result per peer, in the order asked.
    public func reach(_ peers: [ReachPeer], timeoutSeconds: Int, deadline: ContinuousClock.Instant?) async -> [ReachPeerResult] {
        // A connect started after this could end after the deadline: its peer is answered untried.
        let stopLaunching = deadline.map { $0 - .seconds(Self.answerMarginSeconds) - .seconds(timeoutSeconds) }
        let results = await BoundedTasks.map(peers, atOnce: Self.concurrencyMax) { peer -> ReachPeerResult? in
            if let stopLaunching, ContinuousClock.now > stopLaunching { return nil }
            return await self.connect(peer, timeoutSeconds: timeoutSeconds)
        }
        let untried = results.filter { $0 == nil }.count
        if untried > 0 { deadlineReached(untried, peers.count) }
        return peers.indices.map { index in
            results[index] ?? ReachPeerResult(node: peers[index].node, host: peers[index].host, port: peers[index].port, outcome: .timeout,
                                              message: "not tried: the request's deadline came first (\(untried) of \(peers.count) peers untried)",
                                              elapsedMs: 0)
        }
    }

    /// One connect, bounded by `timeoutSeconds`, closed at once when made.
    func connect(_ peer: ReachPeer, timeoutSeconds: Int) async -> ReachPeerResult {
        let started = ContinuousClock.now
        func result(_ outcome: ReachOutcome, _ message: String) -> ReachPeerResult {
            let duration = ContinuousClock.now - started
            return ReachPeerResult(node: peer.node, host: peer.host, port: peer.port, outcome: outcome, message: String(message.prefix(Self.messageBytesMax)),
                                   elapsedMs: Int(duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000))
        }
        let address: SocketAddress
        do {
            address = try SocketAddress(ipAddress: peer.host, port: peer.port)
        } catch {
            return result(.unreachable, "\(peer.host) is not an IP address")
        }
        do {
            let channel = try await ClientBootstrap(group: group)
                .connectTimeout(.seconds(Int64(timeoutSeconds)))
                .connect(to: address).get()
            try? await channel.close()
            return result(.reachable, "")
        } catch ChannelError.connectTimeout {
            return result(.timeout, "no answer within \(timeoutSeconds) s")
        } catch let error as IOError {
            return result(Self.outcome(errno: error.errnoCode), Self.errnoText(error.errnoCode))
        } catch {
            return result(.unreachable, "\(error)")
        }
    }

    static func outcome(errno code: Int32) -> ReachOutcome {
        switch code {
        case ECONNREFUSED: .refused
        case ETIMEDOUT: .timeout
        default: .unreachable
        }
    }

    /// `Connection refused (errno 111)`.
    static func errnoText(_ code: Int32) -> String {
        "\(String(cString: strerror(code))) (errno \(code))"
    }
}
