import NIOCore
import Testing
import UpkeepHTTP
import UpkeepProtocol

/// The server enforces PROTOCOL.md against a peer that breaks it on purpose.
@Suite(.timeLimit(.minutes(1))) struct ProtocolRulesTests {
    private func expectConnectionError(_ peer: RawPeer, _ code: ErrorCode, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let frame = try await peer.next(.error)
        let message = try frame?.message()
        guard case .error(let response)? = message, frame?.requestID == 0 else {
            Issue.record("expected an Error on request id 0, got \(String(describing: message))", sourceLocation: sourceLocation)
            return
        }
        #expect(response.code == code, "\(response)", sourceLocation: sourceLocation)
        #expect(await peer.waitClosed(), "the server closes after a connection error", sourceLocation: sourceLocation)
    }

    private func response(_ peer: RawPeer, _ id: UInt32) async throws -> FrameMessage? {
        while let frame = try await peer.next() {
            if frame.requestID == id, frame.type != .progress { return try frame.message() }
        }
        return nil
    }

    private static func stage(_ bytes: Int, sha256: SHA256Hex) -> RequestEnvelope {
        RequestEnvelope(.stage(StageRequest(operationID: "stage-1", k3sVersion: "v1.31.2+k3s1", sha256: sha256,
                                            bytes: Int64(bytes))), upload: true)
    }

    @Test func noCommonVersionIsRefusedWithUnsupportedVersion() async throws {
        let served = try await Served.start()
        let peer = try await RawPeer(port: served.server.port)
        try await peer.send(.hello(Hello(protocolVersions: 2...3, software: "from the future")))
        try await expectConnectionError(peer, .unsupportedVersion)
        await served.server.shutdown()
    }

    @Test func aFirstFrameOtherThanHelloIsAViolation() async throws {
        let served = try await Served.start()
        let peer = try await RawPeer(port: served.server.port)
        try await peer.send(.request(RequestEnvelope(.status(StatusRequest()))), requestID: 1)
        try await expectConnectionError(peer, .protocolViolation)
        await served.server.shutdown()
    }

    @Test func garbageIsAViolation() async throws {
        let served = try await Served.start()
        let peer = try await RawPeer(port: served.server.port)
        try await peer.sendBytes(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: agent\r\n\r\n"))
        try await expectConnectionError(peer, .protocolViolation)
        await served.server.shutdown()
    }

    @Test func anOversizeLengthIsRefusedFromTheHeader() async throws {
        let served = try await Served.start()
        let (peer, _) = try await RawPeer.hello(port: served.server.port)
        var header = ByteBuffer(bytes: [0x55, 0x4B, 1, FrameType.request.rawValue, 0, 0, 0, 1])
        header.writeInteger(UInt32.max)
        try await peer.sendBytes(header)
        try await expectConnectionError(peer, .protocolViolation)
        #expect(served.server.limits.count(.frameBytes) == 1 && served.server.limits.count(.protocolViolation) == 1)
        await served.server.shutdown()
    }

    @Test func aSilentClientIsCutAtTheHelloTimeout() async throws {
        var configuration = ServerConfiguration()
        configuration.helloTimeout = .milliseconds(200)
        let served = try await Served.start(configuration: configuration)
        let peer = try await RawPeer(port: served.server.port)
        try await expectConnectionError(peer, .protocolViolation)
        await served.server.shutdown()
    }

    @Test func requestIDsMustGrow() async throws {
        let served = try await Served.start()
        let (peer, _) = try await RawPeer.hello(port: served.server.port)
        try await peer.send(.request(RequestEnvelope(.cordon(CordonRequest(operationID: "c-5")))), requestID: 5)
        guard case .response? = try await response(peer, 5) else { Issue.record("no response"); return }
        try await peer.send(.request(RequestEnvelope(.cordon(CordonRequest(operationID: "c-4")))), requestID: 4)
        try await expectConnectionError(peer, .protocolViolation)
        await served.server.shutdown()
    }

    @Test func framesForARequestNeverSentAreAViolation() async throws {
        let served = try await Served.start()
        let (peer, _) = try await RawPeer.hello(port: served.server.port)
        try await peer.send(.cancel, requestID: 9)
        try await expectConnectionError(peer, .protocolViolation)
        await served.server.shutdown()
    }

    @Test func staleFramesAreDiscardedAndTheConnectionGoesOn() async throws {
        let served = try await Served.start()
        let (peer, _) = try await RawPeer.hello(port: served.server.port)
        try await peer.send(.request(RequestEnvelope(.cordon(CordonRequest(operationID: "c-1")))), requestID: 1)
        guard case .response? = try await response(peer, 1) else { Issue.record("no response"); return }
        try await peer.send(.cancel, requestID: 1)  // crossed the Response on the wire
        try await peer.send(.windowUpdate(incrementBytes: 100), requestID: 1)
        try await peer.send(.request(RequestEnvelope(.cordon(CordonRequest(operationID: "c-2")))), requestID: 2)
        guard case .response? = try await response(peer, 2) else { Issue.record("no response after stale frames"); return }
        #expect(peer.isOpen)
        await peer.close()
        await served.server.shutdown()
    }

    @Test func badRequestsAreAnsweredAndTheConnectionGoesOn() async throws {
        let served = try await Served.start()
        let (peer, _) = try await RawPeer.hello(port: served.server.port)
        try await peer.sendBytes(FrameEncoder.encode(Frame(type: .request, requestID: 1,
                                                           payload: ByteBuffer(string: #"{"method":"reboot","params":{}}"#))))
        guard case .error(let unknown)? = try await response(peer, 1) else { Issue.record("no answer"); return }
        #expect(unknown.code == .notImplemented)
        try await peer.sendBytes(FrameEncoder.encode(Frame(type: .request, requestID: 2,
                                                           payload: ByteBuffer(string: #"{"method":"cordon","params":{"operationID":"has space"}}"#))))
        guard case .error(let invalid)? = try await response(peer, 2) else { Issue.record("no answer"); return }
        #expect(invalid.code == .badRequest)
        // Chunks that follow a refused request are stale, not a violation.
        try await peer.send(Frame.chunk(ByteBuffer(bytes: [1, 2, 3]), requestID: 2))
        try await peer.send(.request(RequestEnvelope(.status(StatusRequest()), upload: true)), requestID: 3)
        guard case .error(let mismatch)? = try await response(peer, 3) else { Issue.record("no answer"); return }
        #expect(mismatch.code == .badRequest, "status takes no upload")
        #expect(peer.isOpen)
        await peer.close()
        await served.server.shutdown()
    }

    @Test func deeplyNestedJSONIsRefusedWithoutHarm() async throws {
        let served = try await Served.start()
        let (peer, _) = try await RawPeer.hello(port: served.server.port)
        // Nearly 1 MiB of nesting: a decoder that recursed without a limit would overflow its stack.
        let arrays = #"{"method":"status","params":{"x":"# + String(repeating: "[", count: 400_000)
            + String(repeating: "]", count: 400_000) + "}}"
        let objects = #"{"method":"status","params":"# + String(repeating: #"{"a":"#, count: 150_000) + "1"
            + String(repeating: "}", count: 150_000) + "}"
        for (id, json) in [(UInt32(1), arrays), (2, objects)] {
            try await peer.send(Frame(type: .request, requestID: id, payload: ByteBuffer(string: json)))
            guard case .error(let refusal)? = try await response(peer, id) else { Issue.record("no answer to \(id)"); return }
            #expect(refusal.code == .badRequest)
        }
        #expect(peer.isOpen)
        await peer.close()
        await served.server.shutdown()
    }

    @Test func aClientSendingServerFramesIsAViolation() async throws {
        let served = try await Served.start()
        let (peer, _) = try await RawPeer.hello(port: served.server.port)
        try await peer.send(.goAway(GoAway(lastRequestID: 0, reason: "confused")))
        try await expectConnectionError(peer, .protocolViolation)
        await served.server.shutdown()
    }

    @Test func requestsBeyondTheLimitAreAnsweredBusy() async throws {
        let release = Gate()
        let agent = TestAgent { request in
            await release.wait()
            return try await TestAgent.canned(request)
        }
        var configuration = ServerConfiguration()
        configuration.concurrentRequestsPerConnectionMax = 2
        let served = try await Served.start(configuration: configuration, agent: agent)
        let (peer, hello) = try await RawPeer.hello(port: served.server.port)
        #expect(hello.concurrentRequestsMax == 2)
        for id: UInt32 in 1...3 {
            try await peer.send(.request(RequestEnvelope(.cordon(CordonRequest(operationID: "c")))), requestID: id)
        }
        guard case .error(let busy)? = try await response(peer, 3) else { Issue.record("no busy"); return }
        #expect(busy.code == .busy && busy.code.requestWasNotProcessed)
        #expect(served.server.limits.count(.requestsPerConnection) == 1)
        release.open()
        // Both held requests finish once released, in either order.
        var answered = Set<UInt32>()
        while answered.count < 2, let frame = try await peer.next() {
            guard frame.type != .progress else { continue }
            guard case .response = try frame.message() else { Issue.record("request \(frame.requestID) not answered"); return }
            answered.insert(frame.requestID)
        }
        #expect(answered == [1, 2])
        await peer.close()
        await served.server.shutdown()
    }

    @Test func everyConnectionBeyondTheLimitIsClosedUnserved() async throws {
        var configuration = ServerConfiguration()
        configuration.connectionsMax = 1
        let served = try await Served.start(configuration: configuration)
        let (kept, _) = try await RawPeer.hello(port: served.server.port)
        let refusedWithBusy = try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<150 {
                group.addTask {
                    let peer = try await RawPeer(port: served.server.port)
                    try? await peer.send(.hello(Hello(software: "one too many")))
                    let answer = try? await peer.next(.error)?.message()
                    #expect(await peer.waitClosed())
                    guard case .error(let error)? = answer else { return false }
                    #expect(error.code == .busy)
                    return true
                }
            }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(refusedWithBusy >= 64, "refusals are answered up to their own bound")
        #expect(served.server.connectionCount == 1)
        try await kept.send(.ping(7))
        #expect(try await kept.next(.pong) != nil, "the admitted connection is unaffected")
        await kept.close()
        await served.server.shutdown()
    }

    @Test func pingIsAnsweredWithTheSameBytes() async throws {
        let served = try await Served.start()
        let (peer, _) = try await RawPeer.hello(port: served.server.port)
        try await peer.send(.ping(0xDEAD_BEEF))
        #expect(try await peer.next(.pong)?.message() == .pong(0xDEAD_BEEF))
        await peer.close()
        await served.server.shutdown()
    }

    @Test func anUploadBeyondTheWindowIsAViolation() async throws {
        let release = Gate()
        let agent = TestAgent { request in
            await release.wait()  // reads nothing: no credit goes back
            return try await TestAgent.canned(request)
        }
        let served = try await Served.start(agent: agent)
        defer { release.open() }
        let (peer, hello) = try await RawPeer.hello(port: served.server.port)
        let sha = try #require(SHA256Hex(rawValue: String(repeating: "0", count: 64)))
        // The handler does not read: the window fills and must not overflow.
        try await peer.send(.request(Self.stage(hello.streamWindowBytes * 2, sha256: sha)), requestID: 1)
        let chunk = ByteBuffer(repeating: 7, count: FrameLimits.chunkPayloadBytesMax)
        for _ in 0..<(hello.streamWindowBytes / chunk.readableBytes + 1) {
            try await peer.send(Frame.chunk(chunk, requestID: 1))
        }
        try await expectConnectionError(peer, .protocolViolation)
        await served.server.shutdown()
    }

    @Test func aChunkForARequestWithoutUploadIsAViolation() async throws {
        let release = Gate()
        let agent = TestAgent { request in
            await release.wait()
            return try await TestAgent.canned(request)
        }
        let served = try await Served.start(agent: agent)
        let (peer, _) = try await RawPeer.hello(port: served.server.port)
        try await peer.send(.request(RequestEnvelope(.cordon(CordonRequest(operationID: "c-1")))), requestID: 1)
        try await peer.send(Frame.chunk(ByteBuffer(bytes: [1]), requestID: 1))
        try await expectConnectionError(peer, .protocolViolation)
        release.open()
        await served.server.shutdown()
    }

    @Test func anUploadWhoseChunkEndDoesNotMatchIsRefusedWithDigestMismatch() async throws {
        let served = try await Served.start()
        let (peer, _) = try await RawPeer.hello(port: served.server.port)
        let bytes = ByteBuffer(repeating: 0x42, count: 100_000)
        let claimed = try #require(SHA256Hex(rawValue: String(repeating: "a", count: 64)))
        try await peer.send(.request(Self.stage(bytes.readableBytes, sha256: claimed)), requestID: 1)
        try await peer.send(Frame.chunk(bytes, requestID: 1))
        try await peer.send(.chunkEnd(ChunkEndPayload(sha256: Array(repeating: 0xAA, count: 32), totalBytes: 100_000)), requestID: 1)
        guard case .error(let refusal)? = try await response(peer, 1) else { Issue.record("no answer"); return }
        #expect(refusal.code == .digestMismatch)
        #expect(peer.isOpen)
        await peer.close()
        await served.server.shutdown()
    }

    @Test func anEarlyAnswerMakesTheRestOfTheUploadStale() async throws {
        let agent = TestAgent { request in
            guard case .stage(let stage) = request.payload else { return try await TestAgent.canned(request) }
            // Already staged: answer without reading the upload.
            return Reply(.stage(StageResult(sha256: stage.sha256, bytes: stage.bytes, alreadyStaged: true)))
        }
        let served = try await Served.start(agent: agent)
        let (peer, hello) = try await RawPeer.hello(port: served.server.port)
        let sha = try #require(SHA256Hex(rawValue: String(repeating: "b", count: 64)))
        try await peer.send(.request(Self.stage(10 << 20, sha256: sha)), requestID: 1)
        guard case .response? = try await response(peer, 1) else { Issue.record("no answer"); return }
        // The peer keeps sending past the window: the server discards it, no violation.
        let chunk = ByteBuffer(repeating: 1, count: FrameLimits.chunkPayloadBytesMax)
        for _ in 0..<(2 * hello.streamWindowBytes / chunk.readableBytes) {
            try await peer.send(Frame.chunk(chunk, requestID: 1))
        }
        try await peer.send(.chunkEnd(ChunkEndPayload(sha256: Array(repeating: 0, count: 32), totalBytes: 0)), requestID: 1)
        try await peer.send(.ping(1))
        #expect(try await peer.next(.pong) != nil)
        #expect(peer.isOpen)
        await peer.close()
        await served.server.shutdown()
    }
}
