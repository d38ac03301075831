import COpenSSL
import COpenSSLShims
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An X.509 certificate held by OpenSSL (an `X509`), freed when the last reference goes.
///
/// Equality compares the DER encoding, captured once at creation. Sendable because the object
/// is only read after creation; nobody may mutate `pointer`.
public final class Certificate: @unchecked Sendable, Equatable, Hashable {
    /// The owned `X509 *`.
    public let pointer: OpaquePointer
    /// The DER encoding (empty only if OpenSSL could not re-encode, which a parsed
    /// certificate never triggers).
    public let derBytes: [UInt8]

    /// Takes ownership of an `X509 *` (no extra reference is taken).
    init(owning x509: OpaquePointer) {
        pointer = x509
        derBytes = Certificate.encodeDER(x509)
    }

    /// Shares an `X509 *` owned elsewhere (e.g. a TLS peer's): takes a reference with
    /// `X509_up_ref` and releases it on deinit.
    public convenience init(retaining x509: OpaquePointer) {
        X509_up_ref(x509)
        self.init(owning: x509)
    }

    /// Parses the first PEM certificate in `pem`.
    public convenience init(pem: String) throws {
        guard let first = try Certificate.parseChain(pem: pem, limit: 1).first else {
            throw PKIError.noCertificate(source: "PEM text")
        }
        self.init(owning: first.take())
    }

    /// Parses a DER-encoded certificate.
    public convenience init(der: [UInt8]) throws {
        let x509: OpaquePointer? = der.withUnsafeBufferPointer { buffer in
            var cursor = buffer.baseAddress
            ERR_clear_error()
            return d2i_X509(nil, &cursor, buffer.count)
        }
        guard let x509 else {
            ERR_clear_error()
            throw PKIError.noCertificate(source: "DER bytes")
        }
        self.init(owning: x509)
    }

    deinit { X509_free(pointer) }

    /// Every certificate in a PEM file, in file order (leaf first for a chain file).
    public static func loadChain(pemFile: String) throws -> [Certificate] {
        let chain = try parseChain(pem: PEMFile.contents(pemFile), limit: Int.max).map { Certificate(owning: $0.take()) }
        guard !chain.isEmpty else { throw PKIError.noCertificate(source: pemFile) }
        return chain
    }

    /// Every certificate in PEM text.
    public static func loadChain(pem: String) throws -> [Certificate] {
        let chain = try parseChain(pem: pem, limit: Int.max).map { Certificate(owning: $0.take()) }
        guard !chain.isEmpty else { throw PKIError.noCertificate(source: "PEM text") }
        return chain
    }

    /// An `X509 *` not yet wrapped: freed unless taken, so a parse error leaks nothing.
    private final class Pending {
        private var x509: OpaquePointer?
        init(_ x509: OpaquePointer) { self.x509 = x509 }
        func take() -> OpaquePointer {
            guard let x509 else { preconditionFailure("a pending certificate was taken twice") }
            self.x509 = nil
            return x509
        }
        deinit { if let x509 { X509_free(x509) } }
    }

    private static func parseChain(pem: String, limit: Int) throws -> [Pending] {
        try MemoryBIO.reading(pem, operation: "reading certificates") { bio in
            var found: [Pending] = []
            ERR_clear_error()
            while found.count < limit, let x509 = PEM_read_bio_X509(bio, nil, nil, nil) {
                found.append(Pending(x509))
            }
            // The loop ends on PEM's "no start line" at the end of the text; anything else is damage.
            let failure = OpenSSLError.capture("reading a PEM certificate")
            let endOfText = failure.onlyReason(PEM_R_NO_START_LINE, ofLibrary: ERR_LIB_PEM)
            if !endOfText && found.count < limit { throw failure }
            return found
        }
    }

    private static func encodeDER(_ x509: OpaquePointer) -> [UInt8] {
        let length = i2d_X509(x509, nil)
        guard length > 0 else { ERR_clear_error(); return [] }
        var bytes = [UInt8](repeating: 0, count: Int(length))
        let written = bytes.withUnsafeMutableBufferPointer { buffer -> Int32 in
            var cursor = buffer.baseAddress
            return i2d_X509(x509, &cursor)
        }
        return written == length ? bytes : []
    }

    public static func == (lhs: Certificate, rhs: Certificate) -> Bool { lhs.derBytes == rhs.derBytes }
    public func hash(into hasher: inout Hasher) { hasher.combine(derBytes) }

    /// The certificate as PEM ("-----BEGIN CERTIFICATE-----").
    public func pem() throws -> String {
        try MemoryBIO.writing(operation: "encoding the certificate as PEM") { PEM_write_bio_X509($0, pointer) == 1 }
    }

