import Foundation
import NIOCore
import Synchronization
import Testing
import UpkeepProtocol

#if canImport(Glibc)
import Glibc
#endif

/// Scale: many connections at once, and a large artifact with bounded memory. Serialized so
/// that their memory and descriptor use do not overlap.
@Suite(.serialized, .timeLimit(.minutes(3))) struct LoadTests {
    /// Raises the soft descriptor limit to at least `count` (bounded by the hard limit).
    static func ensureDescriptors(_ count: Int) throws {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        if limit.rlim_cur < rlim_t(count) {
            limit.rlim_cur = min(rlim_t(count), limit.rlim_max)
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        try #require(getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 && limit.rlim_cur >= rlim_t(count),
                     "need \(count) file descriptors, the hard limit is \(limit.rlim_max)")
    }

    @Test(arguments: Transport.allCases)
    func aThousandConnectionsWithCallsInFlight(transport: Transport) async throws {
        let connections = 1000
        try Self.ensureDescriptors(2 * connections + 256)
        let inFlight = Counter()
        let allInFlight = Gate()
        let agent = TestAgent { request in
            inFlight.increment()
            if inFlight.value >= connections { allInFlight.open() }
            await allInFlight.wait()  // every call is open at the same time before any answers
            return try await TestAgent.canned(request)
        }
        var configuration = ServerConfiguration()
        configuration.connectionsMax = connections + 10
        // A thousand handshakes at once from one address is this test, not a controller: the
        // handshake budget (8 per address by default) would rightly push most of them out.
        configuration.handshakesMax = connections
        configuration.handshakesPerSourceMax = connections
        // A thousand handshakes queue on two busy cores: the last is served long after its
        // accept, so the per-connection bounds are this test's, not a controller's.
        configuration.handshakeTimeout = .seconds(90)
        configuration.helloTimeout = .seconds(90)
        var patient = ClientConfiguration()
        patient.connectTimeout = .seconds(90)
        let client = patient
        let served = try await Served.start(transport, configuration: configuration, agent: agent)
        let deadline = soon(120)
        let clients = try await withThrowingTaskGroup(of: ProtocolClient.self) { group in
            for _ in 0..<connections { group.addTask { try await served.connect(client) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(served.server.connectionCount == connections)
        let answered = try await withThrowingTaskGroup(of: Bool.self) { group in
            for (index, client) in clients.enumerated() {
                group.addTask {
                    let probe = try await client.call(ProbeRequest(expectedK3sVersion: "c\(index)"), deadline: deadline)
                    return probe.checks.first?.message == "c\(index)"
                }
            }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(inFlight.value == connections)
        #expect(answered == connections)
        await withTaskGroup(of: Void.self) { group in
            for client in clients { group.addTask { await client.close() } }
        }
        await served.server.shutdown()
    }

    @Test(arguments: Transport.allCases)
    func a256MiBArtifactArrivesVerifiedWithBoundedMemory(transport: Transport) async throws {
        let blockBytes = 1 << 20
        let blocks = 256
        let block = StreamTests.randomBytes(blockBytes, seed: 256)
        let blockFile = FileManager.default.temporaryDirectory.appending(path: "upkeep-block-\(UUID().uuidString)")
        try Data(block).write(to: blockFile)
        defer { try? FileManager.default.removeItem(at: blockFile) }
        // The digest of the whole stream, from the real openssl binary over the same bytes.
        let expected = try await shellSHA256("for i in $(seq \(blocks)); do cat '\(blockFile.path)'; done | openssl dgst -sha256 -r")

        let mismatches = Counter()
        let agent = TestAgent { request in
            guard case .stage(let stage) = request.payload else { return try await TestAgent.canned(request) }
            // Read nothing at first: without flow control the whole stream would pile up here.
            try await Task.sleep(for: .milliseconds(1_500))
            // Check every byte where it lands, keeping none of them.
            var offset = 0
            let summary = try await request.upload.consume { chunk in
                chunk.withUnsafeReadableBytes { bytes in
                    block.withUnsafeBytes { expected in
                        var done = 0
                        while done < bytes.count {
                            let at = (offset + done) % blockBytes
                            let length = min(bytes.count - done, blockBytes - at)
                            if memcmp(bytes.baseAddress! + done, expected.baseAddress! + at, length) != 0 { mismatches.increment() }
                            done += length
                        }
                    }
                }
                offset += chunk.readableBytes
            }
            guard let summary, summary.sha256 == stage.sha256, summary.bytes == stage.bytes else {
                throw ErrorResponse(.digestMismatch, "got \(String(describing: summary))")
            }
            return Reply(.stage(StageResult(sha256: summary.sha256, bytes: summary.bytes, alreadyStaged: false)))
        }
        let served = try await Served.start(transport, agent: agent)
        let client = try await served.connect()

        let before = residentMemory().rss
        let peak = Mutex(before)
        let sampling = Task {
            while !Task.isCancelled {
                let rss = residentMemory().rss
                peak.withLock { $0 = max($0, rss) }
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
        let whole = ByteBuffer(bytes: block)
        let source = ChunkSource { emit in
            for _ in 0..<blocks { try await emit(whole) }
        }
        let result = try await client.call(
            StageRequest(operationID: "stage-big", k3sVersion: "v1.31.2+k3s1", sha256: expected, bytes: Int64(blocks * blockBytes)),
            upload: source, deadline: soon(120))
        sampling.cancel()
        let growth = peak.withLock { $0 } - before
        print("256 MiB upload (\(transport)): resident memory grew by \(growth >> 10) KiB (peak \(residentMemory().peak >> 20) MiB)")

        #expect(result.sha256 == expected)
        #expect(result.bytes == Int64(blocks * blockBytes))
        #expect(mismatches.value == 0)
        // The stream is 256 MiB; both ends together may hold only windows and buffers. (The
        // bound leaves room for other tests running in this process at the same time.)
        #expect(growth < 96 << 20, "resident memory grew by \(growth >> 20) MiB while streaming 256 MiB")
        await client.close()
        await served.server.shutdown()
    }
}
