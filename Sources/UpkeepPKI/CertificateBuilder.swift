import COpenSSL
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Assembles and signs one X.509 v3 certificate. Internal: `CertificateAuthority` decides the
/// profile (which extensions); this type only knows how to write them.
struct CertificateBuilder {
    /// Subject entries in the order they appear (most general first).
    var subject: [(nid: Int32, field: String, value: String)] = []
    var validity: ValidityPeriod
    /// Extensions in OpenSSL's configuration syntax, e.g. (NID_basic_constraints, "critical,CA:FALSE").
    var extensions: [(nid: Int32, value: String)] = []
    var subjectAlternativeNames: [Certificate.SubjectAlternativeName] = []

    init(validity: ValidityPeriod) {
        self.validity = validity
    }

    /// Signs a certificate for `publicKey` (an `EVP_PKEY *`: a key pair's, or a request's public
    /// key) with `signer`. `issuer` nil means self-signed.
    func sign(publicKey: OpaquePointer, issuer: Certificate?, signer: PrivateKey) throws -> Certificate {
        let notBefore = time_t(validity.notBefore.timeIntervalSince1970.rounded(.down))
        let notAfter = time_t(validity.notAfter.timeIntervalSince1970.rounded(.down))
        guard notAfter > notBefore else {
            throw PKIError.invalidValidity(notBefore: validity.notBefore, notAfter: validity.notAfter)
        }
        for entry in subject where entry.value.isEmpty || entry.value.utf8.count > 64 {
            throw PKIError.invalidSubjectField(field: entry.field, value: entry.value)
        }
        let sanBytes = try subjectAlternativeNames.map(Self.encode)

        let operation = "building a certificate"
        ERR_clear_error()
        guard let x509 = X509_new() else { throw OpenSSLError.capture(operation) }
        var signed = false
        defer { if !signed { X509_free(x509) } }
        guard X509_set_version(x509, 2) == 1,
              try Self.setRandomSerial(x509),
              ASN1_TIME_set(X509_getm_notBefore(x509), notBefore) != nil,
              ASN1_TIME_set(X509_getm_notAfter(x509), notAfter) != nil,
              X509_set_pubkey(x509, publicKey) == 1
        else { throw OpenSSLError.capture(operation) }

        try setNames(x509, issuer: issuer)

        var context = X509V3_CTX()
        X509V3_set_ctx(&context, issuer?.pointer ?? x509, x509, nil, nil, 0)
        if issuer == nil, X509V3_set_issuer_pkey(&context, signer.pointer) != 1 {
            throw OpenSSLError.capture(operation)
        }
        for (nid, value) in extensions {
            guard let extensionPointer = X509V3_EXT_conf_nid(nil, &context, nid, value) else {
                throw OpenSSLError.capture("encoding the extension \(value)")
            }
            defer { X509_EXTENSION_free(extensionPointer) }
            guard X509_add_ext(x509, extensionPointer, -1) == 1 else {
                throw OpenSSLError.capture("adding the extension \(value)")
            }
        }
        if !sanBytes.isEmpty { try Self.addSubjectAlternativeNames(x509, sanBytes) }

        guard X509_sign(x509, signer.pointer, signer.signingDigest) > 0 else {
            throw OpenSSLError.capture("signing the certificate")
        }
        signed = true
        return Certificate(owning: x509)
    }

    private func setNames(_ x509: OpaquePointer, issuer: Certificate?) throws {
        guard let name = X509_NAME_new() else { throw OpenSSLError.capture("building the subject name") }
        defer { X509_NAME_free(name) }
        for entry in subject {
            guard X509_NAME_add_entry_by_NID(name, entry.nid, MBSTRING_UTF8, entry.value, -1, -1, 0) == 1 else {
                throw OpenSSLError.capture("adding \(entry.field) to the subject name")
            }
        }
        let issuerName = issuer.map { X509_get_subject_name($0.pointer) } ?? name
        guard X509_set_subject_name(x509, name) == 1, X509_set_issuer_name(x509, issuerName) == 1 else {
            throw OpenSSLError.capture("setting the subject and issuer names")
        }
    }

    /// A random positive 128-bit serial number (RFC 5280 allows up to 20 octets).
    private static func setRandomSerial(_ x509: OpaquePointer) throws -> Bool {
        var bytes = [UInt8](repeating: 0, count: 16)
        repeat {
            guard RAND_bytes(&bytes, Int32(bytes.count)) == 1 else { throw OpenSSLError.capture("drawing a serial number") }
        } while bytes.allSatisfy { $0 == 0 }
        guard let number = BN_bin2bn(bytes, Int32(bytes.count), nil) else { return false }
        defer { BN_free(number) }
        return BN_to_ASN1_INTEGER(number, X509_get_serialNumber(x509)) != nil
    }

    /// (GEN_* kind, value bytes) after validating the text form.
    private static func encode(_ name: Certificate.SubjectAlternativeName) throws -> (Int32, [UInt8]) {
        switch name {
        case let .dns(host):
            guard isValidDNSName(host) else { throw PKIError.invalidDNSName(host) }
            return (GEN_DNS, Array(host.utf8))
        case let .ip(text):
            guard let bytes = IPAddressText.parse(text) else { throw PKIError.invalidIPAddress(text) }
            return (GEN_IPADD, bytes)
        case let .uri(uri):
            return (GEN_URI, Array(uri.utf8))
        case let .email(address):
            return (GEN_EMAIL, Array(address.utf8))
        case .other:
            preconditionFailure("Upkeep never issues other subject alternative name kinds")
        }
    }

    /// A host name (letters, digits, '-', labels of 1...63, 253 in all), optionally "*." first.
    static func isValidDNSName(_ host: String) -> Bool {
        let name = host.hasPrefix("*.") ? String(host.dropFirst(2)) : host
        guard !name.isEmpty, name.utf8.count <= 253 else { return false }
        return name.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
            (1...63).contains(label.utf8.count) && label.first != "-" && label.last != "-"
                && label.utf8.allSatisfy { byte in
                    byte == UInt8(ascii: "-") || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                        || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte | 0x20)
                }
        }
    }

    private static func addSubjectAlternativeNames(_ x509: OpaquePointer, _ names: [(Int32, [UInt8])]) throws {
        let operation = "encoding the subject alternative names"
        guard let stack = OPENSSL_sk_new_null() else { throw OpenSSLError.capture(operation) }
        defer { GENERAL_NAMES_free(stack) }
        for (kind, bytes) in names {
            guard let string = ASN1_STRING_type_new(kind == GEN_IPADD ? V_ASN1_OCTET_STRING : V_ASN1_IA5STRING) else {
                throw OpenSSLError.capture(operation)
            }
            guard ASN1_STRING_set(string, bytes, Int32(bytes.count)) == 1, let general = GENERAL_NAME_new() else {
                ASN1_STRING_free(string)
                throw OpenSSLError.capture(operation)
            }
            GENERAL_NAME_set0_value(general, kind, UnsafeMutableRawPointer(string))
            guard OPENSSL_sk_push(stack, UnsafeRawPointer(general)) > 0 else {
                GENERAL_NAME_free(general)
                throw OpenSSLError.capture(operation)
            }
        }
        guard X509_add1_ext_i2d(x509, NID_subject_alt_name, UnsafeMutableRawPointer(stack), 0, UInt(X509V3_ADD_DEFAULT)) == 1 else {
            throw OpenSSLError.capture(operation)
        }
    }
}
