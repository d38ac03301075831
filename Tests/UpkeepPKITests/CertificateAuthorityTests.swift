import Foundation
import Testing
@testable import UpkeepPKI
import UpkeepTestSupport

@Suite struct CertificateAuthorityTests {
    @Test(arguments: KeyType.allCases)
    func identityCertificateVerifiesWithOpenSSLAndCarriesTheProfile(type: KeyType) throws {
        let ca = try CertificateAuthority.create(commonName: "test CA", keyType: type, validity: .days(30))
        let identity = try PeerIdentity(role: .agent, name: "node-1")
        let issued = try ca.issue(identity: identity, keyType: type, validity: .days(7),
                                  dnsNames: ["node-1.example"], ipAddresses: ["10.0.0.7", "fd00::7"])
        let directory = try TemporaryDirectory()
        let caPath = try directory.write(ca.certificate.pem(), to: "ca.crt")
        let leafPath = try directory.write(issued.certificate.pem(), to: "agent.crt")

        let verified = try openssl(["verify", "-CAfile", caPath, leafPath])
        #expect(verified.status == 0, "\(verified.output) \(verified.error)")
        #expect(verified.output.contains("agent.crt: OK"))
        for purpose in ["sslserver", "sslclient"] {
            let check = try openssl(["verify", "-purpose", purpose, "-CAfile", caPath, leafPath])
            #expect(check.status == 0, "\(purpose): \(check.output) \(check.error)")
        }

        let text = try openssl(["x509", "-in", leafPath, "-noout", "-text"]).output
        #expect(text.contains("Version: 3 (0x2)"))
        #expect(text.contains("Subject: CN = node-1"))
        #expect(text.contains("URI:upkeep://agent/node-1"))
        #expect(text.contains("DNS:node-1.example"))
        #expect(text.contains("IP Address:10.0.0.7"))
        #expect(text.contains("TLS Web Server Authentication, TLS Web Client Authentication"))
        #expect(text.contains("X509v3 Basic Constraints: critical\n                CA:FALSE"))
        #expect(text.contains("X509v3 Key Usage: critical\n                Digital Signature"))
        #expect(text.contains("X509v3 Subject Key Identifier"))
        #expect(text.contains("X509v3 Authority Key Identifier"))
        #expect(text.contains(type == .ed25519 ? "Signature Algorithm: ED25519" : "Signature Algorithm: ecdsa-with-SHA256"))

        #expect(issued.certificate.uriSANs == ["upkeep://agent/node-1"])
        #expect(issued.certificate.dnsSANs == ["node-1.example"])
        #expect(issued.certificate.ipSANs == ["10.0.0.7", "fd00::7"])
        #expect(issued.certificate.subject == "CN=node-1")
        #expect(issued.certificate.issuer == "CN=test CA")
        #expect(!issued.certificate.isCA)
        #expect(issued.certificate.matches(issued.key))
        #expect(!issued.certificate.matches(ca.key))
        #expect(issued.certificate.isSigned(by: ca.certificate))
        #expect(try PeerIdentity.from(issued.certificate) == identity)
    }

    @Test func caCertificateIsAConstrainedCA() throws {
        let ca = try CertificateAuthority.create(commonName: "constrained CA", keyType: .ecdsaP256, validity: .days(30))
        #expect(ca.certificate.isCA)
        #expect(ca.certificate.subject == ca.certificate.issuer)
        #expect(ca.certificate.uriSANs.isEmpty)
        let directory = try TemporaryDirectory()
        let path = try directory.write(ca.certificate.pem(), to: "ca.crt")
        let text = try openssl(["x509", "-in", path, "-noout", "-text"]).output
        #expect(text.contains("X509v3 Basic Constraints: critical\n                CA:TRUE, pathlen:0"))
        #expect(text.contains("X509v3 Key Usage: critical\n                Certificate Sign, CRL Sign"))
        let selfVerified = try openssl(["verify", "-CAfile", path, path])
        #expect(selfVerified.status == 0, "\(selfVerified.error)")
    }

