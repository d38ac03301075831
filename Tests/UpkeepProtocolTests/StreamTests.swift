import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing
import UpkeepCore
import UpkeepProtocol

/// Upload and download streams: integrity, flow control, refusals.
@Suite(.timeLimit(.minutes(1))) struct StreamTests {
    static func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var random = SeededGenerator(seed: seed)
        return (0..<count).map { _ in UInt8(truncatingIfNeeded: random.next()) }
    }

    /// Emits `bytes` in buffers of `pieceBytes` (a size unrelated to frames or windows).
    static func source(_ bytes: [UInt8], pieceBytes: Int = 100_003) -> ChunkSource {
        ChunkSource(emitting(bytes, pieceBytes: pieceBytes))
    }

    static func emitting(_ bytes: [UInt8], pieceBytes: Int = 100_003) -> @Sendable ((ByteBuffer) async throws -> Void) async throws -> Void {
        let whole = ByteBuffer(bytes: bytes)
        return { emit in
            var rest = whole
            while let piece = rest.readSlice(length: min(pieceBytes, rest.readableBytes)), piece.readableBytes > 0 {
                try await emit(piece)
            }
        }
    }

    @Test(arguments: Transport.allCases)
    func anUploadArrivesWhole(transport: Transport) async throws {
        let bytes = Self.randomBytes(5 << 20, seed: 1)
        let received = Mutex<[UInt8]>([])
        let agent = TestAgent { request in
            guard case .stage(let stage) = request.payload else { return try await TestAgent.canned(request) }
            let summary = try await request.upload.consume { chunk in received.withLock { $0 += chunk.readableBytesView } }
            return Reply(.stage(StageResult(sha256: try #require(summary).sha256, bytes: stage.bytes, alreadyStaged: false)))
        }
        let served = try await Served.start(transport, agent: agent)
        let client = try await served.connect()
        let expected = try await sha256(of: bytes)
        let result = try await client.call(StageRequest(operationID: "stage-1", k3sVersion: "v1.31.2+k3s1", sha256: expected,
                                                        bytes: Int64(bytes.count)),
                                           upload: Self.source(bytes), deadline: soon(30))
        #expect(result.sha256 == expected, "the digest the protocol verified is what openssl computes")
        #expect(received.withLock { $0 == bytes })
        await client.close()
        await served.server.shutdown()
    }

    @Test func anUploadThatIsNotTheAnnouncedArtifactIsRefused() async throws {
        let served = try await Served.start()
        let client = try await served.connect()
        let bytes = Self.randomBytes(1 << 20, seed: 2)
        let wrong = try await sha256(of: Array(bytes.dropLast()))
        await #expect {
            _ = try await client.call(StageRequest(operationID: "stage-2", k3sVersion: "v1", sha256: wrong, bytes: Int64(bytes.count)),
                                      upload: Self.source(bytes), deadline: soon(30))
        } throws: { error in
            guard case ProtocolError.remote(let response) = error else { return false }
            return response.code == .digestMismatch
        }
        await client.close()
        await served.server.shutdown()
    }

    /// A sender that knows the digest (a release checked against its sha256sum file) does not hash
    /// again; the receiver still does: matching bytes arrive, other bytes are refused.
    @Test func anUploadWithAKnownDigestIsStillVerifiedByTheReceiver() async throws {
        let bytes = Self.randomBytes(3 << 20, seed: 4)
        let expected = try await sha256(of: bytes)
        let served = try await Served.start()
        let client = try await served.connect()
        let known = ChunkSource(sha256: expected, Self.emitting(bytes))
        let result = try await client.call(StageRequest(operationID: "stage-k1", k3sVersion: "v1", sha256: expected, bytes: Int64(bytes.count)),
                                           upload: known, deadline: soon(30))
        #expect(result.sha256 == expected && result.bytes == Int64(bytes.count))

        var tampered = bytes
        tampered[1_234_567] ^= 0x01
        let lying = ChunkSource(sha256: expected, Self.emitting(tampered))
        await #expect {
            _ = try await client.call(StageRequest(operationID: "stage-k2", k3sVersion: "v1", sha256: expected, bytes: Int64(bytes.count)),
                                      upload: lying, deadline: soon(30))
        } throws: { error in
            guard case ProtocolError.remote(let response) = error else { return false }
            return response.code == .digestMismatch
        }
        await client.close()
        await served.server.shutdown()
    }

    @Test(arguments: Transport.allCases)
    func aDownloadArrivesWholeAndVerified(transport: Transport) async throws {
        let bytes = Self.randomBytes(3 << 20, seed: 3)
        let agent = TestAgent { request in
            guard case .backup = request.payload else { return try await TestAgent.canned(request) }
            return Reply(.backup(BackupResult(format: .etcdSnapshot, fileName: "snap", bytes: Int64(bytes.count))),
                         download: Self.source(bytes, pieceBytes: 65_537))
        }
        let served = try await Served.start(transport, agent: agent)
        let client = try await served.connect()
        let (result, received, summary) = try await client.withCall(BackupRequest(operationID: "backup-1"), deadline: soon(30)) { call in
            let result = try await call.response()
            var received: [UInt8] = []
            let summary = try await call.download.consume { received += $0.readableBytesView }
            return (result, received, summary)
        }
        #expect(result.bytes == Int64(bytes.count))
        #expect(received == bytes)
        #expect(summary?.sha256 == (try await sha256(of: bytes)))
        await client.close()
        await served.server.shutdown()
    }

    @Test func aStalledDownloadDoesNotBlockOtherCallsOnTheConnection() async throws {
        let agent = TestAgent { request in
            guard case .backup = request.payload else { return try await TestAgent.canned(request) }
            let block = ByteBuffer(repeating: 9, count: 1 << 20)
            return Reply(.backup(BackupResult(format: .sqliteTar, fileName: "db.tar", bytes: 64 << 20)),
                         download: ChunkSource { emit in for _ in 0..<64 { try await emit(block) } })
        }
        let served = try await Served.start(agent: agent)
        let client = try await served.connect()
        try await client.withCall(BackupRequest(operationID: "backup-2"), deadline: soon(30)) { call in
            _ = try await call.response()
            // The download is not read: its window fills and the agent waits for credit…
            try await Task.sleep(for: .milliseconds(200))
            // …while other calls on the same connection still get through.
            for index in 0..<20 {
                let probe = try await client.call(ProbeRequest(expectedK3sVersion: "\(index)"), deadline: soon())
                #expect(probe.checks.first?.message == "\(index)")
            }
        }
        // Leaving withCall cancelled the download; the connection is still fine.
        #expect(try await client.call(ProbeRequest(expectedK3sVersion: "end"), deadline: soon()).checks.first?.message == "end")
        await client.close()
        await served.server.shutdown()
    }

    @Test func anUploadSourceThatFailsCancelsTheCall() async throws {
        struct DiskError: Error {}
        let served = try await Served.start()
        let client = try await served.connect()
        let failing = ChunkSource { emit in
            try await emit(ByteBuffer(repeating: 1, count: 10_000))
            throw DiskError()
        }
        let sha = try #require(SHA256Hex(rawValue: String(repeating: "c", count: 64)))
        await #expect {
            _ = try await client.call(StageRequest(operationID: "stage-3", k3sVersion: "v1", sha256: sha, bytes: 20_000),
                                      upload: failing, deadline: soon())
        } throws: { error in
            guard case ProtocolError.uploadFailed = error else { return false }
            return true
        }
        #expect(try await client.call(CordonRequest(operationID: "c-9"), deadline: soon()).wasUnschedulable == false)
        await client.close()
        await served.server.shutdown()
    }

    @Test func aDownloadWhoseChunkEndDoesNotMatchIsRefusedByTheClient() async throws {
        let fake = try await FakeAgent.start { request, id in
            [try Frame(.response(ResponseEnvelope(.backup(BackupResult(format: .etcdSnapshot, fileName: "x", bytes: 3)), download: true)),
                       requestID: id),
             Frame.chunk(ByteBuffer(bytes: [1, 2, 3]), requestID: id),
             try Frame(.chunkEnd(ChunkEndPayload(sha256: Array(repeating: 0, count: 32), totalBytes: 3)), requestID: id)]
        }
        let client = try await ProtocolClient.connect(host: "127.0.0.1", port: fake.port)
        await #expect {
            try await client.withCall(BackupRequest(operationID: "backup-3"), deadline: soon()) { call in
                _ = try await call.response()
                try await call.download.consume { _ in }
            }
        } throws: { error in
            guard case ProtocolError.digestMismatch = error else { return false }
            return true
        }
        await client.close()
        try await fake.channel.close()
    }

    @Test func anAgentOverrunningTheDownloadWindowIsAViolation() async throws {
        let fake = try await FakeAgent.start { _, id in
            let chunk = ByteBuffer(repeating: 5, count: FrameLimits.chunkPayloadBytesMax)
            return [try Frame(.response(ResponseEnvelope(.backup(BackupResult(format: .etcdSnapshot, fileName: "x", bytes: 1 << 30)),
                                                         download: true)), requestID: id)]
                + Array(repeating: Frame.chunk(chunk, requestID: id), count: StreamWindow.bytesDefault / chunk.readableBytes + 1)
        }
        let client = try await ProtocolClient.connect(host: "127.0.0.1", port: fake.port)
        await #expect {
            try await client.withCall(BackupRequest(operationID: "backup-4"), deadline: soon(20)) { call in
                _ = try await call.response()
                // Reads nothing (so no credit goes back) until the client has dropped the agent.
                _ = await eventually(within: 15) { !client.isUsable }
                try await call.download.consume { _ in }
            }
        } throws: { error in
            guard case ProtocolError.connectionClosed(let detail) = error else { return false }
            return detail.contains("window")
        }
        #expect(!client.isUsable)
        try await fake.channel.close()
    }
}

