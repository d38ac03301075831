import Foundation
import Testing
@testable import UpkeepPKI
import UpkeepTestSupport

@Suite struct PeerIdentityTests {
    @Test(arguments: ["node-1", "a", "0", "ip-10-0-0-1.eu-west-1.compute.internal", String(repeating: "a", count: 253)])
    func acceptsKubernetesNodeNames(name: String) throws {
        let identity = try PeerIdentity(role: .agent, name: name)
        #expect(identity.uri == "upkeep://agent/\(name)")
        #expect(PeerIdentity(uri: identity.uri) == identity)
    }

    @Test(arguments: ["", "Node-1", "node_1", "-node", "node-", "a..b", ".a", "a.", "node/1", "../ca", "nøde",
                      "a b", String(repeating: "a", count: 254)])
    func refusesNamesThatAreNotDNS1123Subdomains(name: String) {
        #expect {
            try PeerIdentity(role: .controller, name: name)
        } throws: { error in
            guard case let .invalidName(refused, _) = error as? PeerIdentityError else { return false }
            return refused == name
        }
    }

    @Test(arguments: ["upkeep://agent/", "upkeep://agent", "upkeep://admin/x", "upkeep://agent/x/y", "upkeep://agent/x?y",
                      "UPKEEP://agent/x", "upkeep:agent/x", "https://agent/x", "upkeep://agent/X", " upkeep://agent/x",
                      "upkeep://agent:1/x", ""])
    func refusesMalformedURIs(uri: String) {
        #expect(PeerIdentity(uri: uri) == nil)
    }

    @Test func parsesBothRoles() throws {
        #expect(PeerIdentity(uri: "upkeep://controller/controller") == (try PeerIdentity(role: .controller, name: "controller")))
        #expect(PeerIdentity(uri: "upkeep://agent/node-7")?.role == .agent)
        #expect(try PeerIdentity(role: .agent, name: "n").description == "upkeep://agent/n")
    }

    @Test func decodingValidatesTheName() throws {
        let good = try JSONEncoder().encode(PeerIdentity(role: .agent, name: "node-1"))
        #expect(try JSONDecoder().decode(PeerIdentity.self, from: good) == (try PeerIdentity(role: .agent, name: "node-1")))
        let bad = Data(#"{"role":"agent","name":"../../etc"}"#.utf8)
        #expect(throws: PeerIdentityError.self) { try JSONDecoder().decode(PeerIdentity.self, from: bad) }
    }

    /// Certificates the CA would never issue, made by the real `openssl` signing with our CA.
    private func certificateSignedByOpenSSL(subjectAltName: String) throws -> Certificate {
        let ca = try CertificateAuthority.create(commonName: "CA", keyType: .ecdsaP256, validity: .days(1))
        let directory = try TemporaryDirectory()
        let caPath = try directory.write(ca.certificate.pem(), to: "ca.crt")
        let caKeyPath = try directory.write(ca.key.pkcs8PEM(), to: "ca.key")
        let keyPath = try directory.write(PrivateKey.generate(.ecdsaP256).pkcs8PEM(), to: "leaf.key")
        let extensions = try directory.write("subjectAltName=\(subjectAltName)\n", to: "ext.cnf")
        let request = directory.file("leaf.csr")
        let certificatePath = directory.file("leaf.crt")
        let made = try openssl(["req", "-new", "-key", keyPath, "-subj", "/CN=node-1", "-out", request])
        #expect(made.status == 0, "\(made.error)")
        let signed = try openssl(["x509", "-req", "-in", request, "-CA", caPath, "-CAkey", caKeyPath, "-set_serial", "7",
                                  "-days", "1", "-extfile", extensions, "-out", certificatePath])
        #expect(signed.status == 0, "\(signed.error)")
        return try Certificate.loadChain(pemFile: certificatePath)[0]
    }

    @Test func certificateWithTwoIdentityURIsIsRefused() throws {
        let certificate = try certificateSignedByOpenSSL(subjectAltName: "URI:upkeep://agent/node-1,URI:upkeep://controller/controller")
        #expect(throws: PeerIdentityError.multipleIdentityURIs(["upkeep://agent/node-1", "upkeep://controller/controller"])) {
            try PeerIdentity.from(certificate)
        }
    }

    @Test func certificateWithNoIdentityURIIsRefused() throws {
        let certificate = try certificateSignedByOpenSSL(subjectAltName: "DNS:node-1,URI:https://node-1/")
        #expect(throws: PeerIdentityError.noIdentityURI(subject: "CN=node-1")) { try PeerIdentity.from(certificate) }
    }

    @Test func certificateWithAMalformedIdentityURIIsRefused() throws {
        let certificate = try certificateSignedByOpenSSL(subjectAltName: "URI:Upkeep://agent/Node_1")
        #expect(throws: PeerIdentityError.malformedIdentityURI("Upkeep://agent/Node_1")) { try PeerIdentity.from(certificate) }
    }

    @Test func identityCertificateMadeByOpenSSLIsRead() throws {
        let certificate = try certificateSignedByOpenSSL(subjectAltName: "DNS:node-1,URI:upkeep://agent/node-1")
        #expect(try PeerIdentity.from(certificate) == (try PeerIdentity(role: .agent, name: "node-1")))
    }
}
