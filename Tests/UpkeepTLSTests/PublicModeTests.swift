import NIOCore
import Testing
import UpkeepPKI
@testable import UpkeepTLS

/// Public mode: host names and IP addresses are verified, SNI is sent, client certificates work.
@Suite struct PublicModeTests {
    let pki: TestPKI

    init() throws { pki = try TestPKI(name: "public-test-ca") }

    func server(dnsNames: [String] = [], ipAddresses: [String] = [], clientCA: [Certificate]? = nil,
                requireClientCertificate: Bool = false) async throws -> TestServer {
        let issued = try pki.ca.issueServer(commonName: "api", dnsNames: dnsNames, ipAddresses: ipAddresses,
                                            keyType: .ecdsaP256, validity: .days(1))
        let context = try TLSContext.publicServer(chain: [issued.certificate], key: issued.key, clientCA: clientCA,
                                                  requireClientCertificate: requireClientCertificate)
        return try await TestServer.start(context: context)
    }

    var client: TLSContext { get throws { try TLSContext.publicClient(trust: .certificates([pki.ca.certificate])) } }

    @Test func aCertificateForTheDialledNameIsAccepted() async throws {
        let server = try await server(dnsNames: ["localhost"])
        let (channel, observation) = try await connectTLS(port: server.port, context: client, expecting: .host("localhost"))
        let done = try await observation.handshakeDone()
        #expect(done.peer == nil)
        #expect(done.protocolVersion == "TLSv1.3")
        try await channel.close()
        try await server.stop()
    }

    @Test func aCertificateForAnotherHostIsRefused() async throws {
        let server = try await server(dnsNames: ["other.example"])
        let (_, observation) = try await connectTLS(port: server.port, context: client, expecting: .host("localhost"))
        #expect(try await observation.firstError() == .certificateRefused(.hostnameMismatch("localhost")))
        try await server.stop()
    }

    @Test func ipAddressesAreVerifiedAgainstIPSANs() async throws {
        let server = try await server(ipAddresses: ["127.0.0.1"])
        let (channel, good) = try await connectTLS(port: server.port, context: client, expecting: .host("127.0.0.1"))
        _ = try await good.handshakeDone()
        try await channel.close()
        let (_, bad) = try await connectTLS(port: server.port, context: client, expecting: .host("127.0.0.2"))
        #expect(try await bad.firstError() == .certificateRefused(.hostnameMismatch("127.0.0.2")))
        try await server.stop()
    }

    @Test func anUntrustedServerIsRefused() async throws {
        let server = try await server(dnsNames: ["localhost"])
        let stranger = try TestPKI(name: "stranger")
        let context = try TLSContext.publicClient(trust: .certificates([stranger.ca.certificate]))
        let (_, observation) = try await connectTLS(port: server.port, context: context, expecting: .host("localhost"))
        #expect(try await observation.firstError() == .certificateRefused(.unknownCA))
        try await server.stop()
    }

    @Test func clientCertificatesAuthenticateAgainstTheClientCA() async throws {
        let server = try await server(dnsNames: ["localhost"], clientCA: [pki.ca.certificate], requireClientCertificate: true)
        let user = try pki.ca.issueClient(commonName: "system:admin", organization: "system:masters", keyType: .ecdsaP256, validity: .days(1))
        let context = try TLSContext.publicClient(trust: .certificates([pki.ca.certificate]), clientChain: [user.certificate], clientKey: user.key)
        let (channel, observation) = try await connectTLS(port: server.port, context: context, expecting: .host("localhost"))
        _ = try await observation.handshakeDone()
        let serverSide = try await (await server.nextConnection()).handshakeDone()
        #expect(serverSide.peerCertificate?.subjectCommonNames == ["system:admin"])
        try await channel.close()

        let (_, anonymous) = try await connectTLS(port: server.port, context: client, expecting: .host("localhost"))
        let anonymousError = try await anonymous.firstError()
        #expect(anonymousError == .alertReceived(code: 116, description: "certificate_required"))
        try await server.stop()
    }

    @Test func misconfigurationsAreRefusedUpFront() throws {
        #expect(throws: TLSError.invalidConfiguration("an empty list of trusted CAs trusts nothing")) {
            try TLSContext.publicClient(trust: .certificates([]))
        }
        let issued = try pki.identity(.agent, "n")
        let otherKey = try PrivateKey.generate(.ecdsaP256)
        #expect(throws: TLSError.self) {
            try TLSContext.internal(ca: [pki.ca.certificate], chain: [issued.certificate], key: otherKey)
        }
    }
}
