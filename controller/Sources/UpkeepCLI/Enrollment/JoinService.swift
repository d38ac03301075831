import Foundation
import Logging
import UpkeepCore
import UpkeepEnrollment
import UpkeepHTTPServer
import UpkeepPKI
import UpkeepPOSIX
import UpkeepStore

/// The join server's answers (`JoinWire`): the cluster CA to anyone, and a certificate for a
/// node's CSR to whoever holds a valid bootstrap token. The node's key never comes here.
///
/// A join is checked whole before anything is kept: the token's format, the CSR (its signature,
/// key type, and an agent identity with a valid node name), then the certificate is signed, and
/// only then is one use of the token spent and the enrollment recorded, in one transaction
/// (`StateStore.redeemJoinToken`), and the certificate's copy staged beforehand is published in
/// DIR/agents. A refused join changes nothing. It logs token ids and node
/// names, never a token's secret.
struct JoinService: Sendable {
    let ca: CertificateAuthority
    /// Where the issued certificates are copied (DIR/agents).
    let pki: PKIDirectory
    let store: StateStore
    let certificateDays: Int
    let logger: Logger
    var now: @Sendable () -> Instant = { .wallClockNow() }

    func answer(_ request: HTTPServerRequest) -> HTTPServerResponse {
        switch (request.method, request.path) {
        case ("GET", JoinWire.caPath):
            return (try? ca.certificate.pem()).map { .text($0) } ?? .text("cannot encode the CA\n", status: 500)
        case ("POST", JoinWire.joinPath):
            return join(request.body)
        default:
            return refusal(404, "GET \(JoinWire.caPath) or POST \(JoinWire.joinPath)")
        }
    }

    private func join(_ body: [UInt8]) -> HTTPServerResponse {
        let message: JoinWire.Request
        let token: BootstrapToken
        let csr: CertificateSigningRequest
        let identity: PeerIdentity
        do {
            message = try JoinWire.Request(body: body)
            token = try BootstrapToken(parsing: message.token)
            csr = try CertificateSigningRequest(pem: message.csr)
            identity = try csr.identity()
        } catch {
            return refusal(400, "\(error)")
        }
        guard identity.role == .agent else {
            return refusal(403, "a join token enrolls agents only; the request asks for \(identity)")
        }
        let issuedAt = now()
        let certificate: Certificate
        do {
            let validity = PKIDirectory.validity(days: certificateDays, now: Date(timeIntervalSince1970: Double(issuedAt.milliseconds) / 1000))
            certificate = try ca.sign(csr, as: identity, validity: ValidityPeriod(notBefore: validity.notBefore,
                                                                                   notAfter: min(validity.notAfter, ca.certificate.notAfter)))
        } catch let error as CertificateRequestError {
            return refusal(400, error.description)
        } catch {
            logger.error("join: cannot sign for \(identity.name): \(error)")
            return refusal(500, "the join server could not sign the certificate; see its log")
        }
        // The controller's copy (DIR/agents/NODE.crt), for `pki status`, `pki revoke` and the
        // daily renewal: staged before the token is spent, published once the join is recorded.
        let copy: CertificateCopy
        do {
            copy = try pki.stageCopy(of: certificate, for: identity)
        } catch {
            logger.error("join: cannot record the certificate of \(identity.name): \(error)")
            return refusal(500, "the join server cannot keep a copy of the certificate; see its log")
        }
        let enrollment = EnrollmentRecord(node: identity.name, tokenID: token.id, enrolledAt: issuedAt, certificateSerial: certificate.serialHex,
                                          notAfter: .seconds(Int64(certificate.notAfter.timeIntervalSince1970)))
        do {
            _ = try store.redeemJoinToken(id: token.id, secretSHA256: token.secretSHA256, enrollment: enrollment, force: message.force)
        } catch let refused as JoinRefusal {
            copy.discard()
            logger.warning("join: refused node \(identity.name) with token \(token.id): \(refused)")
            if case .alreadyEnrolled = refused { return refusal(409, refused.description) }
            return refusal(403, refused.description)
        } catch {
            copy.discard()
            logger.error("join: state database: \(error)")
            return refusal(500, "the join server cannot record the enrollment: \(error)")
        }
        do {
            try copy.publish()
        } catch {
            // The node is enrolled and gets its certificate; only the copy is missing, and
            // `upkeep pki renew NODE` writes it.
            logger.error("join: node \(identity.name) enrolled, but its certificate copy is missing: \(error); run 'upkeep pki renew \(identity.name)'")
        }
        logger.notice("join: enrolled node \(identity.name) with token \(token.id), certificate serial \(certificate.serialHex)")
        do {
            let answer = JoinWire.Response(certificate: try certificate.pem(), ca: try ca.certificate.pem())
            return HTTPServerResponse(status: 200, contentType: "application/json", body: answer.body)
        } catch {
            return refusal(500, "cannot encode the certificate: \(error)")
        }
    }

    private func refusal(_ status: Int, _ message: String) -> HTTPServerResponse {
        HTTPServerResponse(status: status, contentType: "application/json", body: JoinWire.errorBody(message))
    }
}