/// SHA-256 as the real `openssl` binary computes it (an independent witness).
func sha256(of bytes: [UInt8]) async throws -> SHA256Hex {
    let file = FileManager.default.temporaryDirectory.appending(path: "upkeep-protocol-\(UUID().uuidString)")
    try Data(bytes).write(to: file)
    defer { try? FileManager.default.removeItem(at: file) }
    return try await shellSHA256("openssl dgst -sha256 -r '\(file.path)'")
}

/// Runs `script` with /bin/sh and parses the first word of its output as a SHA-256, without
/// blocking a thread of the concurrency pool.
func shellSHA256(_ script: String) async throws -> SHA256Hex {
    let process = Process()
    process.executableURL = URL(filePath: "/bin/sh")
    process.arguments = ["-c", script]
    let output = Pipe()
    process.standardOutput = output
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
        process.terminationHandler = { _ in continuation.resume() }
        do { try process.run() } catch { continuation.resume(throwing: error) }
    }
    let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    guard let digest = SHA256Hex(rawValue: String(text.prefix(64))) else {
        throw ProtocolError.protocolViolation("no digest from `\(script)`: \(text)")
    }
    return digest
}

/// A fake agent speaking frames directly: HelloReply, then `answer` for each Request. For
/// client-side checks that a real server would never fail.
struct FakeAgent {
    let channel: any Channel
    var port: Int { channel.localAddress?.port ?? 0 }

