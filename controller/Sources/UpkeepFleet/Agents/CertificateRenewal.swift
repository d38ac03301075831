import Foundation
import UpkeepPKI
import UpkeepProtocol

/// A certificate renewal over the agent's own connection (PROTOCOL.md section 12; docs/pki.md,
/// "Renewal"): the agent makes a new key and sends a request for it, the cluster CA signs it
/// for the identity the handshake verified, the agent checks and installs it. The agent's key
/// never leaves the node; the CA key never leaves the controller.
public enum CertificateRenewal {
    /// Renews `node`'s agent certificate through `fleet` and returns the new certificate.
    /// The identity signed is always `upkeep://agent/<node>`, the only certificate the fleet
    /// accepts on that connection; a request asking for another is refused
    /// (`CertificateRequestError.identityNotAllowed`).
    public static func renew(node: String, fleet: AgentFleet, authority: CertificateAuthority, validity: ValidityPeriod,
                             timeoutSeconds: Int = 30) async throws -> Certificate {
        let identity: PeerIdentity
        do { identity = try PeerIdentity(role: .agent, name: node) } catch {
            throw AgentTransportError(node: node, reason: "\"\(node)\" cannot name an agent certificate: \(error)")
        }
        let client = try await fleet.client(for: node)
        let deadline = ContinuousClock.now + .seconds(timeoutSeconds)
        let asked = try await client.call(CertificateRequestRequest(), deadline: deadline)
        let request = try CertificateSigningRequest(pem: asked.csr)
        let certificate = try authority.sign(request, as: identity, validity: validity)
        let installed = try await client.call(InstallCertificateRequest(certificate: try certificate.pem()), deadline: deadline)
        guard installed.sha256 == certificate.sha256Fingerprint else {
            throw AgentTransportError(node: node, reason: "the agent installed another certificate (SHA-256 \(installed.sha256)) than the one signed")
        }
        return certificate
    }

    /// Two thirds of `certificate`'s lifetime: when it is due for renewal.
    public static func renewalPoint(of certificate: Certificate) -> Date {
        certificate.notBefore.addingTimeInterval(certificate.notAfter.timeIntervalSince(certificate.notBefore) * 2 / 3)
    }
}
