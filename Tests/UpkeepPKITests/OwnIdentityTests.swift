import Foundation
import Testing
import UpkeepPKI
import UpkeepTestSupport

/// A CA and identity certificates made by the `openssl` command, not by our own issuer, so the
/// start-up checks are proven against certificates another implementation wrote.
struct OpenSSLMadePKI {
    let directory: TemporaryDirectory
    var caFile: String { directory.file("ca.crt") }

    init(caName: String = "ca") throws {
        directory = try TemporaryDirectory()
        try Self.run(["req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                      "-keyout", directory.file("ca.key"), "-out", caFile, "-days", "3", "-subj", "/CN=\(caName)",
                      "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    }

    static func run(_ arguments: [String]) throws {
        let result = try openssl(arguments)
        guard result.status == 0 else { throw OpenSSLCommandFailed(arguments: arguments, error: result.error) }
    }

    /// `name.crt` and `name.key` (mode 0600) naming `uri`, valid for `days` days from now.
    @discardableResult
    func issue(_ name: String, uri: String, days: Int = 1) throws -> (certificate: String, key: String) {
        let key = directory.file("\(name).key"), csr = directory.file("\(name).csr"), certificate = directory.file("\(name).crt")
        let extensions = try directory.write("""
            basicConstraints=critical,CA:FALSE
            keyUsage=critical,digitalSignature
            extendedKeyUsage=serverAuth,clientAuth
            subjectAltName=URI:\(uri)
            """, to: "\(name).ext")
        try Self.run(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", csr,
                      "-subj", "/CN=\(name)"])
        try Self.run(["x509", "-req", "-in", csr, "-CA", caFile, "-CAkey", directory.file("ca.key"), "-CAcreateserial",
                      "-days", "\(days)", "-extfile", extensions, "-out", certificate])
        chmod(key, 0o600)
        return (certificate, key)
    }
}

struct OpenSSLCommandFailed: Error, CustomStringConvertible {
    let arguments: [String]
    let error: String
    var description: String { "openssl \(arguments.joined(separator: " ")) failed: \(error)" }
}

@Suite("A process checks its own certificate and key before it runs")
struct OwnIdentityTests {
    func load(_ pki: OpenSSLMadePKI, _ files: (certificate: String, key: String), role: PeerRole = .agent, name: String? = "node-1",
              caFile: String? = nil, now: Date = Date()) throws -> OwnIdentity {
        try OwnIdentity.load(caFile: caFile ?? pki.caFile, certificateFile: files.certificate, keyFile: files.key, role: role, name: name, now: now)
    }

    func problem(_ body: () throws -> OwnIdentity) -> OwnIdentityError? {
        do {
            _ = try body()
            return nil
        } catch let error as OwnIdentityError {
            return error
        } catch {
            Issue.record("not an OwnIdentityError: \(error)")
            return nil
        }
    }

    @Test func aGoodAgentIdentityLoadsWithItsChainKeyAndName() throws {
        let pki = try OpenSSLMadePKI()
        let own = try load(pki, try pki.issue("node-1", uri: "upkeep://agent/node-1"))
        #expect(own.identity == (try PeerIdentity(role: .agent, name: "node-1")))
        #expect(own.certificate.matches(own.key))
        #expect(own.ca.count == 1)
    }

    @Test func anExpiredCertificateIsRefusedWithTheIssueCommand() throws {
        let pki = try OpenSSLMadePKI()
        let files = try pki.issue("node-1", uri: "upkeep://agent/node-1")
        let notAfter = try Certificate.loadChain(pemFile: files.certificate)[0].notAfter
        let error = problem { try load(pki, files, now: notAfter.addingTimeInterval(3 * 86_400)) }
        guard case .expired = error?.problem else { Issue.record("\(String(describing: error))"); return }
        let text = "\(error!)"
        #expect(text.contains("expired 3 days ago") && text.contains("upkeep pki issue agent node-1 --force"), "\(text)")
    }

    @Test func aCertificateNotYetValidPointsAtTheClock() throws {
        let pki = try OpenSSLMadePKI()
        let files = try pki.issue("node-1", uri: "upkeep://agent/node-1")
        let notBefore = try Certificate.loadChain(pemFile: files.certificate)[0].notBefore
        let error = problem { try load(pki, files, now: notBefore.addingTimeInterval(-7200)) }
        guard case .notYetValid = error?.problem else { Issue.record("\(String(describing: error))"); return }
        #expect("\(error!)".contains("starts in 2 hours") && "\(error!)".contains("clock"))
    }

    @Test func aControllerCertificateOnAnAgentAndAnotherNodesAreRefused() throws {
        let pki = try OpenSSLMadePKI()
        let controller = try pki.issue("controller", uri: "upkeep://controller/controller")
        let wrongRole = problem { try load(pki, controller) }
        #expect(wrongRole?.problem == .wrongIdentity(certificate: controller.certificate, found: try PeerIdentity(role: .controller, name: "controller")))
        #expect("\(wrongRole!)".contains("is for upkeep://controller/controller, but this process is upkeep://agent/node-1"))
        let other = try pki.issue("node-2", uri: "upkeep://agent/node-2")
        let wrongNode = problem { try load(pki, other) }
        #expect(wrongNode?.problem == .wrongIdentity(certificate: other.certificate, found: try PeerIdentity(role: .agent, name: "node-2")))
        // The controller accepts any controller name but no agent certificate.
        #expect(throws: Never.self) { try load(pki, controller, role: .controller, name: nil) }
        let agentAsController = problem { try load(pki, other, role: .controller, name: nil) }
        #expect("\(agentAsController!)".contains("upkeep pki issue controller --force"))
    }

    @Test func aCertificateWithoutAnIdentityIsRefused() throws {
        let pki = try OpenSSLMadePKI()
        let plain = try pki.issue("web", uri: "https://example.invalid/")
        guard case .notAnIdentity = problem({ try load(pki, plain) })?.problem else { Issue.record("accepted"); return }
    }

    @Test func aKeyThatIsNotTheCertificatesIsRefused() throws {
        let pki = try OpenSSLMadePKI()
        let one = try pki.issue("node-1", uri: "upkeep://agent/node-1")
        let other = try pki.issue("spare", uri: "upkeep://agent/node-1")
        let error = problem { try load(pki, (one.certificate, other.key)) }
        #expect(error?.problem == .keyMismatch(certificate: one.certificate, key: other.key))
    }

    @Test func aCertificateFromAnotherCAIsRefused() throws {
        let pki = try OpenSSLMadePKI()
        let files = try pki.issue("node-1", uri: "upkeep://agent/node-1")
        let other = try OpenSSLMadePKI(caName: "other")
        let error = problem { try load(pki, files, caFile: other.caFile) }
        #expect(error?.problem == .notIssuedByCA(certificate: files.certificate, ca: other.caFile))
    }

    @Test(arguments: [0o640, 0o604, 0o660, 0o644])
    func aKeyReadableByGroupOrOthersIsRefused(mode: Int) throws {
        let pki = try OpenSSLMadePKI()
        let files = try pki.issue("node-1", uri: "upkeep://agent/node-1")
        chmod(files.key, mode_t(mode))
        let error = problem { try load(pki, files) }
        #expect(error?.problem == .keyTooOpen(path: files.key, mode: UInt32(mode)))
        #expect("\(error!)".contains("chmod 600 \(files.key)"))
        chmod(files.key, 0o400)
        #expect(throws: Never.self) { try load(pki, files) }
    }

    /// The CA file decides whom the process trusts: one others may write, and one that holds a
    /// private key too (the CA's own `openssl req -x509 -keyout` output concatenated), are refused.
    @Test(arguments: [0o664, 0o646, 0o666])
    func aCAFileWritableByGroupOrOthersIsRefused(mode: Int) throws {
        let pki = try OpenSSLMadePKI()
        let files = try pki.issue("node-1", uri: "upkeep://agent/node-1")
        chmod(pki.caFile, mode_t(mode))
        let error = problem { try load(pki, files) }
        #expect(error?.problem == .caWritable(path: pki.caFile, mode: UInt32(mode)))
        #expect("\(error!)".contains("chmod 644 \(pki.caFile)"))
        chmod(pki.caFile, 0o644)
        #expect(throws: Never.self) { try load(pki, files) }
    }

    @Test func aCAFileThatHoldsAPrivateKeyIsRefused() throws {
        let pki = try OpenSSLMadePKI()
        let files = try pki.issue("node-1", uri: "upkeep://agent/node-1")
        let bundle = pki.directory.file("ca-and-key.pem")
        try (String(contentsOfFile: pki.caFile, encoding: .utf8) + String(contentsOfFile: pki.directory.file("ca.key"), encoding: .utf8))
            .write(toFile: bundle, atomically: false, encoding: .utf8)
        chmod(bundle, 0o644)
        // OpenSSL itself reads the bundle as a CA file: the check is ours.
        #expect(try openssl(["verify", "-CAfile", bundle, files.certificate]).status == 0)
        let error = problem { try load(pki, files, caFile: bundle) }
        #expect(error?.problem == .caHoldsKey(path: bundle))
        #expect("\(error!)".contains("holds a private key"))
    }

    @Test func aMissingKeyIsRefused() throws {
        let pki = try OpenSSLMadePKI()
        let files = try pki.issue("node-1", uri: "upkeep://agent/node-1")
        try FileManager.default.removeItem(atPath: files.key)
        #expect(problem { try load(pki, files) }?.problem == .keyMissing(path: files.key))
    }
}
