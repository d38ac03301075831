import COpenSSL

/// A PKCS#10 certificate signing request (RFC 2986) held by OpenSSL (an `X509_REQ`), freed when
/// the last reference goes.
///
/// Enrollment and renewal use it so that a node's private key is generated on the node and never
/// leaves it: the node sends the request (its public key and the identity it asks for, signed by
/// its key), the CA answers with a certificate (`CertificateAuthority.sign(_:as:validity:)`).
/// The request asks for an identity the way a certificate states one: subject CN = the name and
/// exactly one `upkeep://<role>/<name>` URI in a subjectAltName extension request.
///
/// Sendable because the object is only read after creation; nobody may mutate `pointer`.
public final class CertificateSigningRequest: @unchecked Sendable {
    /// The owned `X509_REQ *`.
    let pointer: OpaquePointer

    /// A request is a public key, a name and one extension: anything larger is not one of ours.
    public static let pemBytesMax = 16 * 1024

    private init(owning pointer: OpaquePointer) {
        self.pointer = pointer
    }

    deinit { X509_REQ_free(pointer) }

    /// A request for `identity`, signed with `key` (which stays with the caller).
    public convenience init(identity: PeerIdentity, key: PrivateKey) throws {
        let operation = "building a certificate signing request"
        ERR_clear_error()
        guard let request = X509_REQ_new() else { throw OpenSSLError.capture(operation) }
        var owned = false
        defer { if !owned { X509_REQ_free(request) } }
        guard X509_REQ_set_version(request, 0) == 1, X509_REQ_set_pubkey(request, key.pointer) == 1,
              let name = X509_NAME_new() else { throw OpenSSLError.capture(operation) }
        defer { X509_NAME_free(name) }
        guard X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8, identity.commonName, -1, -1, 0) == 1,
              X509_REQ_set_subject_name(request, name) == 1
        else { throw OpenSSLError.capture(operation) }
        // The identity name is a DNS-1123 subdomain, so the configuration text needs no escaping.
        guard let alternativeNames = X509V3_EXT_conf_nid(nil, nil, NID_subject_alt_name, "URI:\(identity.uri)") else {
            throw OpenSSLError.capture(operation)
        }
        defer { X509_EXTENSION_free(alternativeNames) }
        guard let extensions = OPENSSL_sk_new_null() else { throw OpenSSLError.capture(operation) }
        defer { OPENSSL_sk_free(extensions) }
        guard OPENSSL_sk_push(extensions, UnsafeRawPointer(alternativeNames)) > 0,
              X509_REQ_add_extensions(request, extensions) == 1,
              X509_REQ_sign(request, key.pointer, key.signingDigest) > 0
        else { throw OpenSSLError.capture("signing the certificate signing request") }
        owned = true
        self.init(owning: request)
    }

    /// Parses the first PEM request ("-----BEGIN CERTIFICATE REQUEST-----") in `pem`. Throws
    /// `CertificateRequestError.malformed` for anything else; the signature is not checked here.
    public convenience init(pem: String) throws {
        guard pem.utf8.count <= Self.pemBytesMax else { throw CertificateRequestError.malformed }
        let request: OpaquePointer? = try MemoryBIO.reading(pem, operation: "reading a certificate signing request") { bio in
            ERR_clear_error()
            let request = PEM_read_bio_X509_REQ(bio, nil, nil, nil)
            ERR_clear_error()
            return request
        }
        guard let request else { throw CertificateRequestError.malformed }
        self.init(owning: request)
    }

    /// The request as PEM.
    public func pem() throws -> String {
        try MemoryBIO.writing(operation: "encoding the certificate signing request as PEM") {
            PEM_write_bio_X509_REQ($0, pointer) == 1
        }
    }

    /// True when the request is signed by the private key of the public key it carries, i.e.
    /// its sender holds that key.
    public var hasValidSignature: Bool {
        defer { ERR_clear_error() }
        guard let key = X509_REQ_get0_pubkey(pointer) else { return false }
        return X509_REQ_verify(pointer, key) == 1
    }

    /// The requested key's algorithm, when it is one Upkeep issues for; nil otherwise (e.g. RSA).
    public var keyType: KeyType? {
        guard let key = X509_REQ_get0_pubkey(pointer) else { return nil }
        return PrivateKey.keyType(of: key)
    }

    /// True when `key` is the private key of the requested public key.
    public func matches(_ key: PrivateKey) -> Bool {
        guard let requested = X509_REQ_get0_pubkey(pointer) else { return false }
        defer { ERR_clear_error() }
        return EVP_PKEY_eq(requested, key.pointer) == 1
    }

    /// The requested subject as an RFC 2253 string, e.g. "CN=node-1".
    public var subject: String { Certificate.format(X509_REQ_get_subject_name(pointer)) }

    /// The subject alternative names the request asks for, in request order.
    public var subjectAlternativeNames: [Certificate.SubjectAlternativeName] {
        defer { ERR_clear_error() }
        guard let extensions = X509_REQ_get_extensions(pointer) else { return [] }
        defer {
            for index in 0..<OPENSSL_sk_num(extensions) {
                if let item = OPENSSL_sk_value(extensions, index) { X509_EXTENSION_free(OpaquePointer(item)) }
            }
            OPENSSL_sk_free(extensions)
        }
        guard let raw = X509V3_get_d2i(extensions, NID_subject_alt_name, nil, nil) else { return [] }
        return Certificate.decode(generalNames: OpaquePointer(raw))
    }

    /// The identity the request asks for, by the same rule as a certificate's
    /// (`PeerIdentity.from`): exactly one `upkeep:` URI that parses.
    public func identity() throws -> PeerIdentity {
        let uris = subjectAlternativeNames.compactMap { if case let .uri(value) = $0 { value } else { nil } }
        return try PeerIdentity.from(uris: uris, subject: subject)
    }
}

