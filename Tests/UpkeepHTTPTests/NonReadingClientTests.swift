import NIOCore
import Testing
import UpkeepCore
import UpkeepHTTP
import UpkeepHTTPServer
import UpkeepPKI
import UpkeepTLS
import UpkeepTestSupport

/// A client that completes the mutual-TLS handshake, pipelines requests and never reads the
/// answers (docs/tls.md, "A peer that stops reading"): the server answers the next request only
/// while the connection is writable, closes it when the client has not drained within the
/// deadline, counts it, and serves other clients meanwhile. `upkeep serve` and the enrollment
/// listener run this server.
@Suite("HTTP server and a client that stops reading", .timeLimit(.minutes(1)))
struct NonReadingClientTests {
    @Test("pipelined answers to a client that stops reading wait for it, and it is closed at the drain deadline")
    func nonReadingClientIsClosedAtTheDrainDeadline() async throws {
        let validity = ValidityPeriod.days(1).startingEarlier(bySeconds: 60)
        let ca = try CertificateAuthority.create(commonName: "serve CA", keyType: .ecdsaP256, validity: validity)
        let serverIssued = try ca.issueServer(commonName: "serve", ipAddresses: ["127.0.0.1"], keyType: .ecdsaP256, validity: validity)
        let clientIssued = try ca.issueClient(commonName: "operator", keyType: .ecdsaP256, validity: validity)
        let bounds = OutboundBounds(highWaterMarkBytes: 64 << 10, lowWaterMarkBytes: 16 << 10, pendingBytesMax: 1 << 20, drainTimeout: .seconds(1))
        let body = [UInt8](repeating: 0x61, count: 200 << 10)
        let server = try await HTTPServer.start(
            host: "127.0.0.1", port: 0, configuration: HTTPServer.Configuration(outbound: bounds),
            tls: try TLSContext.publicServer(chain: [serverIssued.certificate], key: serverIssued.key, clientCA: [ca.certificate],
                                             requireClientCertificate: true),
            responder: .nonBlocking { request in
                request.path == "/big" ? HTTPServerResponse(status: 200, contentType: "text/plain", body: body) : .text("ok\n")
            })
        let clientTLS = try TLSContext.publicClient(trust: .certificates([ca.certificate]), clientChain: [clientIssued.certificate],
                                                    clientKey: clientIssued.key)
        let peer = try await RawPeer(port: server.port, receiveBufferBytes: 16 << 10) { pipeline in
            try pipeline.addHandler(clientTLS.makeClientHandler(expecting: .host("127.0.0.1")))
        }
        try await peer.send("GET /ok HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        #expect(try await peer.waitFor("ok\n"), "the handshake and a first request complete")
        try await peer.pauseReading()
        let started = ContinuousClock.now
        // 100 answers of 200 KiB: 20 MiB that would pile up in the server for a client that never reads.
        try await peer.send(String(repeating: "GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", count: 100))

        let other = HTTPClient(configuration: .init(retry: RetryPolicy(attemptsMax: 1)), tls: clientTLS)
        #expect(try await other.get(HTTPURL("https://127.0.0.1:\(server.port)/ok")).text == "ok\n")

        let limits = server.limits
        let deadline = ContinuousClock.now + .seconds(8)
        while limits.count(.drainTimeout) == 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(ContinuousClock.now - started < .seconds(8), "the connection of a client that does not read stays open")
        #expect(limits.count(.drainTimeout) == 1, "\(limits.counts)")
        // Reading again, the client finds its connection closed (one that does not read cannot see it).
        await peer.resumeReading()
        #expect(try await peer.waitClosed(within: 2))
        #expect(server.limits.count(.outboundBytes) == 0, "the next answer waited for the channel to be writable")
        #expect(try await other.get(HTTPURL("https://127.0.0.1:\(server.port)/ok")).text == "ok\n")
        await peer.close()
        await other.shutdown()
        await server.close()
    }
}