    /// The subject as an RFC 2253 string, most specific first, e.g. "CN=node-1" or
    /// "CN=system:admin,O=system:masters".
    public var subject: String { Certificate.format(X509_get_subject_name(pointer)) }
    /// The issuer as an RFC 2253 string.
    public var issuer: String { Certificate.format(X509_get_issuer_name(pointer)) }

    /// The subject's commonName entries (usually one).
    public var subjectCommonNames: [String] { Certificate.entries(X509_get_subject_name(pointer), nid: NID_commonName) }
    /// The subject's organizationName entries (Kubernetes reads these as groups).
    public var subjectOrganizations: [String] {
        Certificate.entries(X509_get_subject_name(pointer), nid: NID_organizationName)
    }

    static func format(_ name: OpaquePointer?) -> String {
        guard let name else { return "" }
        return (try? MemoryBIO.writing(operation: "printing a name") { bio in
            X509_NAME_print_ex(bio, name, 0, upkeep_XN_FLAG_RFC2253_UTF8()) >= 0
        }) ?? ""
    }

    private static func entries(_ name: OpaquePointer?, nid: Int32) -> [String] {
        guard let name else { return [] }
        var values: [String] = []
        var index: Int32 = -1
        while true {
            index = X509_NAME_get_index_by_NID(name, nid, index)
            guard index >= 0, let entry = X509_NAME_get_entry(name, index),
                  let data = X509_NAME_ENTRY_get_data(entry) else { break }
            var utf8: UnsafeMutablePointer<UInt8>?
            let length = ASN1_STRING_to_UTF8(&utf8, data)
            if length >= 0, let utf8 {
                values.append(String(decoding: UnsafeBufferPointer(start: utf8, count: Int(length)), as: UTF8.self))
                upkeep_OPENSSL_free(utf8)
            }
        }
        ERR_clear_error()
        return values
    }

    /// The serial number in upper-case hex without separators, as `openssl x509 -serial` prints it.
    public var serialHex: String {
        guard let serial = X509_get0_serialNumber(pointer),
              let number = ASN1_INTEGER_to_BN(serial, nil) else { return "" }
        defer { BN_free(number) }
        guard let hex = BN_bn2hex(number) else { return "" }
        defer { upkeep_OPENSSL_free(hex) }
        return String(cString: hex)
    }

    /// Start of validity (second precision).
    public var notBefore: Date { Certificate.date(X509_get0_notBefore(pointer)) }
    /// End of validity (second precision).
    public var notAfter: Date { Certificate.date(X509_get0_notAfter(pointer)) }

    private static func date(_ time: UnsafePointer<ASN1_TIME>?) -> Date {
        var parts = tm()
        guard let time, ASN1_TIME_to_tm(time, &parts) == 1 else { return .distantPast }
        return Date(timeIntervalSince1970: TimeInterval(timegm(&parts)))
    }

    /// Uniform Resource Identifier subject alternative names, in certificate order.
    public var uriSANs: [String] { subjectAlternativeNames.compactMap { if case let .uri(v) = $0 { v } else { nil } } }
    /// DNS subject alternative names, in certificate order.
    public var dnsSANs: [String] { subjectAlternativeNames.compactMap { if case let .dns(v) = $0 { v } else { nil } } }
    /// IP subject alternative names as text (IPv4 dotted, IPv6 RFC 5952), in certificate order.
    public var ipSANs: [String] { subjectAlternativeNames.compactMap { if case let .ip(v) = $0 { v } else { nil } } }

    /// One subject alternative name of a kind Upkeep reads.
    public enum SubjectAlternativeName: Hashable, Sendable, CustomStringConvertible {
        case dns(String), ip(String), uri(String), email(String)
        /// Another kind (directory name, other name, ...), by OpenSSL's GEN_* number.
        case other(kind: Int32)

        /// `openssl x509 -text` style: "DNS:x", "IP Address:1.2.3.4", "URI:...".
        public var description: String {
            switch self {
            case let .dns(value): "DNS:\(value)"
            case let .ip(value): "IP Address:\(value)"
            case let .uri(value): "URI:\(value)"
            case let .email(value): "email:\(value)"
            case let .other(kind): "other:\(kind)"
            }
        }
    }

    /// All subject alternative names, in certificate order.
    public var subjectAlternativeNames: [SubjectAlternativeName] {
        guard let raw = X509_get_ext_d2i(pointer, NID_subject_alt_name, nil, nil) else {
            ERR_clear_error()
            return []
        }
        return Certificate.decode(generalNames: OpaquePointer(raw))
    }

