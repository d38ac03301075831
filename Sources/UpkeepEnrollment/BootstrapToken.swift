import UpkeepPKI

/// A bootstrap token, `<id>.<secret>`: 6 and 16 characters of `[a-z0-9]`, the format of
/// kubeadm's bootstrap tokens (https://kubernetes.io/docs/reference/access-authn-authz/bootstrap-tokens/).
/// The id is public (`upkeep token list`, logs); the secret is shown once, at creation, and
/// stored by the controller only as its SHA-256. 16 characters of 36 give about 82 bits.
///
/// Never log `text` or `secret`.
public struct BootstrapToken: Equatable, Sendable {
    public let id: String
    public let secret: String

    public static let idLength = 6
    public static let secretLength = 16
    static let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789".utf8)

    /// Parses `<id>.<secret>`; throws `JoinError.malformedToken` for anything else.
    public init(parsing text: String) throws(JoinError) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].utf8.count == Self.idLength, parts[1].utf8.count == Self.secretLength,
              parts.allSatisfy({ $0.utf8.allSatisfy(Self.alphabet.contains) })
        else { throw .malformedToken }
        id = String(parts[0])
        secret = String(parts[1])
    }

    /// A fresh token from the system's cryptographic generator.
    public static func generate() -> BootstrapToken {
        var random = SystemRandomNumberGenerator()
        func draw(_ count: Int) -> String {
            String(decoding: (0..<count).map { _ in alphabet[Int(random.next(upperBound: UInt32(alphabet.count)))] }, as: UTF8.self)
        }
        // swiftlint:disable:next force_try
        return try! BootstrapToken(parsing: "\(draw(idLength)).\(draw(secretLength))")
    }

    /// The whole token, for the operator to copy to the node.
    public var text: String { "\(id).\(secret)" }

    /// What the controller stores: SHA-256 of the secret, 64 lowercase hex digits.
    public var secretSHA256: String { SHA256.hex(Array(secret.utf8)) }
}
