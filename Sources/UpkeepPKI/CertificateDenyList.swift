#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Certificates refused in the TLS handshake although the cluster CA signed them and they have
/// not expired: those `upkeep pki revoke NODE` named (docs/pki.md, "Revocation").
///
/// Entries are SHA-256 fingerprints of the whole certificate (the text `openssl x509
/// -fingerprint -sha256` prints), so revoking one certificate of a node never refuses the next
/// one issued to it. The file is text, one entry a line: `<fingerprint> <identity> <when>`;
/// `#` starts a comment. Parsing never touches the file system; the controller reads and
/// writes the file.
public struct CertificateDenyList: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        /// Upper-case colon-separated hex, as `Certificate.sha256Fingerprint`.
        public var fingerprint: String
        /// The identity the certificate named, e.g. `upkeep://agent/node-1` (for people).
        public var identity: String
        /// When it was revoked, ISO 8601 (for people).
        public var revokedAt: String

        public init(fingerprint: String, identity: String, revokedAt: String) {
            self.fingerprint = fingerprint
            self.identity = identity
            self.revokedAt = revokedAt
        }
    }

    public private(set) var entries: [Entry]
    private var fingerprints: Set<String>

    /// At most this many entries: a cluster's worth of nodes revoked many times over.
    public static let entriesMax = 100_000

    public static let empty = CertificateDenyList(entries: [])

    public init(entries: [Entry]) {
        self.entries = entries
        fingerprints = Set(entries.map(\.fingerprint))
    }

    public func contains(_ certificate: Certificate) -> Bool { fingerprints.contains(certificate.sha256Fingerprint) }

    public func contains(fingerprint: String) -> Bool { fingerprints.contains(fingerprint.uppercased()) }

    /// Adds `certificate` under `identity`; false when it was already there.
    public mutating func add(_ certificate: Certificate, identity: String, revokedAt: String) -> Bool {
        let fingerprint = certificate.sha256Fingerprint
        guard !fingerprints.contains(fingerprint) else { return false }
        entries.append(Entry(fingerprint: fingerprint, identity: identity, revokedAt: revokedAt))
        fingerprints.insert(fingerprint)
        return true
    }

    /// The file's text.
    public var text: String {
        "# Certificates the Upkeep controller refuses (upkeep pki revoke); one a line: SHA-256 fingerprint, identity, when.\n"
            + entries.map { "\($0.fingerprint) \($0.identity) \($0.revokedAt)\n" }.joined()
    }

    /// Reads the file's text; `source` names it in errors.
    public static func parse(_ text: String, source: String) throws(CertificateDenyListError) -> CertificateDenyList {
        var entries: [Entry] = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let content = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let fields = content.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard !fields.isEmpty else { continue }
            let fingerprint = fields[0].uppercased()
            let hex = fingerprint.split(separator: ":")
            guard hex.count == 32, hex.allSatisfy({ $0.count == 2 && $0.allSatisfy(\.isHexDigit) }) else {
                throw .malformed(source: source, line: index + 1,
                                 problem: "\"\(fields[0])\" is not a SHA-256 fingerprint (32 colon-separated hex bytes)")
            }
            guard entries.count < entriesMax else {
                throw .malformed(source: source, line: index + 1, problem: "more than \(entriesMax) entries")
            }
            entries.append(Entry(fingerprint: fingerprint, identity: fields.count > 1 ? String(fields[1]) : "?",
                                 revokedAt: fields.count > 2 ? String(fields[2]) : "?"))
        }
        return CertificateDenyList(entries: entries)
    }

    /// Reads `path`; a file that does not exist is an empty list (nothing was ever revoked).
    public static func load(path: String) throws -> CertificateDenyList {
        var status = stat()
        if stat(path, &status) != 0, errno == ENOENT { return .empty }
        return try parse(try PEMFile.contents(path), source: path)
    }
}

/// The deny list file cannot be used; the controller refuses to dial with a list it cannot read.
public enum CertificateDenyListError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformed(source: String, line: Int, problem: String)

    public var description: String {
        switch self {
        case let .malformed(source, line, problem):
            return "\(source):\(line): \(problem); fix or remove the line (`upkeep pki revoke` writes this file)"
        }
    }
}
