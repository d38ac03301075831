/// What an Upkeep peer is: the controller, the agent on one node, or a person reading
/// `upkeep serve`'s status API from elsewhere (docs/serve.md). An operator certificate opens
/// nothing else: agents accept controllers only, serve's API operators only.
public enum PeerRole: String, Sendable, Codable, CaseIterable {
    case controller, agent, `operator`
}

/// Who a peer is, as its certificate states it.
///
/// An identity certificate carries exactly one URI subject alternative name with the scheme
/// `upkeep`: `upkeep://agent/<node>` for the agent on node `<node>`, or
/// `upkeep://controller/<name>` for a controller (default name `controller`), or
/// `upkeep://operator/<name>` for a person reading `upkeep serve`'s status API. The name is a
/// Kubernetes node name, i.e. a DNS-1123 subdomain: lower-case letters, digits, '-' and '.',
/// starting and ending with a letter or digit, at most 253 characters. The URI has no port,
/// path beyond the name, query or fragment, and is compared byte for byte.
///
/// The subject CN repeats the name for humans and logs; it is never used for authorization.
public struct PeerIdentity: Hashable, Sendable, Codable, CustomStringConvertible {
    public let role: PeerRole
    /// The node name for agents; the controller's name for controllers.
    public let name: String

    /// The URI scheme that marks an identity subject alternative name.
    public static let uriScheme = "upkeep"

    /// Validates `name` as a DNS-1123 subdomain.
    public init(role: PeerRole, name: String) throws {
        if let reason = PeerIdentity.problem(with: name) {
            throw PeerIdentityError.invalidName(name, reason: reason)
        }
        self.role = role
        self.name = name
    }

    /// Parses "upkeep://agent/<node>", "upkeep://controller/<name>" or "upkeep://operator/<name>" exactly; nil for anything else.
    public init?(uri: String) {
        let prefix = "\(PeerIdentity.uriScheme)://"
        guard uri.hasPrefix(prefix) else { return nil }
        let rest = uri.dropFirst(prefix.count)
        guard let slash = rest.firstIndex(of: "/"),
              let role = PeerRole(rawValue: String(rest[..<slash])),
              let identity = try? PeerIdentity(role: role, name: String(rest[rest.index(after: slash)...]))
        else { return nil }
        self = identity
    }

    /// The identity as its URI subject alternative name.
    public var uri: String { "\(PeerIdentity.uriScheme)://\(role.rawValue)/\(name)" }

    /// The longest subject CN X.509 allows (ub-common-name, RFC 5280 appendix A.1).
    public static let commonNameMax = 64

    /// The subject CN of its certificate: the name, cut to `commonNameMax` characters when it is
    /// longer (a node name may have 253); only the URI, which carries the whole name, is read.
    public var commonName: String { String(name.prefix(Self.commonNameMax)) }

    public var description: String { uri }

    /// The identity a certificate states. Refuses certificates with no `upkeep:` URI, with more
    /// than one, or with one that does not parse; it does not check the chain or validity.
    public static func from(_ certificate: Certificate) throws -> PeerIdentity {
        try from(uris: certificate.uriSANs, subject: certificate.subject)
    }

    /// The identity stated by the URI subject alternative names of a certificate or a request.
    static func from(uris: [String], subject: String) throws -> PeerIdentity {
        let candidates = uris.filter {
            $0.lowercased().hasPrefix("\(uriScheme):")
        }
        guard let only = candidates.first else {
            throw PeerIdentityError.noIdentityURI(subject: subject)
        }
        guard candidates.count == 1 else {
            throw PeerIdentityError.multipleIdentityURIs(candidates)
        }
        guard let identity = PeerIdentity(uri: only) else {
            throw PeerIdentityError.malformedIdentityURI(only)
        }
        return identity
    }

    /// Why `name` is not a DNS-1123 subdomain, or nil when it is one.
    static func problem(with name: String) -> String? {
        if name.isEmpty { return "it is empty" }
        if name.utf8.count > 253 { return "it is longer than 253 characters" }
        for label in name.split(separator: ".", omittingEmptySubsequences: false) {
            guard let first = label.utf8.first, let last = label.utf8.last else {
                return "it has an empty label (two dots in a row, or a leading or trailing dot)"
            }
            if !label.utf8.allSatisfy({ isLowerAlphanumeric($0) || $0 == UInt8(ascii: "-") }) {
                return "it may only contain lower-case letters, digits, '-' and '.'"
            }
            if !isLowerAlphanumeric(first) || !isLowerAlphanumeric(last) {
                return "each part between dots must start and end with a lower-case letter or digit"
            }
        }
        return nil
    }

    private static func isLowerAlphanumeric(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
    }

    private enum CodingKeys: String, CodingKey { case role, name }

    /// Decoding validates the name like `init(role:name:)`.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try self.init(role: container.decode(PeerRole.self, forKey: .role),
                      name: container.decode(String.self, forKey: .name))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(role, forKey: .role)
        try container.encode(name, forKey: .name)
    }
}

/// Why a name or certificate does not give a valid `PeerIdentity`.
public enum PeerIdentityError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidName(String, reason: String)
    /// The certificate has no `upkeep:` URI subject alternative name.
    case noIdentityURI(subject: String)
    /// The certificate has several `upkeep:` URIs; which one counts would be ambiguous.
    case multipleIdentityURIs([String])
    /// The certificate's `upkeep:` URI is not `upkeep://agent/<node>` or `upkeep://controller/<name>`.
    case malformedIdentityURI(String)

    public var description: String {
        switch self {
        case let .invalidName(name, reason):
            return "'\(name)' is not a valid node or controller name: \(reason) (use the Kubernetes node name, e.g. 'node-1')"
        case let .noIdentityURI(subject):
            return "the certificate \(subject) carries no upkeep:// identity; issue one with 'upkeep pki issue'"
        case let .multipleIdentityURIs(uris):
            return "the certificate carries several upkeep identities (\(uris.joined(separator: ", "))); "
                + "an identity certificate must name exactly one, reissue it with 'upkeep pki issue'"
        case let .malformedIdentityURI(uri):
            return "'\(uri)' is not upkeep://agent/<node>, upkeep://controller/<name> or upkeep://operator/<name>; reissue the certificate with 'upkeep pki issue'"
        }
    }
}
