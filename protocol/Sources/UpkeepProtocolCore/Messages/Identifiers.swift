import UpkeepCore

/// A string with a fixed format, checked whenever one is made or decoded.
public protocol FormattedText: RawRepresentable<String>, Hashable, Sendable, Codable, CustomStringConvertible {
    static func isValid(_ text: String) -> Bool
    /// The rule, for error messages.
    static var format: String { get }
    /// Only after `isValid` said yes.
    init(validated: String)
}

extension FormattedText {
    /// Nil when `rawValue` breaks the format.
    public init?(rawValue: String) {
        guard Self.isValid(rawValue) else { return nil }
        self.init(validated: rawValue)
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard Self.isValid(text) else {
            throw MessageError.invalid("\"\(text.prefix(140))\" is not \(Self.format)")
        }
        self.init(validated: text)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }

    public var description: String { rawValue }
}

/// Names one mutating operation. The agent records each id with its outcome; a request that
/// repeats a finished id gets the recorded result and does nothing again, so a retry after a
/// lost response is always safe. 1...128 characters from `A-Z a-z 0-9 . _ : -`.
public struct OperationID: FormattedText, ExpressibleByStringLiteral {
    public let rawValue: String
    public static let format = "an operation id (1...128 characters from A-Z a-z 0-9 . _ : -)"

    public init(validated: String) { rawValue = validated }

    /// For literals in code and tests; a malformed literal is a bug.
    public init(stringLiteral value: String) {
        guard Self.isValid(value) else { preconditionFailure("malformed operation id literal \"\(value)\"") }
        rawValue = value
    }

    public static func isValid(_ text: String) -> Bool {
        (1...128).contains(text.utf8.count) && text.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"),
                 UInt8(ascii: ":"), UInt8(ascii: "-"):
                true
            default:
                false
            }
        }
    }
}

/// A SHA-256 digest written as 64 lowercase hexadecimal digits, as `sha256sum` prints it.
public struct SHA256Hex: FormattedText {
    public let rawValue: String
    public static let format = "a sha256 (64 lowercase hexadecimal digits)"

    public init(validated: String) { rawValue = validated }

    /// From the 32 raw digest bytes.
    public init(digest: some Collection<UInt8>) {
        precondition(digest.count == SHA256Text.digestBytes, "a SHA-256 digest has 32 bytes")
        rawValue = SHA256Text.lowercaseHex(digest)
    }

    /// The 32 raw digest bytes.
    public var digestBytes: [UInt8] {
        let digits = Array(rawValue.utf8).map { $0 <= UInt8(ascii: "9") ? $0 - UInt8(ascii: "0") : $0 - UInt8(ascii: "a") + 10 }
        return stride(from: 0, to: 64, by: 2).map { digits[$0] << 4 | digits[$0 + 1] }
    }

    public static func isValid(_ text: String) -> Bool { SHA256Text.isHex(text) }
}
