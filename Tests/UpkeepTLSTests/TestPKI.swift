import Foundation
import UpkeepPKI
import UpkeepTLS

/// A throwaway cluster CA for one test, issuing whatever certificates the test needs.
struct TestPKI {
    let ca: CertificateAuthority

    init(name: String = "upkeep-test-ca", keyType: KeyType = .ecdsaP256) throws {
        ca = try CertificateAuthority.create(commonName: name, keyType: keyType, validity: Self.days(30))
    }

    /// `n` days from a minute ago, as PKIDirectory issues: a certificate starting this very second
    /// is "not yet valid" to OpenSSL when its coarse clock (`time()`) still reads the second
    /// before the one `Date()` rounded down to (seen once in a full `make test`).
    static func days(_ n: Int) -> ValidityPeriod { .days(n).startingEarlier(bySeconds: 60) }

    static let hour: TimeInterval = 3600

    static var expired: ValidityPeriod {
        ValidityPeriod(notBefore: Date(timeIntervalSinceNow: -48 * hour), notAfter: Date(timeIntervalSinceNow: -hour))
    }

    static var notYetValid: ValidityPeriod {
        ValidityPeriod(notBefore: Date(timeIntervalSinceNow: 24 * hour), notAfter: Date(timeIntervalSinceNow: 48 * hour))
    }

    func identity(_ role: PeerRole, _ name: String, validity: ValidityPeriod = TestPKI.days(1), keyType: KeyType = .ecdsaP256)
        throws -> (certificate: Certificate, key: PrivateKey) {
        try ca.issue(identity: PeerIdentity(role: role, name: name), keyType: keyType, validity: validity)
    }

    /// An internal-mode context for `role`/`name`, trusting this CA only.
    func context(_ role: PeerRole, _ name: String, validity: ValidityPeriod = TestPKI.days(1), keyType: KeyType = .ecdsaP256) throws -> TLSContext {
        let issued = try identity(role, name, validity: validity, keyType: keyType)
        return try TLSContext.internal(ca: [ca.certificate], chain: [issued.certificate], key: issued.key)
    }

    /// Writes the CA and an identity as PEM files for the `openssl` command; returns their paths.
    func writeFiles(_ issued: (certificate: Certificate, key: PrivateKey), in directory: URL, name: String) throws
        -> (ca: String, certificate: String, key: String) {
        let caPath = directory.appendingPathComponent("ca.crt").path
        let certificatePath = directory.appendingPathComponent("\(name).crt").path
        let keyPath = directory.appendingPathComponent("\(name).key").path
        try ca.certificate.pem().write(toFile: caPath, atomically: true, encoding: .utf8)
        try issued.certificate.pem().write(toFile: certificatePath, atomically: true, encoding: .utf8)
        try issued.key.pkcs8PEM().write(toFile: keyPath, atomically: true, encoding: .utf8)
        return (caPath, certificatePath, keyPath)
    }
}

func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("upkeep-tls-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}
