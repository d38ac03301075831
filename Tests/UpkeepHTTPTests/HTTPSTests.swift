import Foundation
import Testing
import UpkeepHTTP
import UpkeepHTTPServer
import UpkeepPKI
import UpkeepTLS
import UpkeepTestSupport

@Suite("HTTPS in public mode with a custom CA", .timeLimit(.minutes(1)))
struct HTTPSTests {
    static func server(ca: CertificateAuthority, dnsNames: [String], ipAddresses: [String]) async throws -> ScriptedServer {
        let issued = try ca.issueServer(commonName: "mirror", dnsNames: dnsNames, ipAddresses: ipAddresses, keyType: .ecdsaP256,
                                        validity: .days(1).startingEarlier(bySeconds: 60))
        let tls = try TLSContext.publicServer(chain: [issued.certificate], key: issued.key)
        return try await ScriptedServer(tls: tls) { _, _ in .respond(status: 200, body: "secure".bytes) }
    }

    @Test("a certificate from the trusted CA for the dialled address is accepted, on one connection")
    func trustedCertificate() async throws {
        let ca = try CertificateAuthority.create(commonName: "mirror CA", keyType: .ecdsaP256, validity: .days(1).startingEarlier(bySeconds: 60))
        let server = try await Self.server(ca: ca, dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"])
        let client = try HTTPClient(trust: .certificates([ca.certificate]))
        for _ in 0..<2 { #expect(try await client.get(HTTPURL("https://127.0.0.1:\(server.port)/channels.json")).text == "secure") }
        #expect(try await client.get(HTTPURL("https://localhost:\(server.port)/x")).text == "secure")
        #expect(server.connections == 2)
        await client.shutdown()
        await server.close()
    }

    @Test("a certificate for another host name is refused")
    func hostnameMismatch() async throws {
        let ca = try CertificateAuthority.create(commonName: "mirror CA", keyType: .ecdsaP256, validity: .days(1).startingEarlier(bySeconds: 60))
        let server = try await Self.server(ca: ca, dnsNames: ["mirror.example"], ipAddresses: [])
        let client = try HTTPClient(configuration: .init(retry: RetryPolicy(attemptsMax: 1)), trust: .certificates([ca.certificate]))
        await #expect {
            _ = try await client.get(HTTPURL("https://127.0.0.1:\(server.port)/"))
        } throws: { error in
            guard case let .tls(_, reason) = error as? HTTPClientError else { return false }
            return reason.contains("not valid for 127.0.0.1")
        }
        #expect(server.requests.isEmpty)
        await client.shutdown()
        await server.close()
    }

    @Test("a TLS server name replaces the dialled address for verification, as a kubeconfig's tls-server-name does")
    func tlsServerName() async throws {
        let ca = try CertificateAuthority.create(commonName: "mirror CA", keyType: .ecdsaP256, validity: .days(1).startingEarlier(bySeconds: 60))
        let server = try await Self.server(ca: ca, dnsNames: ["mirror.example"], ipAddresses: [])
        let tls = try TLSContext.publicClient(trust: .certificates([ca.certificate]))
        let client = HTTPClient(tls: tls, tlsServerName: "mirror.example")
        #expect(try await client.get(HTTPURL("https://127.0.0.1:\(server.port)/")).text == "secure")
        await client.shutdown()
        await server.close()
    }

    /// The enrollment listener's case (issue 19): silent TCP connections stay in the TLS
    /// handshake budget, never in the places of served connections, and only push each other out.
    @Test("silent connections in the TLS handshake do not keep a client out")
    func silentHandshakesDoNotKeepAClientOut() async throws {
        let ca = try CertificateAuthority.create(commonName: "join CA", keyType: .ecdsaP256, validity: .days(1).startingEarlier(bySeconds: 60))
        let issued = try ca.issueServer(commonName: "join", ipAddresses: ["127.0.0.1"], keyType: .ecdsaP256,
                                        validity: .days(1).startingEarlier(bySeconds: 60))
        let server = try await HTTPServer.start(host: "127.0.0.1", port: 0, configuration: HTTPServer.Configuration(connectionsMax: 4),
                                                tls: try TLSContext.publicServer(chain: [issued.certificate], key: issued.key),
                                                responder: .nonBlocking { _ in .text("joined\n") })
        var silent: [RawPeer] = []
        for _ in 0..<100 { silent.append(try await RawPeer(port: server.port)) }
        try await Task.sleep(for: .milliseconds(500))
        let client = try HTTPClient(configuration: .init(retry: RetryPolicy(attemptsMax: 1)), trust: .certificates([ca.certificate]))
        let started = ContinuousClock.now
        #expect(try await client.get(HTTPURL("https://127.0.0.1:\(server.port)/join")).text == "joined\n")
        #expect(ContinuousClock.now - started < .seconds(1))
        #expect(server.limits.count(.handshakesPerSource) >= 100 - 8, "\(server.limits.counts)")
        #expect(server.limits.count(.connections) == 0)
        let pushedOut = silent.filter(\.isClosed).count
        #expect(pushedOut >= 100 - 8, "\(pushedOut) silent connections closed")
        for peer in silent { await peer.close() }
        await client.shutdown()
        await server.close()
    }

    @Test("a certificate from an untrusted CA is refused")
    func unknownCA() async throws {
        let ca = try CertificateAuthority.create(commonName: "mirror CA", keyType: .ecdsaP256, validity: .days(1).startingEarlier(bySeconds: 60))
        let other = try CertificateAuthority.create(commonName: "other CA", keyType: .ecdsaP256, validity: .days(1).startingEarlier(bySeconds: 60))
        let server = try await Self.server(ca: ca, dnsNames: [], ipAddresses: ["127.0.0.1"])
        let client = try HTTPClient(configuration: .init(retry: RetryPolicy(attemptsMax: 1)), trust: .certificates([other.certificate]))
        await #expect {
            _ = try await client.get(HTTPURL("https://127.0.0.1:\(server.port)/"))
        } throws: { error in
            guard case let .tls(_, reason) = error as? HTTPClientError else { return false }
            return reason.contains("not signed by a trusted CA")
        }
        await client.shutdown()
        await server.close()
    }

    @Test("plain HTTP towards an https URL fails as a TLS error, not a hang")
    func plainServer() async throws {
        let server = try await ScriptedServer { _, _ in .respond(status: 200) }
        let client = try HTTPClient(configuration: .init(connectTimeoutSeconds: 2, retry: RetryPolicy(attemptsMax: 1)), trust: .system)
        await #expect {
            _ = try await client.get(HTTPURL("https://127.0.0.1:\(server.port)/"))
        } throws: { error in
            if case .tls = error as? HTTPClientError { return true }
            return false
        }
        await client.shutdown()
        await server.close()
    }
}
