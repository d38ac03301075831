import COpenSSL
import Foundation
import Testing
@testable import UpkeepPKI
import UpkeepTestSupport

@Suite struct CertificateSigningRequestTests {
    @Test(arguments: KeyType.allCases)
    func opensslVerifiesOurRequestAndReadsItsIdentity(type: KeyType) throws {
        let key = try PrivateKey.generate(type)
        let identity = try PeerIdentity(role: .agent, name: "node-1")
        let request = try CertificateSigningRequest(identity: identity, key: key)
        let directory = try TemporaryDirectory()
        let path = try directory.write(request.pem(), to: "node-1.csr")

        let verified = try openssl(["req", "-in", path, "-verify", "-noout", "-text"])
        #expect(verified.status == 0, "\(verified.output) \(verified.error)")
        #expect((verified.output + verified.error).contains("self-signature verify OK"))
        #expect(verified.output.contains("Subject: CN = node-1"))
        #expect(verified.output.contains("URI:upkeep://agent/node-1"))
        #expect(request.hasValidSignature)
        #expect(request.keyType == type)
        #expect(request.matches(key))
        #expect(!request.matches(try PrivateKey.generate(type)))
        #expect(try request.identity() == identity)
        #expect(try CertificateSigningRequest(pem: request.pem()).identity() == identity)
    }

    @Test(arguments: KeyType.allCases)
    func signedRequestVerifiesWithOpenSSLAndMatchesTheNodesKey(type: KeyType) throws {
        let ca = try CertificateAuthority.create(commonName: "test CA", keyType: .ecdsaP256, validity: .days(30))
        let key = try PrivateKey.generate(type)
        let identity = try PeerIdentity(role: .agent, name: "node-2")
        let certificate = try ca.sign(CertificateSigningRequest(identity: identity, key: key), as: identity, validity: .days(7))
        let directory = try TemporaryDirectory()
        let caPath = try directory.write(ca.certificate.pem(), to: "ca.crt")
        let leafPath = try directory.write(certificate.pem(), to: "node-2.crt")

        for purpose in ["sslserver", "sslclient"] {
            let check = try openssl(["verify", "-purpose", purpose, "-CAfile", caPath, leafPath])
            #expect(check.status == 0, "\(purpose): \(check.output) \(check.error)")
        }
        let text = try openssl(["x509", "-in", leafPath, "-noout", "-text"]).output
        #expect(text.contains("Subject: CN = node-2"))
        #expect(text.contains("X509v3 Basic Constraints: critical\n                CA:FALSE"))
        #expect(text.contains("TLS Web Server Authentication, TLS Web Client Authentication"))
        #expect(certificate.uriSANs == ["upkeep://agent/node-2"])
        #expect(certificate.matches(key))
        #expect(try PeerIdentity.from(certificate) == identity)
    }

