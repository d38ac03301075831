import Foundation
import Testing
import UpkeepCore
import UpkeepHTTPServer
import UpkeepTestSupport
@testable import UpkeepCLI

/// `upkeep serve`'s listener (its responder, its bounds but for shorter times) against raw TCP
/// peers that trickle, idle and flood: issue 19's probe, in seconds rather than minutes.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct ServeSlowClientTests {
    /// Serve's own configuration with its times shortened: by default a head within 1 s, an
    /// answer within 2 s, 1 s idle between requests.
    static func serve(_ directory: TemporaryDirectory, headerReadSeconds: Double = 1, idleSeconds: Double = 1,
                      outbound: OutboundBounds = Serve.serverConfiguration.outbound) async throws -> HTTPServer {
        let config = try ControllerConfig.load(path: try HistoryStatusCommandTests.recordedState(directory))
        var configuration = Serve.serverConfiguration
        configuration.headerReadTimeoutSeconds = headerReadSeconds
        configuration.requestTimeoutSeconds = headerReadSeconds + 1
        configuration.idleTimeoutSeconds = idleSeconds
        configuration.outbound = outbound
        return try await Serve.listen(host: "127.0.0.1", port: 0, configuration: configuration, tls: nil, config: config,
                                      api: StatusAPI(config: config, store: try openStateStore(config), board: nil), board: nil)
    }

    static func scrape(_ server: HTTPServer, _ limit: String) throws -> String? {
        let metrics = try runProcess("curl", ["-sS", "--max-time", "10", "http://127.0.0.1:\(server.port)/metrics"])
        return metrics.output.split(separator: "\n").first { $0.hasPrefix("upkeep_http_server_limits_reached_total{limit=\"\(limit)\"} ") }
            .map { String($0.split(separator: " ").last ?? "") }
    }

    @Test func aHeadTrickledOneByteAtATimeIsCutAtTheHeaderBoundAndCounted() async throws {
        let directory = try TemporaryDirectory()
        let server = try await Self.serve(directory)
        let peer = try await RawPeer(port: server.port)
        try await peer.send("GET /metrics HTTP/1.1\r\n")
        var sent = 0
        // A header byte every 200 ms would take 8 s for these 40: only a bound on the whole head ends it sooner.
        for character in "X-Slow: \(String(repeating: "a", count: 32))" where !peer.isClosed {
            try? await peer.send(String(character))
            sent += 1
            try await Task.sleep(nanoseconds: 200_000_000)
        }
        #expect(peer.isClosed && sent < 12, "still open after \(sent) header bytes")
        #expect(peer.received.isEmpty)
        #expect(try Self.scrape(server, "header_read_timeout") == "1")
        await server.close()
    }

    @Test func anIdleKeepAliveConnectionIsClosedAndA400ClosesAtOnce() async throws {
        let directory = try TemporaryDirectory()
        let server = try await Self.serve(directory)
        let idle = try await RawPeer(port: server.port)
        try await idle.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        #expect(try await idle.waitFor("ok\n"))
        #expect(!idle.received.lowercased().contains("connection: close"))
        #expect(try await idle.waitClosed(within: 5), "kept open past the idle bound (1 s)")

        let bad = try await RawPeer(port: server.port)
        try await bad.send("GET /v1/rollouts?limit=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        #expect(try await bad.waitClosed(within: 0.5), "a 400 must close the connection at once, not at the idle bound")
        #expect(bad.received.hasPrefix("HTTP/1.1 400 Bad Request\r\n") && bad.received.lowercased().contains("connection: close\r\n"),
                "\(bad.received)")

        let malformed = try await RawPeer(port: server.port)
        try await malformed.send("HELLO\r\n\r\n")
        #expect(try await malformed.waitClosed(within: 0.5))
        #expect(malformed.received.hasPrefix("HTTP/1.1 400 Bad Request\r\n"), "\(malformed.received)")
        await server.close()
    }

    @Test func aClientThatStopsReadingItsAnswersIsClosedAtTheDrainDeadlineAndCounted() async throws {
        let directory = try TemporaryDirectory()
        let outbound = OutboundBounds(highWaterMarkBytes: 16 << 10, lowWaterMarkBytes: 4 << 10, pendingBytesMax: 1 << 20, drainTimeout: .seconds(1))
        let server = try await Self.serve(directory, headerReadSeconds: 20, idleSeconds: 20, outbound: outbound)
        let peer = try await RawPeer(port: server.port, receiveBufferBytes: 4 << 10)
        try await peer.pauseReading()
        // Pipelined scrapes, never read: without a bound their answers pile up in serve.
        let started = ContinuousClock.now
        // (serve stops reading them while it cannot answer: the send itself may find the connection closed)
        let flood = Task { try await peer.send(String(repeating: "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", count: 2000)) }
        #expect(try Self.scrape(server, "connections") == "0", "serve answers others meanwhile")
        var drained = try Self.scrape(server, "drain_timeout")
        while drained != "1", ContinuousClock.now - started < .seconds(8) {
            try await Task.sleep(for: .milliseconds(200))
            drained = try Self.scrape(server, "drain_timeout")
        }
        #expect(drained == "1", "the connection of a client that does not read stays open")
        await peer.resumeReading()
        #expect(try await peer.waitClosed(within: 2))
        _ = try? await flood.value
        #expect(try Self.scrape(server, "outbound_bytes") == "0")
        await peer.close()
        await server.close()
    }

    @Test func healthzAnswersWhileMoreThan64SlowClientsAreConnected() async throws {
        let directory = try TemporaryDirectory()
        // Long enough that neither the slow clients nor the kept ones are closed by time here.
        let server = try await Self.serve(directory, headerReadSeconds: 20, idleSeconds: 20)
        var held: [RawPeer] = []
        for _ in 0..<Serve.serverConfiguration.connectionsMax {  // every place: keep-alive clients that asked once
            let peer = try await RawPeer(port: server.port)
            try await peer.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            held.append(peer)
        }
        for peer in held { #expect(try await peer.waitFor("ok\n")) }
        var slow: [RawPeer] = []
        for _ in 0..<100 {
            let peer = try await RawPeer(port: server.port)
            try await peer.send("GET /metrics HTTP/1.1\r\nX-Slow: a")
            slow.append(peer)
        }
        for attempt in 0..<3 {
            let health = try await RawPeer(port: server.port)
            let asked = ContinuousClock.now
            try await health.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            #expect(try await health.waitFor("ok\n", within: 5), "attempt \(attempt): \(health.received)")
            #expect(ContinuousClock.now - asked < .seconds(2), "answered at once, not after the slow clients' header bound (20 s)")
            #expect(try await health.waitClosed(within: 2), "the reserve closes after its answer")
        }
        let metrics = try await RawPeer(port: server.port)
        try await metrics.send("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        #expect(try await metrics.waitClosed(within: 2))
        #expect(metrics.received.hasPrefix("HTTP/1.1 503 Service Unavailable\r\n"), "every place is taken: \(metrics.received)")
        for peer in held + slow { await peer.close() }
        try await Task.sleep(nanoseconds: 200_000_000)
        let displaced = try Self.scrape(server, "awaiting_request_per_source").flatMap { Int($0) } ?? 0
        #expect(displaced >= 100 - 8, "100 slow clients through 8 places per address")
        #expect(try Self.scrape(server, "connections") == "1")
        await server.close()
    }
}
