import COpenSSL

/// The cluster CA: a self-signed certificate and its key, which issue every identity.
///
/// Profiles it issues (all X.509 v3, random 128-bit serial, SHA-256 signatures, or pure
/// Ed25519 for Ed25519 signers, subjectKeyIdentifier and authorityKeyIdentifier):
/// - CA: basicConstraints `CA:TRUE, pathlen:0` (critical), keyUsage `keyCertSign, cRLSign` (critical).
/// - Identity (`issue(identity:)`): subject CN = the identity's name (its first 64 characters), exactly one URI SAN
///   `upkeep://agent/<node>` or `upkeep://controller/<name>` plus any DNS/IP SANs asked for,
///   basicConstraints `CA:FALSE` (critical), keyUsage `digitalSignature` (critical),
///   extendedKeyUsage `serverAuth, clientAuth` (either side may dial).
/// - Server (`issueServer`): no upkeep identity; CN plus DNS/IP SANs, extendedKeyUsage `serverAuth`.
/// - Client (`issueClient`): no upkeep identity; CN = user, O = group (how Kubernetes reads
///   client certificates), extendedKeyUsage `clientAuth`.
///
/// It never writes files; `PKIDirectory` does. Holding a `CertificateAuthority` means holding
/// the CA key: never log it or send it anywhere.
public struct CertificateAuthority: Sendable {
    public let certificate: Certificate
    public let key: PrivateKey

    /// Pairs an existing CA certificate with its key, refusing a key that does not belong to
    /// it or a certificate that is not a CA.
    public init(certificate: Certificate, key: PrivateKey) throws {
        guard certificate.matches(key) else {
            throw PKIError.keyDoesNotMatchCertificate(certificate: certificate.subject)
        }
        guard certificate.isCA else { throw PKIError.notACertificateAuthority(subject: certificate.subject) }
        self.certificate = certificate
        self.key = key
    }

    /// Generates a new CA key and self-signed certificate with subject CN = `commonName`.
    public static func create(commonName: String, keyType: KeyType, validity: ValidityPeriod) throws -> CertificateAuthority {
        let key = try PrivateKey.generate(keyType)
        var builder = CertificateBuilder(validity: validity)
        builder.subject = [(NID_commonName, "common name", commonName)]
        builder.extensions = [
            (NID_basic_constraints, "critical,CA:TRUE,pathlen:0"),
            (NID_key_usage, "critical,keyCertSign,cRLSign"),
            (NID_subject_key_identifier, "hash"),
            (NID_authority_key_identifier, "keyid:always"),
        ]
        let certificate = try builder.sign(publicKey: key.pointer, issuer: nil, signer: key)
        return try CertificateAuthority(certificate: certificate, key: key)
    }

    /// Issues an identity certificate for a fresh key of `keyType`.
    public func issue(identity: PeerIdentity, keyType: KeyType, validity: ValidityPeriod,
                      dnsNames: [String] = [], ipAddresses: [String] = []) throws -> (certificate: Certificate, key: PrivateKey) {
        try issueLeaf(subject: [(NID_commonName, "common name", identity.commonName)],
                      extendedKeyUsage: "serverAuth,clientAuth",
                      alternativeNames: [.uri(identity.uri)] + dnsNames.map { .dns($0) } + ipAddresses.map { .ip($0) },
                      keyType: keyType, validity: validity)
    }

    /// Issues an identity certificate for the public key of `request`, whose private key stays
    /// with the requester (enrollment and renewal). The caller decides `identity` (from a token,
    /// or from the certificate the requester already holds); the request must ask for exactly it.
    /// Nothing of the request but its public key and its identity is used: the profile is the one
    /// `issue(identity:)` writes. Throws `CertificateRequestError` for a request to refuse.
    public func sign(_ request: CertificateSigningRequest, as identity: PeerIdentity, validity: ValidityPeriod) throws -> Certificate {
        guard request.hasValidSignature else { throw CertificateRequestError.badSignature }
        let requested = try request.identity()
        guard requested == identity else {
            throw CertificateRequestError.identityNotAllowed(requested: requested, allowed: identity)
        }
        guard request.keyType != nil else { throw CertificateRequestError.unsupportedKeyType }
        guard let publicKey = X509_REQ_get0_pubkey(request.pointer) else { throw CertificateRequestError.unsupportedKeyType }
        return try signLeaf(publicKey: publicKey, subject: [(NID_commonName, "common name", identity.commonName)],
                            extendedKeyUsage: "serverAuth,clientAuth", alternativeNames: [.uri(identity.uri)], validity: validity)
    }

