#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What can go wrong with keys and certificates that a caller or operator can fix.
///
/// Every case's description says what to do. Failures inside OpenSSL itself are `OpenSSLError`.
public enum PKIError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A key or certificate file could not be read.
    case fileUnreadable(path: String, reason: String)
    /// The text holds no PEM certificate. `source` is a file path or "PEM text".
    case noCertificate(source: String)
    /// The text holds no usable PEM private key (absent, encrypted or corrupt).
    case noPrivateKey(source: String)
    /// A DNS subject alternative name that is not a host name.
    case invalidDNSName(String)
    /// An IP subject alternative name that is neither IPv4 nor IPv6.
    case invalidIPAddress(String)
    /// A subject field (common name, organization) that is empty or too long.
    case invalidSubjectField(field: String, value: String)
    /// notAfter is not after notBefore.
    case invalidValidity(notBefore: Date, notAfter: Date)
    /// The private key does not belong to the certificate.
    case keyDoesNotMatchCertificate(certificate: String)
    /// The certificate is not a CA certificate (no basicConstraints CA:TRUE).
    case notACertificateAuthority(subject: String)
    /// The text holds no PEM public key of a kind Upkeep verifies with (Ed25519, ECDSA P-256).
    case noPublicKey(source: String)

    public var description: String {
        switch self {
        case let .fileUnreadable(path, reason):
            return "cannot read \(path): \(reason)"
        case let .noCertificate(source):
            return "\(source) holds no PEM certificate (expected a '-----BEGIN CERTIFICATE-----' block)"
        case let .noPrivateKey(source):
            return "\(source) holds no usable PEM private key (expected an unencrypted "
                + "'-----BEGIN PRIVATE KEY-----' block; encrypted keys are not supported)"
        case let .invalidDNSName(name):
            return "'\(name)' is not a valid DNS name (use letters, digits, '-' and '.', optionally a leading '*.')"
        case let .invalidIPAddress(address):
            return "'\(address)' is not an IPv4 or IPv6 address"
        case let .invalidSubjectField(field, value):
            return "'\(value)' is not a valid \(field) (must be 1 to 64 characters)"
        case let .invalidValidity(notBefore, notAfter):
            return "validity ends (\(notAfter)) before it starts (\(notBefore)); ask for at least one day"
        case let .keyDoesNotMatchCertificate(certificate):
            return "the private key does not belong to the certificate \(certificate); use the key issued with it"
        case let .notACertificateAuthority(subject):
            return "the certificate \(subject) is not a CA certificate; use the CA certificate made by 'upkeep pki init'"
        case let .noPublicKey(source):
            return "\(source) holds no Ed25519 or ECDSA P-256 public key (expected a '-----BEGIN PUBLIC KEY-----' block, "
                + "as `openssl pkey -in KEY -pubout` writes)"
        }
    }
}
