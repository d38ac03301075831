import Foundation
import Testing
@testable import UpkeepPKI
import UpkeepTestSupport

@Suite struct PKIDirectoryTests {
    private func mode(_ path: String) -> Int? {
        (try? FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
    }

    @Test(arguments: KeyType.allCases)
    func initAndIssueWriteTheLayoutWithPrivateModes(type: KeyType) throws {
        let temporary = try TemporaryDirectory()
        let pki = PKIDirectory(path: temporary.file("cluster/pki"))
        try pki.initialize(keyType: type, validity: PKIDirectory.validity(days: 30))
        let agent = try pki.issue(PeerIdentity(role: .agent, name: "node-1"), validity: PKIDirectory.validity(days: 7))
        let controller = try pki.issue(PeerIdentity(role: .controller, name: PKIDirectory.defaultControllerName),
                                       validity: PKIDirectory.validity(days: 7), dnsNames: ["upkeep.local"])

        #expect(agent.keyPath == temporary.file("cluster/pki/agents/node-1.key"))
        #expect(controller.certificatePath == temporary.file("cluster/pki/controllers/controller.crt"))
        #expect(mode(pki.path) == 0o700)
        #expect(mode(pki.directory(for: .agent)) == 0o700)
        #expect(mode(pki.directory(for: .controller)) == 0o700)
        for key in [pki.caKeyPath, agent.keyPath, controller.keyPath] { #expect(mode(key) == 0o600, "\(key)") }
        for certificate in [pki.caCertificatePath, agent.certificatePath, controller.certificatePath] {
            #expect(mode(certificate) == 0o644, "\(certificate)")
        }
        let leftovers = try FileManager.default.subpathsOfDirectory(atPath: pki.path).filter { $0.contains(".tmp-") }
        #expect(leftovers.isEmpty)

        let loaded = try pki.loadIdentity(agent.identity)
        #expect(loaded.certificate == agent.certificate)
        #expect(loaded.key.keyType == type)
        #expect(try PeerIdentity.from(loaded.certificate) == agent.identity)
        let verified = try openssl(["verify", "-CAfile", pki.caCertificatePath, agent.certificatePath, controller.certificatePath])
        #expect(verified.status == 0, "\(verified.output) \(verified.error)")
        #expect(try openssl(["pkey", "-in", agent.keyPath, "-noout"]).status == 0)
    }

    @Test func keysAre0600EvenUnderAPermissiveUmask() throws {
        let temporary = try TemporaryDirectory()
        let previous = umask(0)
        defer { umask(previous) }
        let pki = PKIDirectory(path: temporary.file("pki"))
        try pki.initialize(validity: PKIDirectory.validity(days: 2))
        #expect(mode(pki.caKeyPath) == 0o600)
        #expect(mode(pki.caCertificatePath) == 0o644)
    }

    @Test func nothingIsOverwrittenWithoutForce() throws {
        let temporary = try TemporaryDirectory()
        let pki = PKIDirectory(path: temporary.file("pki"))
        try pki.initialize(validity: PKIDirectory.validity(days: 30))
        let caKey = try String(contentsOfFile: pki.caKeyPath, encoding: .utf8)
        #expect(throws: PKIDirectoryError.caExists(directory: pki.path, file: "ca.key")) {
            try pki.initialize(validity: PKIDirectory.validity(days: 30))
        }
        #expect(try String(contentsOfFile: pki.caKeyPath, encoding: .utf8) == caKey)
        #expect(PKIDirectoryError.caExists(directory: "/d", file: "ca.key").description
            == "ca.key already exists in /d; pass --force to replace it (every issued certificate would then need reissuing)")

        let node = try PeerIdentity(role: .agent, name: "node-1")
        let first = try pki.issue(node, validity: PKIDirectory.validity(days: 2))
        #expect(throws: PKIDirectoryError.identityExists(directory: pki.path, file: "agents/node-1.key", identity: node)) {
            try pki.issue(node, validity: PKIDirectory.validity(days: 2))
        }
        #expect(try pki.loadIdentity(node).certificate == first.certificate)

