import NIOCore
import NIOPosix
import Testing
import UpkeepPKI
@testable import UpkeepTLS

/// Internal mode over real loopback sockets: who is accepted, who is refused, and why.
@Suite struct MutualTLSTests {
    let pki: TestPKI
    let node1: PeerIdentity

    init() throws {
        pki = try TestPKI()
        node1 = try PeerIdentity(role: .agent, name: "node-1")
    }

    /// Starts an agent-side server for node-1 accepting controllers, dials it with `client`.
    func dialAgent(client: TLSContext, expecting: PeerExpectation? = nil, agent: TLSContext? = nil)
        async throws -> (server: Observation, client: Observation, channel: any Channel, stop: TestServer) {
        let server = try await TestServer.start(context: try agent ?? pki.context(.agent, "node-1"), expecting: .roles([.controller]))
        let (channel, clientObservation) = try await connectTLS(port: server.port, context: client,
                                                                expecting: expecting ?? .identity(node1))
        return (await server.nextConnection(), clientObservation, channel, server)
    }

    @Test func controllerAndAgentCompleteAMutualHandshakeAndExchangeData() async throws {
        let run = try await dialAgent(client: pki.context(.controller, "controller"))
        let clientSide = try await run.client.handshakeDone()
        let serverSide = try await run.server.handshakeDone()
        #expect(clientSide.peer == node1)
        #expect(clientSide.protocolVersion == "TLSv1.3")
        #expect(serverSide.peer == (try PeerIdentity(role: .controller, name: "controller")))

        // A payload larger than many TLS records comes back intact through the echo server.
        var payload = run.channel.allocator.buffer(capacity: 1 << 20)
        for index in 0..<(1 << 20) { payload.writeInteger(UInt8(truncatingIfNeeded: index &* 31)) }
        let expected = Array(payload.readableBytesView)
        try await run.channel.writeAndFlush(payload)
        #expect(try await run.channel.received(atLeast: expected.count) == expected)

        try await run.channel.close()
        #expect(try await run.client.firstError() == nil)
        #expect(try await run.server.firstError() == nil, "the server saw our close_notify")
        try await run.stop.stop()
    }

    @Test func ed25519CertificatesWorkToo() async throws {
        let server = try await TestServer.start(context: pki.context(.agent, "node-1", keyType: .ed25519), expecting: .roles([.controller]))
        let (channel, client) = try await connectTLS(port: server.port, context: pki.context(.controller, "c", keyType: .ed25519),
                                                     expecting: .identity(node1))
        #expect(try await client.handshakeDone().peer == node1)
        try await channel.close()
        try await server.stop()
    }

    @Test func writesBeforeTheHandshakeAreQueuedAndDelivered() async throws {
        let server = try await TestServer.start(context: pki.context(.agent, "node-1"), expecting: .roles([.controller]))
        let (channel, client) = try await connectTLS(port: server.port, context: pki.context(.controller, "controller"),
                                                     expecting: .identity(node1), greeting: "early bird")
        _ = try await client.handshakeDone()
        let early = try await channel.pipeline.handler(type: ObservingHandler.self).map { $0.greetingWasEarly }.get()
        #expect(early, "the greeting was written before the handshake completed")
        #expect(String(decoding: try await channel.received(atLeast: 10), as: UTF8.self) == "early bird")
        try await channel.close()
        try await server.stop()
    }

    @Test func aClientWithoutCertificateIsRefused() async throws {
        let anonymous = try TLSContext.publicClient(trust: .certificates([pki.ca.certificate]))
        let run = try await dialAgent(client: anonymous, expecting: .any)
        #expect(try await run.server.firstError() == .certificateRefused(.missing))
        let clientError = try await run.client.firstError()
        #expect(clientError == .alertReceived(code: 116, description: "certificate_required"))
        try await run.stop.stop()
    }

    @Test func aControllerFromAnotherCAIsRefused() async throws {
        let other = try TestPKI(name: "other-cluster-ca")
        // It trusts our CA (so it accepts the agent) but its own certificate is from another CA.
        let foreign = try other.identity(.controller, "controller")
        let client = try TLSContext.internal(ca: [pki.ca.certificate], chain: [foreign.certificate], key: foreign.key)
        let run = try await dialAgent(client: client)
        #expect(try await run.server.firstError() == .certificateRefused(.unknownCA))
        #expect(try await run.client.firstError() == .alertReceived(code: 48, description: "unknown_ca"))
        try await run.stop.stop()
    }

