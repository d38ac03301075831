#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A certificate described for people: the fields `upkeep pki show` prints, in order.
///
/// Pure: the clock is an argument. It never shows key material.
public struct CertificateSummary: Sendable, Equatable {
    /// (label, value) rows.
    public let fields: [(label: String, value: String)]

    public init(_ certificate: Certificate, now: Date) {
        var fields: [(String, String)] = [("Subject", certificate.subject), ("Issuer", certificate.issuer)]
        do {
            let identity = try PeerIdentity.from(certificate)
            fields.append(("Role", identity.role.rawValue))
            fields.append((identity.role == .agent ? "Node" : "Name", identity.name))
        } catch PeerIdentityError.noIdentityURI {
            fields.append(("Role", certificate.isCA ? "none (CA certificate)" : "none (no upkeep:// identity)"))
        } catch {
            fields.append(("Role", "invalid: \(error)"))
        }
        let names = certificate.subjectAlternativeNames.map(\.description)
        fields.append(("SANs", names.isEmpty ? "none" : names.joined(separator: ", ")))
        fields.append(("Not before", certificate.notBefore.formatted(.iso8601)))
        fields.append(("Not after", certificate.notAfter.formatted(.iso8601)))
        fields.append(("Validity", CertificateSummary.validity(notBefore: certificate.notBefore,
                                                               notAfter: certificate.notAfter, now: now)))
        fields.append(("Serial", certificate.serialHex))
        fields.append(("SHA-256", certificate.sha256Fingerprint))
        fields.append(("CA", certificate.isCA ? "yes" : "no"))
        self.fields = fields
    }

    /// The rows as aligned "Label:  value" lines, each ending in a newline.
    public var text: String {
        let width = (fields.map(\.label.count).max() ?? 0) + 2
        return fields.map { label, value in
            Self.padded(label + ":", to: width) + value + "\n"
        }.joined()
    }

    /// `text` with spaces after it up to `width` characters.
    static func padded(_ text: String, to width: Int) -> String {
        text + String(repeating: " ", count: max(0, width - text.count))
    }

    /// "valid for N days", "expired N days ago" or "not yet valid (starts in N days)"; spans
    /// under a day are given in hours, under an hour in minutes, rounded down.
    public static func validity(notBefore: Date, notAfter: Date, now: Date) -> String {
        if now < notBefore { return "not yet valid (starts in \(span(notBefore.timeIntervalSince(now))))" }
        if now >= notAfter { return "expired \(span(now.timeIntervalSince(notAfter))) ago" }
        return "valid for \(span(notAfter.timeIntervalSince(now)))"
    }

    private static func span(_ seconds: TimeInterval) -> String {
        let (count, unit): (Int, String) = switch seconds {
        case 86_400...: (Int(seconds / 86_400), "day")
        case 3_600...: (Int(seconds / 3_600), "hour")
        default: (Int(seconds / 60), "minute")
        }
        return "\(count) \(unit)\(count == 1 ? "" : "s")"
    }

    public static func == (lhs: CertificateSummary, rhs: CertificateSummary) -> Bool {
        lhs.fields.elementsEqual(rhs.fields) { $0.label == $1.label && $0.value == $1.value }
    }
}
