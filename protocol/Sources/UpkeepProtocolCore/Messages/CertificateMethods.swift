// The two methods of a certificate renewal over the connection (PROTOCOL.md section 12:
// certificateRequest, installCertificate). Neither carries an operation id: each is idempotent
// by content, so a client that lost an answer asks again.

// MARK: certificateRequest

/// Asks the agent for a PKCS #10 request for a new key it makes and keeps.
public struct CertificateRequestRequest: RequestMessage {
    public typealias Result = CertificateRequestResult
    public static let method = Method.certificateRequest
    /// `ecdsa-p256` or `ed25519`; nil: the type of the agent's current key.
    public var keyType: String?

    public init(keyType: String? = nil) { self.keyType = keyType }

    public static let keyTypes: Set<String> = ["ecdsa-p256", "ed25519"]

    public func validate() throws(MessageError) {
        if let keyType, !Self.keyTypes.contains(keyType) {
            throw .invalid("certificateRequest.keyType must be one of \(Self.keyTypes.sorted().joined(separator: ", ")) (is \(keyType))")
        }
    }

    public var payload: RequestPayload { .certificateRequest(self) }
}

public struct CertificateRequestResult: ResultMessage {
    /// The request in PEM, at most `pemBytesMax` bytes.
    public var csr: String
    public var keyType: String

    public init(csr: String, keyType: String) {
        self.csr = csr
        self.keyType = keyType
    }

    /// A request or certificate of one key and one name is well under this.
    public static let pemBytesMax = 16 << 10
}

// MARK: installCertificate

/// Gives the agent the certificate the cluster CA signed for its pending key.
public struct InstallCertificateRequest: RequestMessage {
    public typealias Result = InstallCertificateResult
    public static let method = Method.installCertificate
    /// One PEM certificate, at most `CertificateRequestResult.pemBytesMax` bytes.
    public var certificate: String

    public init(certificate: String) { self.certificate = certificate }

    public func validate() throws(MessageError) {
        guard !certificate.isEmpty, certificate.utf8.count <= CertificateRequestResult.pemBytesMax else {
            throw .invalid("installCertificate.certificate must have 1...\(CertificateRequestResult.pemBytesMax) bytes (has \(certificate.utf8.count))")
        }
    }

    public var payload: RequestPayload { .installCertificate(self) }
}

public struct InstallCertificateResult: ResultMessage {
    public var notAfterUnixMs: Int64
    /// Upper-case hex bytes separated by colons, as `openssl x509 -fingerprint -sha256`.
    public var sha256: String

    public init(notAfterUnixMs: Int64, sha256: String) {
        self.notAfterUnixMs = notAfterUnixMs
        self.sha256 = sha256
    }
}