    @Test func certificateFromAnotherCAFailsOpenSSLVerification() throws {
        let ours = try CertificateAuthority.create(commonName: "ours", keyType: .ecdsaP256, validity: .days(30))
        let theirs = try CertificateAuthority.create(commonName: "ours", keyType: .ecdsaP256, validity: .days(30))
        let issued = try theirs.issue(identity: PeerIdentity(role: .controller, name: "controller"),
                                      keyType: .ecdsaP256, validity: .days(1))
        let directory = try TemporaryDirectory()
        let caPath = try directory.write(ours.certificate.pem(), to: "ca.crt")
        let leafPath = try directory.write(issued.certificate.pem(), to: "leaf.crt")
        #expect(try openssl(["verify", "-CAfile", caPath, leafPath]).status != 0)
        #expect(!issued.certificate.isSigned(by: ours.certificate))
    }

    @Test func validityIsExactlyWhatWasAskedForIncludingExpiredAndNotYetValid() throws {
        let now = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
        let ca = try CertificateAuthority.create(commonName: "clock CA", keyType: .ed25519,
                                                 validity: .days(30, from: now.addingTimeInterval(-20 * 86_400)))
        let identity = try PeerIdentity(role: .agent, name: "node-2")
        let expired = ValidityPeriod(notBefore: now.addingTimeInterval(-10 * 86_400), notAfter: now.addingTimeInterval(-86_400))
        let future = ValidityPeriod.days(2, from: now.addingTimeInterval(86_400))
        let directory = try TemporaryDirectory()
        let caPath = try directory.write(ca.certificate.pem(), to: "ca.crt")
        for (validity, complaint) in [(expired, "certificate has expired"), (future, "certificate is not yet valid")] {
            let issued = try ca.issue(identity: identity, keyType: .ed25519, validity: validity)
            #expect(issued.certificate.notBefore == validity.notBefore)
            #expect(issued.certificate.notAfter == validity.notAfter)
            let path = try directory.write(issued.certificate.pem(), to: "leaf.crt")
            let result = try openssl(["verify", "-CAfile", caPath, path])
            #expect(result.status != 0)
            #expect((result.output + result.error).contains(complaint))
        }
    }

