import Foundation
import Testing
import UpkeepAgent
import UpkeepFleet
import UpkeepPKI
import UpkeepProtocol
import UpkeepTestSupport

/// Renewal over the agent's own mutual-TLS connection, against a real agent: the node makes its
/// key, the controller's CA signs, and the next connection is served with the new certificate.
@Suite(.serialized) struct CertificateRenewalTests {
    struct Rig {
        let node: AgentNodeFixture
        let pki: FleetPKI
        let issued: IssuedIdentity
        let fleet: AgentFleet

        init() async throws {
            node = try AgentNodeFixture(name: "agent-1", liveVersion: v1)
            pki = try FleetPKI(in: node.directory.file("pki"))
            issued = try pki.agent("agent-1")
            try await node.start(pki: pki, identity: issued, kubeconfig: nil)
            fleet = AgentFleet(security: try pki.controllerSecurity(), endpoints: ["agent-1": AgentEndpoint(host: "127.0.0.1", port: node.port)])
        }

        func close() async {
            await fleet.close()
            await node.shutdown()
        }

        /// The SHA-256 fingerprint of the certificate the agent serves a new connection with, as
        /// `openssl s_client` sees it, with the controller's certificate.
        func servedFingerprint() throws -> String {
            let dir = pki.directory.path
            let command = "openssl s_client -connect 127.0.0.1:\(node.port) -CAfile \(dir)/ca.crt -cert \(dir)/controllers/controller.crt "
                + "-key \(dir)/controllers/controller.key </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
            let result = try runProcess("/bin/sh", ["-c", command], timeoutSeconds: 30)
            return result.output.split(separator: "=").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) } ?? "none: \(result.error)"
        }
    }

    @Test func theAgentMakesItsKeyTheCASignsAndTheNextConnectionShowsTheNewCertificate() async throws {
        let rig = try await Rig()
        let oldKey = try String(contentsOfFile: rig.issued.keyPath, encoding: .utf8)
        #expect(try rig.servedFingerprint() == rig.issued.certificate.sha256Fingerprint)

        let authority = try rig.pki.directory.loadCA()
        let renewed = try await CertificateRenewal.renew(node: "agent-1", fleet: rig.fleet, authority: authority, validity: .days(1))
        // The node's files: a new key the controller never saw, and the certificate for it.
        let newKey = try PrivateKey(pemFile: rig.issued.keyPath)
        #expect(try String(contentsOfFile: rig.issued.keyPath, encoding: .utf8) != oldKey)
        #expect(renewed.matches(newKey))
        #expect(try Certificate.loadChain(pemFile: rig.issued.certificatePath)[0] == renewed)
        let mode = try FileManager.default.attributesOfItem(atPath: rig.issued.keyPath)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        #expect(!FileManager.default.fileExists(atPath: rig.issued.keyPath + ".next"))
        #expect(!FileManager.default.fileExists(atPath: rig.issued.certificatePath + ".next"))
        #expect(try rig.servedFingerprint() == renewed.sha256Fingerprint)

        // The connection that carried the renewal still works; installing the same again is answered alike.
        let client = try await rig.fleet.client(for: "agent-1")
        let again = try await client.call(InstallCertificateRequest(certificate: try renewed.pem()), deadline: .now + .seconds(10))
        #expect(again.sha256 == renewed.sha256Fingerprint)

        // A restarted agent serves the renewed pair (its start-up check accepts it).
        try await rig.node.restartAgent()
        await rig.fleet.setEndpoints(["agent-1": AgentEndpoint(host: "127.0.0.1", port: rig.node.port)])
        #expect(try rig.servedFingerprint() == renewed.sha256Fingerprint)
        await rig.close()
    }

    @Test func aCertificateThatDoesNotFitIsRefusedAndNothingChanges() async throws {
        let rig = try await Rig()
        let client = try await rig.fleet.client(for: "agent-1")
        let deadline = ContinuousClock.now + .seconds(20)
        func refusal(_ certificate: Certificate) async throws -> String {
            do {
                _ = try await client.call(InstallCertificateRequest(certificate: try certificate.pem()), deadline: deadline)
                return "accepted"
            } catch {
                return "\(error)"
            }
        }
        let authority = try rig.pki.directory.loadCA()
        // Nothing pending yet: a certificate for another key is refused; the one installed is answered as installed.
        let otherKey = try authority.issue(identity: try PeerIdentity(role: .agent, name: "agent-1"), keyType: .ecdsaP256, validity: .days(1))
        #expect(try await refusal(otherKey.certificate).contains("no key is pending"))
        #expect(try await refusal(rig.issued.certificate) == "accepted")

        let asked = try await client.call(CertificateRequestRequest(), deadline: deadline)
        let request = try CertificateSigningRequest(pem: asked.csr)
        #expect(try request.identity() == (try PeerIdentity(role: .agent, name: "agent-1")) && asked.keyType == "ecdsa-p256")
        // Asking again answers for the same pending key.
        let askedAgain = try await client.call(CertificateRequestRequest(), deadline: deadline)
        #expect(try CertificateSigningRequest(pem: askedAgain.csr).matches(try PrivateKey(pemFile: rig.issued.keyPath + ".next")))

        // A certificate for agent-2 on the pending key (made from the node's disk: the CA signs
        // only what a request asks for, and the agent asks for itself).
        let pendingKey = try PrivateKey(pemFile: rig.issued.keyPath + ".next")
        let agent2 = try PeerIdentity(role: .agent, name: "agent-2")
        let otherNode = try authority.sign(try CertificateSigningRequest(identity: agent2, key: pendingKey), as: agent2, validity: .days(1))
        #expect(try await refusal(otherNode).contains("is for upkeep://agent/agent-2"))
        let otherCA = try CertificateAuthority.create(commonName: "upkeep cluster CA", keyType: .ecdsaP256, validity: .days(2))
        let foreign = try otherCA.sign(request, as: try PeerIdentity(role: .agent, name: "agent-1"), validity: .days(1))
        #expect(try await refusal(foreign).contains("was not issued by the CA"))
        #expect(try await refusal(otherKey.certificate).contains("does not belong to"))

        // The agent still has and serves its first pair.
        #expect(try Certificate.loadChain(pemFile: rig.issued.certificatePath)[0] == rig.issued.certificate)
        #expect(try rig.servedFingerprint() == rig.issued.certificate.sha256Fingerprint)
        await rig.close()
    }

    @Test func aRenewalCutBetweenItsRenamesIsFinishedWhenTheAgentStarts() throws {
        let directory = try TemporaryDirectory()
        let pki = try FleetPKI(in: directory.file("pki"))
        let issued = try pki.agent("agent-1")
        let authority = try pki.directory.loadCA()
        let key = try PrivateKey.generate(.ecdsaP256)
        let renewed = try authority.sign(try CertificateSigningRequest(identity: issued.identity, key: key), as: issued.identity, validity: .days(1))
        // The key was renamed into place; the certificate was not.
        chmod(try directory.write(try key.pkcs8PEM(), to: "pki/agents/agent-1.key"), 0o600)
        _ = try directory.write(try renewed.pem(), to: "pki/agents/agent-1.crt.next")
        var config = AgentConfig(nodeName: "agent-1")
        config.caFile = pki.directory.caCertificatePath
        config.certificateFile = issued.certificatePath
        config.keyFile = issued.keyPath
        #expect { try AgentServer.tlsContext(config) } throws: { "\($0)".contains("does not belong to") }
        _ = try AgentIdentity(config: config)
        #expect(try Certificate.loadChain(pemFile: issued.certificatePath)[0] == renewed)
        #expect(!FileManager.default.fileExists(atPath: issued.certificatePath + ".next"))
        #expect(throws: Never.self) { try AgentServer.tlsContext(config) }
    }
}