/// Why a certificate signing request is refused; each description says what to do.
public enum CertificateRequestError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Not a PEM certificate request, or larger than `CertificateSigningRequest.pemBytesMax`.
    case malformed
    /// The request is not signed by the key it carries.
    case badSignature
    /// The key is not ECDSA P-256 or Ed25519.
    case unsupportedKeyType
    /// The request asks for another identity than the one its sender may have.
    case identityNotAllowed(requested: PeerIdentity, allowed: PeerIdentity)

    public var description: String {
        switch self {
        case .malformed:
            "the certificate signing request is not a PEM 'CERTIFICATE REQUEST' of at most \(CertificateSigningRequest.pemBytesMax / 1024) KiB"
        case .badSignature:
            "the certificate signing request is not signed by the key it carries; generate it again with its own key"
        case .unsupportedKeyType:
            "the certificate signing request's key is not ECDSA P-256 or Ed25519; generate one of those"
        case let .identityNotAllowed(requested, allowed):
            "the request asks for \(requested) but may only ask for \(allowed); join with the node name the token was made for"
        }
    }
}

/// The pin of a CA certificate: SHA-256 of its DER SubjectPublicKeyInfo, written `sha256:<64 hex>`
/// exactly as kubeadm's `--discovery-token-ca-cert-hash`
/// (https://kubernetes.io/docs/reference/setup-tools/kubeadm/kubeadm-join/). A joining node
/// compares it with the CA the join server presents before it sends its token.
public struct CAHash: Hashable, Sendable, CustomStringConvertible {
    /// 64 lowercase hex digits.
    public let hex: String

    public static let prefix = "sha256:"

    /// The pin of `certificate`'s public key.
    public init(of certificate: Certificate) {
        hex = certificate.subjectPublicKeyInfoSHA256
    }

    /// Parses `sha256:<64 hex digits>` (upper-case digits accepted).
    public init(parsing text: String) throws(CAHashError) {
        guard text.hasPrefix(Self.prefix) else { throw .malformed(text) }
        let digits = String(text.dropFirst(Self.prefix.count)).lowercased()
        guard SHA256.isHex(digits) else { throw .malformed(text) }
        hex = digits
    }

    /// True when `certificate`'s public key is the pinned one.
    public func matches(_ certificate: Certificate) -> Bool {
        CAHash(of: certificate) == self
    }

    public var description: String { "\(Self.prefix)\(hex)" }
}

/// A `--ca-hash` that is not `sha256:<64 hex digits>`.
public enum CAHashError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformed(String)

    public var description: String {
        switch self {
        case let .malformed(text):
            "'\(text)' is not a CA hash; copy the sha256:<64 hex digits> that 'upkeep token create' printed"
        }
    }
}
