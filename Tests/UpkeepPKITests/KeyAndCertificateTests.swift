import Foundation
import Testing
@testable import UpkeepPKI
import UpkeepTestSupport

@Suite struct KeyAndCertificateTests {
    @Test(arguments: KeyType.allCases)
    func generatedKeyRoundTripsThroughPKCS8PEM(type: KeyType) throws {
        let key = try PrivateKey.generate(type)
        let pem = try key.pkcs8PEM()
        #expect(pem.hasPrefix("-----BEGIN PRIVATE KEY-----\n"))
        let reread = try PrivateKey(pem: pem)
        #expect(try reread.pkcs8PEM() == pem)
        #expect(reread.keyType == type)
    }

    @Test(arguments: KeyType.allCases)
    func opensslReadsTheKeyAsTheRequestedAlgorithm(type: KeyType) throws {
        let directory = try TemporaryDirectory()
        let path = try directory.write(PrivateKey.generate(type).pkcs8PEM(), to: "key.pem")
        let result = try openssl(["pkey", "-in", path, "-noout", "-text"])
        #expect(result.status == 0, "\(result.error)")
        #expect(result.output.contains(type == .ed25519 ? "ED25519 Private-Key" : "ASN1 OID: prime256v1"))
    }

    @Test func keyMadeByOpenSSLIsReadAndReportsItsType() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("ec.pem")
        let made = try openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path])
        #expect(made.status == 0, "\(made.error)")
        #expect(try PrivateKey(pemFile: path).keyType == .ecdsaP256)
    }

    @Test func certificateRoundTripsThroughPEMAndDER() throws {
        let ca = try CertificateAuthority.create(commonName: "round trip CA", keyType: .ecdsaP256, validity: .days(1))
        let pem = try ca.certificate.pem()
        #expect(pem.hasPrefix("-----BEGIN CERTIFICATE-----\n"))
        let reread = try Certificate(pem: pem)
        #expect(reread == ca.certificate)
        #expect(try reread.pem() == pem)
        #expect(try Certificate(der: reread.derBytes) == ca.certificate)
        #expect(Certificate(retaining: reread.pointer) == reread)
    }

    @Test func chainFileIsReadInOrderAndFirstCertificateWinsForSinglePEM() throws {
        let ca = try CertificateAuthority.create(commonName: "chain CA", keyType: .ed25519, validity: .days(1))
        let leaf = try ca.issue(identity: PeerIdentity(role: .agent, name: "node-1"), keyType: .ed25519, validity: .days(1))
        let directory = try TemporaryDirectory()
        let path = try directory.write(leaf.certificate.pem() + ca.certificate.pem(), to: "chain.pem")
        #expect(try Certificate.loadChain(pemFile: path) == [leaf.certificate, ca.certificate])
        #expect(try Certificate(pem: String(contentsOfFile: path, encoding: .utf8)) == leaf.certificate)
    }

    @Test func missingOrEmptyFilesGiveTypedErrors() throws {
        let directory = try TemporaryDirectory()
        let missing = directory.file("absent.pem")
        #expect(throws: PKIError.fileUnreadable(path: missing, reason: "no such file")) {
            try Certificate.loadChain(pemFile: missing)
        }
        let keyOnly = try directory.write(PrivateKey.generate(.ed25519).pkcs8PEM(), to: "key.pem")
        #expect(throws: PKIError.noCertificate(source: keyOnly)) { try Certificate.loadChain(pemFile: keyOnly) }
        #expect(throws: PKIError.noPrivateKey(source: "PEM text")) { try PrivateKey(pem: "not a key") }
        #expect(throws: PKIError.fileUnreadable(path: directory.path, reason: "is a directory, not a file")) {
            try Certificate.loadChain(pemFile: directory.path)
        }
        let binary = directory.file("binary.pem")
        #expect(FileManager.default.createFile(atPath: binary, contents: Data([0x2d, 0xff, 0xfe, 0x00, 0xc3])))
        #expect(throws: PKIError.fileUnreadable(path: binary, reason: "not a readable UTF-8 text file")) {
            try PrivateKey(pemFile: binary)
        }
    }

    /// The end of a chain is told from damage by OpenSSL's error code (PEM "no start line"), not
    /// its text: a good certificate followed by a damaged one is an error, never a shorter chain.
    @Test func damagedCertificateAfterAGoodOneIsAnError() throws {
        let ca = try CertificateAuthority.create(commonName: "chain CA", keyType: .ecdsaP256, validity: .days(1))
        let good = try ca.certificate.pem()
        #expect(try Certificate.loadChain(pem: good + good).count == 2)
        #expect(throws: OpenSSLError.self) {
            try Certificate.loadChain(pem: good + "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        }
    }

    @Test func encryptedKeyIsRefusedWithoutPrompting() throws {
        let directory = try TemporaryDirectory()
        let plain = try directory.write(PrivateKey.generate(.ecdsaP256).pkcs8PEM(), to: "plain.pem")
        let encrypted = directory.file("encrypted.pem")
        let made = try openssl(["pkey", "-in", plain, "-out", encrypted, "-aes256", "-passout", "pass:secret"])
        #expect(made.status == 0, "\(made.error)")
        #expect(throws: PKIError.noPrivateKey(source: encrypted)) { try PrivateKey(pemFile: encrypted) }
    }

    @Test func fingerprintAndSerialMatchOpenSSL() throws {
        let ca = try CertificateAuthority.create(commonName: "fingerprint CA", keyType: .ecdsaP256, validity: .days(1))
        let directory = try TemporaryDirectory()
        let path = try directory.write(ca.certificate.pem(), to: "ca.crt")
        let result = try openssl(["x509", "-in", path, "-noout", "-fingerprint", "-sha256", "-serial"])
        #expect(result.status == 0, "\(result.error)")
        #expect(result.output.contains("=\(ca.certificate.sha256Fingerprint)\n"))
        #expect(result.output.contains("serial=\(ca.certificate.serialHex)\n"))
    }

    @Test func failedParseLeavesNoStaleOpenSSLErrors() throws {
        #expect(throws: PKIError.noCertificate(source: "DER bytes")) { try Certificate(der: [0x30, 0x03, 0x02, 0x01]) }
        #expect(throws: OpenSSLError.self) { try Certificate(pem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n") }
        let error = OpenSSLError.capture("nothing")
        #expect(error.errors.isEmpty)
        #expect(error.description == "OpenSSL: nothing failed")
    }
}
