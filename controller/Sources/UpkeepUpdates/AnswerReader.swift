import UpkeepKube

/// Reads one JSON object of an answer, turning every missing or mistyped field into an
/// `AnswerError` that names the field's path.
struct AnswerReader {
    let members: [String: JSON]
    let path: String
    let source: String

    init(_ value: JSON, path: String, source: String) throws(AnswerError) {
        guard let members = value.object else {
            throw AnswerError(source: source, location: path, problem: "expected an object, found \(Self.kind(value))")
        }
        self.members = members
        self.path = path
        self.source = source
    }

    static func parse(_ bytes: [UInt8], source: String) throws(AnswerError) -> JSON {
        do {
            return try JSON.parse(bytes: bytes)
        } catch {
            let preview = String(decoding: bytes.prefix(60), as: UTF8.self).replacingControlCharacters
            throw AnswerError(source: source, problem: "not JSON (\(error)); it starts with \"\(preview)\"")
        }
    }

    static func kind(_ value: JSON) -> String {
        switch value {
        case .null: "null"
        case .bool: "a boolean"
        case .int, .double: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }

    func error(_ key: String, _ problem: String) -> AnswerError {
        AnswerError(source: source, location: "\(path).\(key)", problem: problem)
    }

    func string(_ key: String) throws(AnswerError) -> String {
        guard let value = members[key] else { throw error(key, "missing") }
        guard let text = value.string else { throw error(key, "expected a string, found \(Self.kind(value))") }
        return text
    }

    /// Absent and null both read as nil.
    func optionalString(_ key: String) throws(AnswerError) -> String? {
        guard let value = members[key], !value.isNull else { return nil }
        guard let text = value.string else { throw error(key, "expected a string or null, found \(Self.kind(value))") }
        return text
    }

    func bool(_ key: String) throws(AnswerError) -> Bool {
        guard let value = members[key] else { throw error(key, "missing") }
        guard let flag = value.bool else { throw error(key, "expected true or false, found \(Self.kind(value))") }
        return flag
    }

    func integer(_ key: String) throws(AnswerError) -> Int64 {
        guard let value = members[key] else { throw error(key, "missing") }
        guard let number = value.int else { throw error(key, "expected an integer, found \(Self.kind(value))") }
        return number
    }

    func array(_ key: String) throws(AnswerError) -> [JSON] {
        guard let value = members[key] else { throw error(key, "missing") }
        guard let items = value.array else { throw error(key, "expected an array, found \(Self.kind(value))") }
        return items
    }
}

extension StringProtocol {
    /// Control characters shown as `?`, so an error message stays one readable line.
    var replacingControlCharacters: String {
        String(unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : Character($0) })
    }
}