    @Test func fractionalSecondsAreDroppedAndInvertedValidityIsRefused() throws {
        let start = Date(timeIntervalSince1970: 1_800_000_000.75)
        let ca = try CertificateAuthority.create(commonName: "CA", keyType: .ed25519, validity: .days(1, from: start))
        #expect(ca.certificate.notBefore == Date(timeIntervalSince1970: 1_800_000_000))
        let inverted = ValidityPeriod(notBefore: start, notAfter: start.addingTimeInterval(-1))
        #expect(throws: PKIError.invalidValidity(notBefore: inverted.notBefore, notAfter: inverted.notAfter)) {
            try ca.issue(identity: PeerIdentity(role: .agent, name: "n"), keyType: .ed25519, validity: inverted)
        }
    }

    @Test func serialsAreRandomPositiveAndAbout128Bits() throws {
        let ca = try CertificateAuthority.create(commonName: "serial CA", keyType: .ed25519, validity: .days(1))
        let identity = try PeerIdentity(role: .agent, name: "node-3")
        let serials = try (0..<8).map { _ in
            try ca.issue(identity: identity, keyType: .ed25519, validity: .days(1)).certificate.serialHex
        }
        #expect(Set(serials).count == serials.count)
        #expect(serials.allSatisfy { $0.count <= 32 && !$0.hasPrefix("-") })
        #expect(serials.contains { $0.count >= 30 })
    }

    @Test func serverCertificateHasNoIdentityAndPassesOpenSSLHostCheck() throws {
        let ca = try CertificateAuthority.create(commonName: "k8s CA", keyType: .ecdsaP256, validity: .days(30))
        let server = try ca.issueServer(commonName: "kube-apiserver", dnsNames: ["localhost", "kubernetes.default"],
                                        ipAddresses: ["127.0.0.1"], keyType: .ecdsaP256, validity: .days(1))
        #expect(throws: PeerIdentityError.noIdentityURI(subject: "CN=kube-apiserver")) {
            try PeerIdentity.from(server.certificate)
        }
        let directory = try TemporaryDirectory()
        let caPath = try directory.write(ca.certificate.pem(), to: "ca.crt")
        let path = try directory.write(server.certificate.pem(), to: "server.crt")
        #expect(try openssl(["verify", "-purpose", "sslserver", "-verify_hostname", "localhost", "-CAfile", caPath, path]).status == 0)
        #expect(try openssl(["verify", "-verify_ip", "127.0.0.1", "-CAfile", caPath, path]).status == 0)
        #expect(try openssl(["verify", "-verify_hostname", "example.com", "-CAfile", caPath, path]).status != 0)
        #expect(try openssl(["verify", "-purpose", "sslclient", "-CAfile", caPath, path]).status != 0)
    }

    @Test func clientCertificateCarriesUserAndGroupTheKubernetesWay() throws {
        let ca = try CertificateAuthority.create(commonName: "k8s client CA", keyType: .ecdsaP256, validity: .days(30))
        let client = try ca.issueClient(commonName: "system:admin", organization: "system:masters",
                                        keyType: .ecdsaP256, validity: .days(1))
        #expect(client.certificate.subjectCommonNames == ["system:admin"])
        #expect(client.certificate.subjectOrganizations == ["system:masters"])
        #expect(client.certificate.subject == "CN=system:admin,O=system:masters")
        let directory = try TemporaryDirectory()
        let caPath = try directory.write(ca.certificate.pem(), to: "ca.crt")
        let path = try directory.write(client.certificate.pem(), to: "client.crt")
        #expect(try openssl(["verify", "-purpose", "sslclient", "-CAfile", caPath, path]).status == 0)
        #expect(try openssl(["verify", "-purpose", "sslserver", "-CAfile", caPath, path]).status != 0)
    }

    @Test func badSubjectAlternativeNamesAreRefused() throws {
        let ca = try CertificateAuthority.create(commonName: "CA", keyType: .ed25519, validity: .days(1))
        #expect(throws: PKIError.invalidDNSName("a,URI:upkeep://controller/x")) {
            try ca.issueServer(commonName: "s", dnsNames: ["a,URI:upkeep://controller/x"], keyType: .ed25519, validity: .days(1))
        }
        #expect(throws: PKIError.invalidIPAddress("10.0.0.256")) {
            try ca.issueServer(commonName: "s", ipAddresses: ["10.0.0.256"], keyType: .ed25519, validity: .days(1))
        }
        #expect(throws: PKIError.invalidSubjectField(field: "common name", value: "")) {
            try ca.issueServer(commonName: "", keyType: .ed25519, validity: .days(1))
        }
        #expect(CertificateBuilder.isValidDNSName("*.svc.cluster.local"))
        #expect(!CertificateBuilder.isValidDNSName("-bad.example"))
    }

    @Test func pairingAKeyWithTheWrongCertificateIsRefused() throws {
        let ca = try CertificateAuthority.create(commonName: "CA", keyType: .ecdsaP256, validity: .days(1))
        let other = try PrivateKey.generate(.ecdsaP256)
        #expect(throws: PKIError.keyDoesNotMatchCertificate(certificate: "CN=CA")) {
            try CertificateAuthority(certificate: ca.certificate, key: other)
        }
        let leaf = try ca.issue(identity: PeerIdentity(role: .agent, name: "n"), keyType: .ecdsaP256, validity: .days(1))
        #expect(throws: PKIError.notACertificateAuthority(subject: "CN=n")) {
            try CertificateAuthority(certificate: leaf.certificate, key: leaf.key)
        }
    }
}
