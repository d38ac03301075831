#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The JSON used in control payloads: UTF-8, keys sorted, no insignificant whitespace, slashes
/// unescaped. Receivers accept any valid JSON; this canonical form is what this implementation
/// sends, so the golden vectors re-encode byte for byte.
public enum WireJSON {
    public static func encode(_ value: some Encodable) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(value))
    }

    public static func decode<T: Decodable>(_ type: T.Type, from bytes: some Collection<UInt8>) throws(MessageError) -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(bytes))
        } catch let error as MessageError {
            throw error
        } catch let DecodingError.keyNotFound(key, context) {
            throw .invalid("\(T.self): missing field \(path(context.codingPath + [key]))")
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            throw .invalid("\(T.self): wrong type at \(path(context.codingPath)): \(context.debugDescription)")
        } catch let DecodingError.dataCorrupted(context) {
            if let underlying = context.underlyingError as? MessageError { throw underlying }
            throw .invalid("\(T.self): \(context.debugDescription) at \(path(context.codingPath))")
        } catch {
            throw .invalid("\(T.self): \(error)")
        }
    }

    private static func path(_ keys: [any CodingKey]) -> String {
        keys.isEmpty ? "top level" : keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }
}

/// Why a control payload is not an acceptable message. The server answers these with
/// `badRequest` (or `notImplemented` for an unknown method) and keeps the connection.
public enum MessageError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Not valid JSON, or a field is missing, has the wrong type, or breaks a documented rule.
    case invalid(String)
    /// The request names a method this side does not know.
    case unknownMethod(String)

    public var description: String {
        switch self {
        case .invalid(let detail): "invalid message: \(detail)"
        case .unknownMethod(let name):
            "unknown method \"\(name)\" (known: \(Method.allCases.map(\.rawValue).joined(separator: ", "))): upgrade the agent"
        }
    }
}