    final class Responder: ChannelInboundHandler, Sendable {
        typealias InboundIn = Frame
        typealias OutboundOut = Frame
        let answer: @Sendable (RequestEnvelope, UInt32) throws -> [Frame]
        init(_ answer: @escaping @Sendable (RequestEnvelope, UInt32) throws -> [Frame]) { self.answer = answer }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let frame = unwrapInboundIn(data)
            do {
                switch try frame.message() {
                case .hello:
                    let reply = HelloReply(protocolVersion: 1, agent: TestAgent.info, streamWindowBytes: StreamWindow.bytesDefault,
                                           concurrentRequestsMax: 8)
                    context.writeAndFlush(wrapOutboundOut(try Frame(.helloReply(reply), requestID: 0)), promise: nil)
                case .request(let envelope):
                    for answer in try answer(envelope, frame.requestID) { context.write(wrapOutboundOut(answer), promise: nil) }
                    context.flush()
                default:
                    break
                }
            } catch {
                context.close(promise: nil)
            }
        }
    }

    static func start(_ answer: @escaping @Sendable (RequestEnvelope, UInt32) throws -> [Frame]) async throws -> FakeAgent {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(ByteToMessageHandler(FrameDecoder()), FrameEncoder(),
                                                                    Responder(answer))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return FakeAgent(channel: channel)
    }
}