        // Only the certificate exists: still refused, and the key is not created either.
        try FileManager.default.removeItem(atPath: first.keyPath)
        #expect(throws: PKIDirectoryError.identityExists(directory: pki.path, file: "agents/node-1.crt", identity: node)) {
            try pki.issue(node, validity: PKIDirectory.validity(days: 2))
        }
        #expect(!FileManager.default.fileExists(atPath: first.keyPath))
    }

    @Test func forceReplacesAtomicallyAndKeepsModes() throws {
        let temporary = try TemporaryDirectory()
        let pki = PKIDirectory(path: temporary.file("pki"))
        let oldCA = try pki.initialize(validity: PKIDirectory.validity(days: 30))
        let newCA = try pki.initialize(keyType: .ed25519, validity: PKIDirectory.validity(days: 30), force: true)
        #expect(oldCA.certificate != newCA.certificate)
        #expect(try pki.loadCA().certificate == newCA.certificate)
        #expect(mode(pki.caKeyPath) == 0o600)

        let node = try PeerIdentity(role: .agent, name: "node-1")
        let first = try pki.issue(node, validity: PKIDirectory.validity(days: 2))
        let second = try pki.issue(node, validity: PKIDirectory.validity(days: 2), force: true)
        #expect(first.certificate != second.certificate)
        #expect(try pki.loadIdentity(node).certificate == second.certificate)
        #expect(second.key.keyType == .ed25519)
        #expect(mode(second.keyPath) == 0o600)
    }

    @Test func caKeyReadableByOthersIsRefused() throws {
        let temporary = try TemporaryDirectory()
        let pki = PKIDirectory(path: temporary.file("pki"))
        try pki.initialize(validity: PKIDirectory.validity(days: 30))
        chmod(pki.caKeyPath, 0o640)
        #expect(throws: PKIDirectoryError.caKeyTooOpen(path: pki.caKeyPath, mode: 0o640)) {
            try pki.issue(PeerIdentity(role: .agent, name: "node-1"), validity: PKIDirectory.validity(days: 2))
        }
        #expect(!FileManager.default.fileExists(atPath: pki.directory(for: .agent)))
        chmod(pki.caKeyPath, 0o600)
        #expect(try pki.loadCA().certificate.isCA)
    }

    @Test func missingCAOrMismatchedKeyIsExplained() throws {
        let temporary = try TemporaryDirectory()
        let pki = PKIDirectory(path: temporary.file("empty"))
        #expect(throws: PKIDirectoryError.caMissing(directory: pki.path)) { try pki.loadCA() }
        #expect(PKIDirectoryError.caMissing(directory: "/x").description.contains("run 'upkeep pki init --dir /x' first"))

        try pki.initialize(validity: PKIDirectory.validity(days: 30))
        let stranger = try CertificateAuthority.create(commonName: "stranger", keyType: .ecdsaP256, validity: .days(1))
        try stranger.certificate.pem().write(toFile: pki.caCertificatePath, atomically: true, encoding: .utf8)
        #expect(throws: PKIError.keyDoesNotMatchCertificate(certificate: "CN=stranger")) { try pki.loadCA() }
    }

    @Test func certificateMayNotOutliveTheCA() throws {
        let temporary = try TemporaryDirectory()
        let pki = PKIDirectory(path: temporary.file("pki"))
        let now = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
        try pki.initialize(validity: .days(10, from: now))
        #expect {
            try pki.issue(PeerIdentity(role: .agent, name: "node-1"), validity: .days(11, from: now))
        } throws: { error in
            guard case let .certificateOutlivesCA(_, daysMax) = error as? PKIDirectoryError else { return false }
            return daysMax == 10
        }
        #expect(try pki.issue(PeerIdentity(role: .agent, name: "node-1"), validity: .days(10, from: now)).certificate.notAfter
            == now.addingTimeInterval(10 * 86_400))
    }

    @Test func issuedValidityIsBackdatedForClockSkew() {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let validity = PKIDirectory.validity(days: 3, now: now)
        #expect(validity.notBefore == now.addingTimeInterval(-PKIDirectory.clockSkewSeconds))
        #expect(validity.notAfter == now.addingTimeInterval(3 * 86_400))
    }
}
