import COpenSSL
import COpenSSLShims
import UpkeepPKI

/// The `SSL` ex-data slot that points at a connection's `PeerVerifier`.
let peerVerifierIndex: Int32 = upkeep_SSL_get_new_ex_index()

/// Per-connection verification state that OpenSSL's verify callback consults and fills.
///
/// OpenSSL verifies the chain (CA, validity, host name); this adds the Upkeep identity check
/// on the leaf and remembers why a certificate was refused, so the handler can report a typed
/// reason instead of OpenSSL's error text. Owned by the `TLSEngine`; lives as long as its `SSL`.
final class PeerVerifier {
    let expectation: PeerExpectation
    let denied: CertificateDenyList
    private(set) var refusal: CertificateRefusal?
    private(set) var identity: PeerIdentity?

    init(expectation: PeerExpectation, denied: CertificateDenyList = .empty) {
        self.expectation = expectation
        self.denied = denied
    }

    func verify(preverified: Bool, store: OpaquePointer) -> Int32 {
        guard preverified else {
            let code = X509_STORE_CTX_get_error(store)
            if refusal == nil { refusal = Self.refusal(forVerifyError: code, expectation: expectation) }
            return 0
        }
        guard X509_STORE_CTX_get_error_depth(store) == 0 else { return 1 }
        guard let leaf = X509_STORE_CTX_get_current_cert(store) else { return 0 }
        let certificate = Certificate(retaining: leaf)
        if denied.contains(certificate) {
            refusal = .revoked(identity: (try? PeerIdentity.from(certificate))?.uri ?? certificate.subject,
                               fingerprint: certificate.sha256Fingerprint)
            X509_STORE_CTX_set_error(store, X509_V_ERR_CERT_REVOKED)
            return 0
        }
        switch checkIdentity(of: certificate) {
        case .success:
            return 1
        case let .failure(reason):
            refusal = reason
            X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION)
            return 0
        }
    }

    private func checkIdentity(of certificate: Certificate) -> Result<Void, CertificateRefusal> {
        let required: PeerIdentity?
        let roles: Set<PeerRole>
        switch expectation {
        case .any, .host:
            return .success(())
        case let .roles(accepted):
            required = nil
            roles = accepted
        case let .identity(expected):
            required = expected
            roles = [expected.role]
        }
        let actual: PeerIdentity
        do {
            actual = try PeerIdentity.from(certificate)
        } catch {
            return .failure(.noIdentity(String(describing: error)))
        }
        guard roles.contains(actual.role) else {
            return .failure(.wrongRole(expected: roles.sorted { $0.rawValue < $1.rawValue }, actual: actual))
        }
        if let required, required != actual {
            return .failure(.wrongIdentity(expected: required, actual: actual))
        }
        identity = actual
        return .success(())
    }

    static func refusal(forVerifyError code: Int32, expectation: PeerExpectation) -> CertificateRefusal {
        switch code {
        case X509_V_ERR_CERT_HAS_EXPIRED:
            return .expired
        case X509_V_ERR_CERT_NOT_YET_VALID:
            return .notYetValid
        case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
             X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN,
             X509_V_ERR_CERT_SIGNATURE_FAILURE, X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
            return .unknownCA
        case X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH:
            if case let .host(name) = expectation { return .hostnameMismatch(name) }
            return .hostnameMismatch("the dialled host")
        default:
            let text = X509_verify_cert_error_string(Int(code)).map { String(cString: $0) } ?? "unknown"
            return .other(code: Int(code), message: text)
        }
    }
}

/// OpenSSL's verify callback for every context: finds the connection's `PeerVerifier`.
let upkeepVerifyCallback: @convention(c) (Int32, OpaquePointer?) -> Int32 = { preverified, store in
    guard let store,
          let ssl = X509_STORE_CTX_get_ex_data(store, upkeep_SSL_get_ex_data_X509_STORE_CTX_idx()),
          let raw = SSL_get_ex_data(OpaquePointer(ssl), peerVerifierIndex)
    else { return preverified }
    let verifier = Unmanaged<PeerVerifier>.fromOpaque(raw).takeUnretainedValue()
    return verifier.verify(preverified: preverified == 1, store: store)
}
