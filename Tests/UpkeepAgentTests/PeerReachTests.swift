import Foundation
import NIOCore
import NIOPosix
import Testing
import UpkeepAgent
import UpkeepProtocol

#if canImport(Glibc)
import Glibc
#endif

/// `reachPeers`'s connects against real sockets on 127.0.0.1: a listener that accepts, a port
/// bound but not listening (the kernel answers a reset: refused), and a listener that never
/// accepts with its backlog full (the kernel drops the SYN: timeout). Each peer gets its own
/// result, in the order asked.
@Suite(.serialized) struct PeerReachTests {
    /// A TCP socket bound to 127.0.0.1 on a port the kernel chose; `backlog` nil: not listening.
    final class RawSocket {
        let fd: Int32
        let port: Int

        init(listening backlog: Int32?) throws {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw POSIXFailure("socket", errno) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard bound == 0, backlog.map({ listen(fd, $0) == 0 }) ?? true else {
                let code = errno
                close(fd)
                throw POSIXFailure("bind or listen", code)
            }
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
            }
            self.fd = fd
            port = Int(UInt16(bigEndian: address.sin_port))
        }

        /// Starts a connect to 127.0.0.1:`port` without waiting for it (fills a backlog).
        static func startConnect(to port: Int) -> Int32 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = UInt16(port).bigEndian
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            _ = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            return fd
        }

        deinit { close(fd) }
    }

    /// What the deadline callback was told.
    final class Told: @unchecked Sendable {
        private let lock = NSLock()
        private var told: [Int] = []
        func add(_ values: [Int]) { lock.withLock { told += values } }
        var values: [Int] { lock.withLock { told } }
    }

    struct POSIXFailure: Error, CustomStringConvertible {
        let description: String
        init(_ call: String, _ code: Int32) { description = "\(call): \(String(cString: strerror(code)))" }
    }

    @Test func eachPeerIsReachableRefusedOrTimedOutInTheOrderAsked() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let accepting = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        defer { accepting.close(promise: nil) }
        let acceptingPort = try #require(accepting.localAddress?.port)
        let closed = try RawSocket(listening: nil)
        // Backlog 0 holds one connection that nobody accepts; the fillers take it, and the kernel
        // then drops every further SYN (a full accept queue), as a firewall that drops would.
        let blackhole = try RawSocket(listening: 0)
        let fillers = (0..<3).map { _ in RawSocket.startConnect(to: blackhole.port) }
        defer { for fd in fillers { close(fd) } }

        let peers = [ReachPeer(node: "server-2", host: "127.0.0.1", port: acceptingPort),
                     ReachPeer(node: "agent-1", host: "127.0.0.1", port: closed.port),
                     ReachPeer(node: "agent-2", host: "127.0.0.1", port: blackhole.port)]
        let results = await PeerReach(group: group).reach(peers, timeoutSeconds: 2, deadline: nil)
        withExtendedLifetime((closed, blackhole)) {}
        #expect(results.map(\.node) == ["server-2", "agent-1", "agent-2"])
        #expect(results.map(\.outcome) == [.reachable, .refused, .timeout], "\(results)")
        #expect(results[0].message.isEmpty && results[0].port == acceptingPort)
        #expect(results[1].message == "\(String(cString: strerror(ECONNREFUSED))) (errno \(ECONNREFUSED))", "\(results[1])")
        #expect(results[2].message == "no answer within 2 s", "\(results[2])")
    }

    /// More peers than connects at once: every one answered, in order.
    @Test func morePeersThanTheConcurrencyAreAllAnswered() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let accepting = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        defer { accepting.close(promise: nil) }
        let port = try #require(accepting.localAddress?.port)
        let count = PeerReach.concurrencyMax * 2 + 3
        let peers = (0..<count).map { ReachPeer(node: "node-\($0)", host: "127.0.0.1", port: port) }
        let results = await PeerReach(group: group).reach(peers, timeoutSeconds: 10, deadline: nil)
        #expect(results.map(\.node) == peers.map(\.node))
        #expect(results.allSatisfy { $0.outcome == .reachable }, "\(results.filter { $0.outcome != .reachable })")
    }

    /// A deadline too close for one more connect: the peers are answered untried and the bound is told.
    @Test func peersTheDeadlineLeavesNoTimeForAreAnsweredUntried() async throws {
        let told = Told()
        let reach = PeerReach(group: MultiThreadedEventLoopGroup.singleton) { untried, total in told.add([untried, total]) }
        let peers = [ReachPeer(node: "server-2", host: "127.0.0.1", port: 9), ReachPeer(node: "agent-1", host: "127.0.0.1", port: 9)]
        // Less than one connect's bound plus the answer's margin is left.
        let results = await reach.reach(peers, timeoutSeconds: 5, deadline: .now + .seconds(5))
        #expect(results.map(\.outcome) == [.timeout, .timeout])
        #expect(results.allSatisfy { $0.message == "not tried: the request's deadline came first (2 of 2 peers untried)" }, "\(results)")
        #expect(told.values == [2, 2])
    }
}
