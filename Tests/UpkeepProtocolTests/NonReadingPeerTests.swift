import NIOCore
import NIOPosix
import Synchronization
import Testing
import UpkeepCore
import UpkeepHTTP
import UpkeepPKI
import UpkeepProtocol

/// A peer that completes the mutual-TLS handshake and then stops reading cannot make either side
/// hold unbounded output (docs/tls.md, "A peer that stops reading"): streams wait for the channel
/// to be writable, and the connection is closed at the byte cap or when the peer has not drained
/// within the deadline, counted, while other peers are served.
@Suite(.timeLimit(.minutes(1))) struct NonReadingPeerTests {
    /// Small bounds, so that a test takes a few seconds.
    static let bounds = OutboundBounds(highWaterMarkBytes: 64 << 10, lowWaterMarkBytes: 16 << 10, pendingBytesMax: 1 << 20,
                                       drainTimeout: .seconds(1))

    static func configuration() -> ServerConfiguration {
        var configuration = ServerConfiguration()
        configuration.outbound = bounds
        return configuration
    }

    /// Every probe is answered with `downloadBytes` of download (the server sends them within the
    /// client's window and as its channel is writable), or with a Response of `answerBytes`.
    static func agent(downloadBytes: Int = 0, answerBytes: Int = 0) -> TestAgent {
        TestAgent { request in
            guard case .probe = request.payload else { return try await TestAgent.canned(request) }
            let result = ResponsePayload.probe(ProbeResult(healthy: true, checks: [
                ProbeCheck(name: "padding", ok: true, latencyMs: 0, message: String(repeating: "x", count: answerBytes))]))
            guard downloadBytes > 0 else { return Reply(result) }
            let block = ByteBuffer(repeating: 0x5A, count: 256 << 10)
            return Reply(result, download: ChunkSource { emit in
                for _ in 0..<(downloadBytes / block.readableBytes) { try await emit(block) }
            })
        }
    }

    @Test func aDownloadToAPeerThatStopsReadingWaitsAndIsClosedAtTheDrainDeadline() async throws {
        let served = try await Served.start(.mutualTLS, configuration: Self.configuration(), agent: Self.agent(downloadBytes: 64 << 20))
        let limits = served.server.limits
        let (peer, _) = try await RawPeer.hello(port: served.server.port, tls: TestCluster.shared.controller, receiveBufferBytes: 16 << 10,
                                                streamWindowBytes: StreamWindow.bytesMax)
        try await peer.pauseReading()
        let started = ContinuousClock.now
        try await peer.send(.request(RequestEnvelope(.probe(ProbeRequest()))), requestID: 1)

        // Meanwhile another controller is served on the same agent.
        let other = try await served.connect()
        _ = try await other.call(ProbeRequest(), deadline: soon(5))

        // Generous for a loaded machine; the count says which bound closed it (the drain deadline is 1 s).
        #expect(await eventually(within: 15) { limits.count(.drainTimeout) == 1 }, "the connection of a peer that does not read stays open")
        #expect(ContinuousClock.now - started < .seconds(15))
        // Reading again, the peer finds its connection closed (a peer that does not read cannot see it).
        await peer.resumeReading()
        #expect(await peer.waitClosed(within: 10))
        // The download waited for the channel: the byte cap was never reached.
        #expect(limits.count(.outboundBytes) == 0)
        _ = try await other.ping(deadline: soon(5))
        await other.close()
        await served.server.shutdown(gracePeriod: .seconds(1))
    }

    @Test func answersPilingUpForAPeerThatStopsReadingAreCutAtTheByteCap() async throws {
        let served = try await Served.start(.mutualTLS, configuration: Self.configuration(), agent: Self.agent(answerBytes: 200 << 10))
        let limits = served.server.limits
        let (peer, _) = try await RawPeer.hello(port: served.server.port, tls: TestCluster.shared.controller, receiveBufferBytes: 16 << 10)
        try await peer.pauseReading()
        // Requests keep coming; each answer (200 KiB) is written without waiting, as answers are.
        let flood = Task {
            for id in 1...200 {
                try await peer.send(.request(RequestEnvelope(.probe(ProbeRequest()))), requestID: UInt32(id))
            }
        }
        let other = try await served.connect()
        _ = try await other.call(ProbeRequest(), deadline: soon(5))

        #expect(await eventually(within: 8) { limits.count(.outboundBytes) + limits.count(.drainTimeout) == 1 },
                "the connection of a peer that does not read stays open")
        _ = try? await flood.value
        await peer.resumeReading()
        #expect(await peer.waitClosed(within: 2))
        #expect(limits.count(.outboundBytes) == 1, "200 answers of 200 KiB pass the 1 MiB cap before the 1 s deadline")
        _ = try await other.ping(deadline: soon(5))
        await other.close()
        await served.server.shutdown(gracePeriod: .seconds(1))
    }

    @Test func anUploadToAnAgentThatStopsReadingWaitsAndIsClosedAtTheDrainDeadline() async throws {
        // An agent that answers Hello with the largest window, then never reads again.
        let reply = HelloReply(protocolVersion: ProtocolVersion.supported.upperBound, agent: TestAgent.info,
                               streamWindowBytes: StreamWindow.bytesMax, concurrentRequestsMax: 8)
        let agent = try await ClientBoundsTests.RawAgent.start(answering: try FrameEncoder.encode(Frame(.helloReply(reply), requestID: 0)),
                                                               thenStopReading: true, receiveBufferBytes: 16 << 10)
        var configuration = ClientConfiguration()
        configuration.outbound = Self.bounds
        let before = (drain: ProtocolClient.limits.count(.drainTimeout), bytes: ProtocolClient.limits.count(.outboundBytes))
        let client = try await ProtocolClient.connect(host: "127.0.0.1", port: agent.port, configuration: configuration)
        let block = ByteBuffer(repeating: 0x33, count: 256 << 10)
        let sha = try #require(SHA256Hex(rawValue: String(repeating: "a", count: 64)))
        let started = ContinuousClock.now
        await #expect(throws: (any Error).self) {
            _ = try await client.call(StageRequest(operationID: "stage-1", k3sVersion: "v1.30.6+k3s1", sha256: sha, bytes: 64 << 20),
                                      upload: ChunkSource { emit in for _ in 0..<256 { try await emit(block) } }, deadline: soon(20))
        }
        // Well before the call's 20 s deadline: the drain deadline (1 s) ended it, as its count says.
        #expect(ContinuousClock.now - started < .seconds(15))
        #expect(ProtocolClient.limits.count(.drainTimeout) - before.drain == 1)
        #expect(ProtocolClient.limits.count(.outboundBytes) - before.bytes == 0, "the upload waited for the channel")
        try await agent.channel.close()
    }
}
