/// A value written as one string in JSON (and anywhere else it is encoded), parsed back with
/// its own checks so a decoded value is as valid as a parsed one.
public protocol TextCodable: Codable, CustomStringConvertible {
    init(_ text: String) throws(K3sVersionError)
}

extension TextCodable {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        do {
            self = try Self(text)
        } catch {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: error.description)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
