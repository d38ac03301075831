import NIOConcurrencyHelpers
import UpkeepPKI
import UpkeepProtocol
import UpkeepTLS

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

#if canImport(Glibc)
import Glibc
#endif

/// The agent's TLS identity while it serves, and its side of a certificate renewal over the
/// connection (PROTOCOL.md section 12, `certificateRequest` and `installCertificate`;
/// docs/pki.md, "Renewal").
///
/// The new key is made here and written beside the key file as `<tls.key>.next` (0600); it
/// never leaves the node. An accepted certificate is written as `<tls.certificate>.next`, then
/// the key and the certificate are renamed into place in that order; `finishInterruptedRenewal`
/// completes those renames at start when a restart came between them. New connections get the
/// new pair at once (`context()`); open ones keep theirs. It never logs key material.
public final class AgentIdentity: Sendable {
    let config: AgentConfig
    private let current: NIOLockedValueBox<TLSContext>
    /// One renewal step at a time: a request and an install never interleave their files.
    private let renewal = NIOLock()

    var pendingKeyFile: String { config.keyFile + ".next" }
    var pendingCertificateFile: String { config.certificateFile + ".next" }

    /// Finishes an interrupted renewal, then loads and checks the identity files
    /// (`AgentServer.tlsContext`: refused when expired, for another node, …).
    public init(config: AgentConfig, now: Date = Date()) throws {
        self.config = config
        try Self.finishInterruptedRenewal(config)
        current = NIOLockedValueBox(try AgentServer.tlsContext(config, now: now))
    }

    /// The context for the next connection.
    public func context() -> TLSContext { current.withLockedValue { $0 } }

    /// A `<tls.certificate>.next` exists only once it was written whole and accepted; the
    /// renames after it are redone here (the key first, as `install` does).
    static func finishInterruptedRenewal(_ config: AgentConfig) throws {
        let certificate = config.certificateFile + ".next", key = config.keyFile + ".next"
        guard FileSystem.exists(certificate) else { return }
        if FileSystem.exists(key) { try FileSystem.publish(key, over: config.keyFile) }
        try FileSystem.publish(certificate, over: config.certificateFile)
    }

    /// A request for the pending key, made now when none of `keyType` is pending.
    public func certificateRequest(keyType requested: String?) throws -> CertificateRequestResult {
        try renewal.withLock {
            let currentType = (try? PrivateKey(pemFile: config.keyFile))?.keyType ?? .ecdsaP256
            guard let type = KeyType(rawValue: requested ?? currentType.rawValue) else {
                throw ErrorResponse(.badRequest, "certificateRequest.keyType \(requested ?? "?") is not ecdsa-p256 or ed25519")
            }
            var key = try? PrivateKey(pemFile: pendingKeyFile)
            if key?.keyType != type {
                let fresh = try PrivateKey.generate(type)
                do {
                    try FileSystem.writeAtomically(Array(try fresh.pkcs8PEM().utf8), to: pendingKeyFile, mode: 0o600)
                } catch {
                    throw ErrorResponse(.internal, "cannot write the new key \(pendingKeyFile): \(error); is its directory writable by the agent?")
                }
                key = fresh
            }
            guard let key else { preconditionFailure("a pending key was just made") }
            let request = try CertificateSigningRequest(identity: try PeerIdentity(role: .agent, name: config.nodeName), key: key)
            return CertificateRequestResult(csr: try request.pem(), keyType: type.rawValue)
        }
    }

    /// Installs `pem` for the pending key after checking it as the agent checks its identity at
    /// start; answers `conflict` (and changes nothing) when it does not fit.
    public func installCertificate(pem: String, now: Date = Date()) throws -> InstallCertificateResult {
        try renewal.withLock {
            let certificate: Certificate
            do { certificate = try Certificate(pem: pem) } catch {
                throw ErrorResponse(.badRequest, "installCertificate.certificate: \(error)")
            }
            let result = InstallCertificateResult(notAfterUnixMs: Int64(certificate.notAfter.timeIntervalSince1970 * 1000),
                                                  sha256: certificate.sha256Fingerprint)
            if !FileSystem.exists(pendingKeyFile), (try? Certificate.loadChain(pemFile: config.certificateFile).first) == certificate {
                return result  // installed already: the answer to a repeated request
            }
            guard FileSystem.exists(pendingKeyFile) else {
                throw ErrorResponse(.conflict, "no key is pending; send certificateRequest first")
            }
            do {
                try FileSystem.writeAtomically(Array(pem.utf8), to: pendingCertificateFile + ".check", mode: 0o644)
                defer { unlink(pendingCertificateFile + ".check") }
                var candidate = config
                candidate.certificateFile = pendingCertificateFile + ".check"
                candidate.keyFile = pendingKeyFile
                let context = try AgentServer.tlsContext(candidate, now: now)
                try FileSystem.publish(pendingCertificateFile + ".check", over: pendingCertificateFile)
                try Self.finishInterruptedRenewal(config)
                current.withLockedValue { $0 = context }
            } catch let error as OwnIdentityError {
                throw ErrorResponse(.conflict, "the certificate does not fit this agent: \(error)")
            }
            return result
        }
    }
}