    /// Issues a plain TLS server certificate (no upkeep identity), e.g. for a simulated
    /// Kubernetes API server. Clients verify it by `dnsNames` and `ipAddresses`.
    public func issueServer(commonName: String, dnsNames: [String] = [], ipAddresses: [String] = [],
                            keyType: KeyType, validity: ValidityPeriod) throws -> (certificate: Certificate, key: PrivateKey) {
        try issueLeaf(subject: [(NID_commonName, "common name", commonName)],
                      extendedKeyUsage: "serverAuth",
                      alternativeNames: dnsNames.map { .dns($0) } + ipAddresses.map { .ip($0) },
                      keyType: keyType, validity: validity)
    }

    /// Issues a plain TLS client certificate (no upkeep identity) the way Kubernetes reads
    /// them: CN = user name, O = group.
    public func issueClient(commonName: String, organization: String? = nil,
                            keyType: KeyType, validity: ValidityPeriod) throws -> (certificate: Certificate, key: PrivateKey) {
        let organizationEntry = organization.map { [(NID_organizationName, "organization", $0)] } ?? []
        return try issueLeaf(subject: organizationEntry + [(NID_commonName, "common name", commonName)],
                             extendedKeyUsage: "clientAuth", alternativeNames: [],
                             keyType: keyType, validity: validity)
    }

    /// Checks DNS names and IP addresses the way `issue` would, so a command line can refuse
    /// bad ones before doing any work. Throws `PKIError.invalidDNSName` or `.invalidIPAddress`.
    public static func checkAlternativeNames(dnsNames: [String], ipAddresses: [String]) throws {
        for name in dnsNames where !CertificateBuilder.isValidDNSName(name) { throw PKIError.invalidDNSName(name) }
        for address in ipAddresses where IPAddressText.parse(address) == nil { throw PKIError.invalidIPAddress(address) }
    }

    private func issueLeaf(subject: [(nid: Int32, field: String, value: String)], extendedKeyUsage: String,
                           alternativeNames: [Certificate.SubjectAlternativeName],
                           keyType: KeyType, validity: ValidityPeriod) throws -> (certificate: Certificate, key: PrivateKey) {
        let leafKey = try PrivateKey.generate(keyType)
        let certificate = try signLeaf(publicKey: leafKey.pointer, subject: subject, extendedKeyUsage: extendedKeyUsage,
                                       alternativeNames: alternativeNames, validity: validity)
        return (certificate, leafKey)
    }

    /// The leaf profile (see the type's comment) for `publicKey`, signed by this CA.
    private func signLeaf(publicKey: OpaquePointer, subject: [(nid: Int32, field: String, value: String)], extendedKeyUsage: String,
                          alternativeNames: [Certificate.SubjectAlternativeName], validity: ValidityPeriod) throws -> Certificate {
        var builder = CertificateBuilder(validity: validity)
        builder.subject = subject
        builder.extensions = [
            (NID_basic_constraints, "critical,CA:FALSE"),
            (NID_key_usage, "critical,digitalSignature"),
            (NID_ext_key_usage, extendedKeyUsage),
            (NID_subject_key_identifier, "hash"),
            (NID_authority_key_identifier, "keyid:always"),
        ]
        builder.subjectAlternativeNames = alternativeNames
        return try builder.sign(publicKey: publicKey, issuer: self.certificate, signer: key)
    }
}