    @Test func requestMadeByOpenSSLIsSignedAndItsExtraNamesAreDropped() throws {
        let directory = try TemporaryDirectory()
        let keyPath = directory.file("node.key"), requestPath = directory.file("node.csr")
        let made = try openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                                "-keyout", keyPath, "-out", requestPath, "-subj", "/CN=node-3",
                                "-addext", "subjectAltName=URI:upkeep://agent/node-3,DNS:evil.example",
                                "-addext", "basicConstraints=critical,CA:TRUE"])
        #expect(made.status == 0, "\(made.error)")
        let request = try CertificateSigningRequest(pem: String(contentsOfFile: requestPath, encoding: .utf8))
        let ca = try CertificateAuthority.create(commonName: "test CA", keyType: .ecdsaP256, validity: .days(30))
        let identity = try PeerIdentity(role: .agent, name: "node-3")
        let certificate = try ca.sign(request, as: identity, validity: .days(7))
        #expect(certificate.matches(try PrivateKey(pemFile: keyPath)))
        #expect(certificate.subjectAlternativeNames == [.uri("upkeep://agent/node-3")])
        #expect(!certificate.isCA)
    }

    @Test func requestForAnotherIdentityIsRefused() throws {
        let ca = try CertificateAuthority.create(commonName: "test CA", keyType: .ecdsaP256, validity: .days(30))
        let key = try PrivateKey.generate(.ecdsaP256)
        let asked = try PeerIdentity(role: .agent, name: "node-1")
        let allowed = try PeerIdentity(role: .agent, name: "node-2")
        let request = try CertificateSigningRequest(identity: asked, key: key)
        #expect(throws: CertificateRequestError.identityNotAllowed(requested: asked, allowed: allowed)) {
            try ca.sign(request, as: allowed, validity: .days(7))
        }
        let controller = try PeerIdentity(role: .controller, name: "node-1")
        #expect(throws: CertificateRequestError.identityNotAllowed(requested: asked, allowed: controller)) {
            try ca.sign(request, as: controller, validity: .days(7))
        }
    }

    @Test func tamperedRequestIsRefusedForItsSignature() throws {
        let directory = try TemporaryDirectory()
        let keyPath = directory.file("node.key"), otherPath = directory.file("other.key")
        let requestPath = directory.file("node.csr"), tamperedPath = directory.file("tampered.csr")
        for path in [keyPath, otherPath] {
            #expect(try openssl(["genpkey", "-algorithm", "ED25519", "-out", path]).status == 0)
        }
        #expect(try openssl(["req", "-new", "-key", keyPath, "-out", requestPath, "-subj", "/CN=node-4",
                             "-addext", "subjectAltName=URI:upkeep://agent/node-4"]).status == 0)
        // The request's public key swapped for another one: the signature no longer fits.
        let request = try CertificateSigningRequest(pem: String(contentsOfFile: requestPath, encoding: .utf8))
        let other = try PrivateKey(pemFile: otherPath)
        #expect(X509_REQ_set_pubkey(request.pointer, other.pointer) == 1)
        try request.pem().write(toFile: tamperedPath, atomically: false, encoding: .utf8)
        // OpenSSL 3.0's `req -verify` exits 0 either way; its verdict is the line it prints.
        let verdict = try openssl(["req", "-in", tamperedPath, "-verify", "-noout"])
        #expect((verdict.output + verdict.error).contains("verify failure"), "\(verdict.output) \(verdict.error)")
        #expect(!request.hasValidSignature)
        let ca = try CertificateAuthority.create(commonName: "test CA", keyType: .ecdsaP256, validity: .days(30))
        #expect(throws: CertificateRequestError.badSignature) {
            try ca.sign(request, as: PeerIdentity(role: .agent, name: "node-4"), validity: .days(7))
        }
    }

    @Test func rsaRequestAndGarbageAreRefused() throws {
        let directory = try TemporaryDirectory()
        let requestPath = directory.file("rsa.csr")
        #expect(try openssl(["req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", directory.file("rsa.key"),
                             "-out", requestPath, "-subj", "/CN=node-5", "-addext", "subjectAltName=URI:upkeep://agent/node-5"]).status == 0)
        let request = try CertificateSigningRequest(pem: String(contentsOfFile: requestPath, encoding: .utf8))
        let ca = try CertificateAuthority.create(commonName: "test CA", keyType: .ecdsaP256, validity: .days(30))
        #expect(throws: CertificateRequestError.unsupportedKeyType) {
            try ca.sign(request, as: PeerIdentity(role: .agent, name: "node-5"), validity: .days(7))
        }
        #expect(throws: CertificateRequestError.malformed) { try CertificateSigningRequest(pem: "not a request") }
        #expect(throws: CertificateRequestError.malformed) {
            try CertificateSigningRequest(pem: String(repeating: "A", count: CertificateSigningRequest.pemBytesMax + 1))
        }
    }

    @Test func requestWithoutAnIdentityURIIsRefused() throws {
        let directory = try TemporaryDirectory()
        let requestPath = directory.file("plain.csr")
        #expect(try openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                             "-keyout", directory.file("plain.key"), "-out", requestPath, "-subj", "/CN=node-6"]).status == 0)
        let request = try CertificateSigningRequest(pem: String(contentsOfFile: requestPath, encoding: .utf8))
        #expect(throws: PeerIdentityError.noIdentityURI(subject: "CN=node-6")) { try request.identity() }
    }

    @Test func caHashIsTheSubjectPublicKeyInfoDigestOpenSSLComputes() throws {
        let ca = try CertificateAuthority.create(commonName: "test CA", keyType: .ecdsaP256, validity: .days(30))
        let directory = try TemporaryDirectory()
        let caPath = try directory.write(ca.certificate.pem(), to: "ca.crt")
        let publicKeyPath = directory.file("ca.pub.der")
        let publicKeyPEM = try openssl(["x509", "-in", caPath, "-pubkey", "-noout"]).output
        let pemPath = try directory.write(publicKeyPEM, to: "ca.pub.pem")
        #expect(try openssl(["pkey", "-pubin", "-in", pemPath, "-outform", "der", "-out", publicKeyPath]).status == 0)
        let digest = try openssl(["dgst", "-sha256", "-r", publicKeyPath]).output.split(separator: " ").first.map(String.init)
        let hash = CAHash(of: ca.certificate)
        #expect(hash.hex == digest)
        #expect(hash.description == "sha256:\(digest ?? "")")
        #expect(try CAHash(parsing: hash.description) == hash)
        #expect(try CAHash(parsing: hash.description.uppercased().replacingOccurrences(of: "SHA256:", with: "sha256:")) == hash)
        #expect(hash.matches(ca.certificate))
        let other = try CertificateAuthority.create(commonName: "test CA", keyType: .ecdsaP256, validity: .days(30))
        #expect(!hash.matches(other.certificate))
        for bad in ["", "sha256:", "sha256:abc", "md5:\(hash.hex)", hash.hex, "sha256:\(hash.hex)00"] {
            #expect(throws: CAHashError.malformed(bad)) { try CAHash(parsing: bad) }
        }
    }
}