    /// The entries of a `GENERAL_NAMES` stack, which this call frees.
    static func decode(generalNames names: OpaquePointer) -> [SubjectAlternativeName] {
        defer { GENERAL_NAMES_free(names) }
        var result: [SubjectAlternativeName] = []
        for index in 0..<OPENSSL_sk_num(names) {
            guard let general = OPENSSL_sk_value(names, index) else { continue }
            var kind: Int32 = 0
            let value = GENERAL_NAME_get0_value(general.assumingMemoryBound(to: GENERAL_NAME.self), &kind)
            let bytes = value.map { Certificate.bytes(of: $0.assumingMemoryBound(to: ASN1_STRING.self)) } ?? []
            switch kind {
            case GEN_DNS: result.append(.dns(String(decoding: bytes, as: UTF8.self)))
            case GEN_URI: result.append(.uri(String(decoding: bytes, as: UTF8.self)))
            case GEN_EMAIL: result.append(.email(String(decoding: bytes, as: UTF8.self)))
            case GEN_IPADD: result.append(.ip(IPAddressText.format(bytes)))
            default: result.append(.other(kind: kind))
            }
        }
        return result
    }

    private static func bytes(of string: UnsafeMutablePointer<ASN1_STRING>) -> [UInt8] {
        let length = Int(ASN1_STRING_length(string))
        guard length > 0, let data = ASN1_STRING_get0_data(string) else { return [] }
        return Array(UnsafeBufferPointer(start: data, count: length))
    }

    /// True when basicConstraints says CA:TRUE.
    public var isCA: Bool { X509_get_extension_flags(pointer) & UInt32(EXFLAG_CA) != 0 }

    /// SHA-256 of the DER encoding, upper-case hex bytes joined by ':', as
    /// `openssl x509 -fingerprint -sha256` prints it.
    public var sha256Fingerprint: String {
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        guard X509_digest(pointer, EVP_sha256(), &digest, &length) == 1 else { return "" }
        return digest.prefix(Int(length)).map { hexByte($0) }.joined(separator: ":")
    }

    /// SHA-256 of the DER SubjectPublicKeyInfo, lowercase hex: what kubeadm's
    /// `--discovery-token-ca-cert-hash sha256:…` pins, and `upkeep-agent join --ca-hash` too
    /// (`CAHash`). It survives re-signing the certificate with the same key. The same digits as
    /// `openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256`.
    public var subjectPublicKeyInfoSHA256: String {
        guard let publicKey = X509_get_X509_PUBKEY(pointer) else { return "" }
        let length = i2d_X509_PUBKEY(publicKey, nil)
        guard length > 0 else { ERR_clear_error(); return "" }
        var bytes = [UInt8](repeating: 0, count: Int(length))
        let written = bytes.withUnsafeMutableBufferPointer { buffer -> Int32 in
            var cursor = buffer.baseAddress
            return i2d_X509_PUBKEY(publicKey, &cursor)
        }
        return written == length ? SHA256.hex(bytes) : ""
    }

    /// True when `key` is this certificate's private key.
    public func matches(_ key: PrivateKey) -> Bool {
        defer { ERR_clear_error() }
        return X509_check_private_key(pointer, key.pointer) == 1
    }

    /// True when `issuer`'s key signed this certificate (the signature alone; no validity or
    /// chain policy is checked).
    public func isSigned(by issuer: Certificate) -> Bool {
        defer { ERR_clear_error() }
        guard let key = X509_get0_pubkey(issuer.pointer) else { return false }
        return X509_verify(pointer, key) == 1
    }
}

private func hexByte(_ byte: UInt8) -> String {
    let digits = Array("0123456789ABCDEF")
    return String([digits[Int(byte >> 4)], digits[Int(byte & 0x0F)]])
}

/// Converts IP addresses between text and the 4- or 16-byte form certificates carry.
enum IPAddressText {
    static func format(_ bytes: [UInt8]) -> String {
        let family: Int32
        switch bytes.count {
        case 4: family = AF_INET
        case 16: family = AF_INET6
        default: return bytes.map { hexByte($0) }.joined()
        }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let ok = bytes.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &text, socklen_t(text.count)) } != nil
        return ok ? String(nulTerminated: text) : bytes.map { hexByte($0) }.joined()
    }

    /// The address's bytes, or nil when `text` is not an IPv4 or IPv6 address.
    static func parse(_ text: String) -> [UInt8]? {
        var v4 = [UInt8](repeating: 0, count: 4)
        if inet_pton(AF_INET, text, &v4) == 1 { return v4 }
        var v6 = [UInt8](repeating: 0, count: 16)
        if inet_pton(AF_INET6, text, &v6) == 1 { return v6 }
        return nil
    }
}