    @Test func aRevokedAgentCertificateIsRefusedInTheHandshakeAndItsSuccessorAccepted() async throws {
        let revoked = try pki.identity(.agent, "node-1")
        var denied = CertificateDenyList.empty
        let added = denied.add(revoked.certificate, identity: node1.uri, revokedAt: "2026-12-07T00:00:00Z")
        #expect(added)
        // The list as the controller reads it back from its file.
        denied = try CertificateDenyList.parse(denied.text, source: "revoked.txt")
        let controller = try pki.identity(.controller, "controller")
        let client = try TLSContext.internal(ca: [pki.ca.certificate], chain: [controller.certificate], key: controller.key, denied: denied)

        let agent = try TLSContext.internal(ca: [pki.ca.certificate], chain: [revoked.certificate], key: revoked.key)
        let run = try await dialAgent(client: client, agent: agent)
        #expect(try await run.client.firstError()
                == .certificateRefused(.revoked(identity: node1.uri, fingerprint: revoked.certificate.sha256Fingerprint)))
        #expect(try await run.server.firstError() == .alertReceived(code: 44, description: "certificate_revoked"))
        try await run.stop.stop()

        // A new certificate for the same node is another fingerprint: accepted.
        let renewed = try await dialAgent(client: client)
        #expect(try await renewed.client.handshakeDone().peer == node1)
        try await renewed.channel.close()
        try await renewed.stop.stop()
    }

    @Test func anAgentFromAnotherCAIsRefusedByTheController() async throws {
        let other = try TestPKI(name: "upkeep-test-ca")  // same CA name, different key
        let run = try await dialAgent(client: pki.context(.controller, "controller"), agent: other.context(.agent, "node-1"))
        #expect(try await run.client.firstError() == .certificateRefused(.unknownCA))
        try await run.stop.stop()
    }

    @Test func anExpiredControllerCertificateIsRefused() async throws {
        let run = try await dialAgent(client: pki.context(.controller, "controller", validity: TestPKI.expired))
        #expect(try await run.server.firstError() == .certificateRefused(.expired))
        #expect(try await run.client.firstError() == .alertReceived(code: 45, description: "certificate_expired"))
        try await run.stop.stop()
    }

    @Test func anExpiredAgentCertificateIsRefusedByTheController() async throws {
        let run = try await dialAgent(client: pki.context(.controller, "controller"),
                                      agent: pki.context(.agent, "node-1", validity: TestPKI.expired))
        #expect(try await run.client.firstError() == .certificateRefused(.expired))
        #expect(try await run.server.firstError() == .alertReceived(code: 45, description: "certificate_expired"))
        try await run.stop.stop()
    }

    @Test func aNotYetValidCertificateIsRefusedOnBothSides() async throws {
        let early = try await dialAgent(client: pki.context(.controller, "controller", validity: TestPKI.notYetValid))
        #expect(try await early.server.firstError() == .certificateRefused(.notYetValid))
        try await early.stop.stop()
        let earlyAgent = try await dialAgent(client: pki.context(.controller, "controller"),
                                             agent: pki.context(.agent, "node-1", validity: TestPKI.notYetValid))
        #expect(try await earlyAgent.client.firstError() == .certificateRefused(.notYetValid))
        try await earlyAgent.stop.stop()
    }

    @Test func anAgentCertificateCannotActAsController() async throws {
        let run = try await dialAgent(client: pki.context(.agent, "node-2"))
        #expect(try await run.server.firstError() == .certificateRefused(.wrongRole(expected: [.controller], actual: try PeerIdentity(role: .agent, name: "node-2"))))
        guard case .alertReceived = try await run.client.firstError() else {
            Issue.record("the refused client should see the server's alert")
            return
        }
        try await run.stop.stop()
    }

    @Test func theControllerRefusesAServerThatIsNotAnAgent() async throws {
        let run = try await dialAgent(client: pki.context(.controller, "controller"), agent: pki.context(.controller, "impostor"))
        #expect(try await run.client.firstError() == .certificateRefused(.wrongRole(expected: [.agent], actual: try PeerIdentity(role: .controller, name: "impostor"))))
        try await run.stop.stop()
    }

    @Test func theControllerRefusesTheWrongNode() async throws {
        let node2 = try PeerIdentity(role: .agent, name: "node-2")
        let run = try await dialAgent(client: pki.context(.controller, "controller"), expecting: .identity(node2))
        #expect(try await run.client.firstError() == .certificateRefused(.wrongIdentity(expected: node2, actual: node1)))
        guard case .alertReceived = try await run.server.firstError() else {
            Issue.record("the agent should see the controller's alert")
            return
        }
        try await run.stop.stop()
    }
}
