/// A configuration problem, naming the file, line and field, and what to write instead.
public struct ConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    public var file: String?
    public var line: Int?
    public var field: String
    public var problem: String

    public init(file: String?, line: Int?, field: String, problem: String) {
        self.file = file
        self.line = line
        self.field = field
        self.problem = problem
    }

    /// The problem names what the file holds; its control characters (a terminal's escape
    /// sequences, NUL, a carriage return) are shown escaped, never written to the terminal.
    public var description: String {
        let location = [file, line.map(String.init)].compactMap { $0 }.joined(separator: ":")
        let text = location.isEmpty ? "\(field): \(problem)" : "\(location): \(field): \(problem)"
        return Self.escaped(text)
    }

    /// `text` with each control character (C0, DEL, C1) as `\u{XX}`.
    public static func escaped(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: isControl) else { return text }
        var result = ""
        for scalar in text.unicodeScalars {
            if isControl(scalar) {
                result += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
        return result
    }

    private static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value)
    }
}

/// One YAML mapping of a configuration file, read strictly field by field: wrong types,
/// out-of-range values and unknown fields are errors carrying the dotted path and line.
public struct ConfigFields {
    let node: YAMLNode
    public let path: String
    public let file: String?
    let line: Int?

    public init?(_ node: YAMLNode, path: String, file: String?) {
        guard node.mapping != nil else { return nil }
        self.node = node
        self.path = path
        self.file = file
        line = node.line
    }

    /// The document of `text` as its top-level mapping, or an error saying what the file must be.
    ///
    /// Read by `YAMLReader`: every scalar stays text and the typed accessors below read it
    /// themselves (Yams would bring full Foundation, CoreFoundation and ICU into the agent).
    public static func document(_ text: String, file: String?, expecting: String) throws(ConfigError) -> ConfigFields {
        let root: YAMLNode?
        do {
            root = try YAMLReader.document(text)
        } catch {
            throw ConfigError(file: file, line: error.line, field: "(yaml)", problem: "is not valid YAML: \(error)")
        }
        guard let root, let top = ConfigFields(root, path: "", file: file) else {
            throw ConfigError(file: file, line: nil, field: "(document)", problem: "must be a mapping \(expecting)")
        }
        return top
    }

    public func has(_ key: String) -> Bool { node[key] != nil }

    public func name(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    public func error(_ key: String, _ problem: String) -> ConfigError {
        ConfigError(file: file, line: node[key]?.line ?? line, field: name(key), problem: problem)
    }

    public func section(_ key: String) throws(ConfigError) -> ConfigFields? {
        guard let node = self.node[key], !node.isNull else { return nil }
        guard let fields = ConfigFields(node, path: name(key), file: file) else {
            throw error(key, "must be a mapping of fields")
        }
        return fields
    }

    /// A list of mappings (`notifications:`), each read as fields named `key[1]`, `key[2]`, …;
    /// `null` counts as absent.
    public func sections(_ key: String, countMax: Int) throws(ConfigError) -> [ConfigFields]? {
        guard let node = self.node[key], !node.isNull else { return nil }
        guard let sequence = node.sequence else { throw error(key, "must be a list of mappings, each starting with `- `") }
        guard sequence.count <= countMax else { throw error(key, "holds \(sequence.count) items; at most \(countMax)") }
        var items: [ConfigFields] = []
        for (index, item) in sequence.enumerated() {
            guard let fields = ConfigFields(item, path: "\(name(key))[\(index + 1)]", file: file) else {
                throw ConfigError(file: file, line: item.line, field: "\(name(key))[\(index + 1)]", problem: "must be a mapping of fields")
            }
            items.append(fields)
        }
        return items
    }

    /// The line of the field `key` (else of this mapping), for errors found after reading.
    public func line(of key: String) -> Int? { node[key]?.line ?? line }

    /// A string; `null` / `~` counts as absent.
    public func string(_ key: String) throws(ConfigError) -> String? {
        guard let node = self.node[key], !node.isNull else { return nil }
        guard let text = node.string else { throw error(key, "must be a string") }
        return text
    }

    /// An absolute path.
    public func path(_ key: String) throws(ConfigError) -> String? {
        guard let text = try string(key) else { return nil }
        guard text.hasPrefix("/") else { throw error(key, "must be an absolute path; is \"\(text)\"") }
        return text
    }

    public func int(_ key: String, in range: ClosedRange<Int>) throws(ConfigError) -> Int? {
        guard let node = self.node[key], !node.isNull else { return nil }
        // Decimal digits only (no 0x/0o/underscore forms), read by the standard library.
        guard let text = node.string, let value = Int(text) else {
            throw error(key, "must be a whole number in \(range.lowerBound)...\(range.upperBound); is \"\(node.string ?? "a non-scalar")\"")
        }
        guard range.contains(value) else {
            throw error(key, "must be in \(range.lowerBound)...\(range.upperBound); is \(value)")
        }
        return value
    }

    /// A duration in seconds: a whole number of seconds, or a count with a unit (`90s`, `10m`,
    /// `2h`, `1d`), within `range` seconds.
    public func duration(_ key: String, in range: ClosedRange<Int>) throws(ConfigError) -> Int? {
        guard let node = self.node[key], !node.isNull else { return nil }
        guard let text = node.string, let seconds = DurationText.seconds(text) else {
            throw error(key, "must be a duration such as 90s, 10m, 2h or 1d (or whole seconds); is \"\(node.string ?? "a non-scalar")\"")
        }
        guard range.contains(seconds) else {
            throw error(key, "must be \(DurationText.text(range.lowerBound))...\(DurationText.text(range.upperBound)); is \(text)")
        }
        return seconds
    }

    /// A list of strings (a YAML sequence of scalars); `null` counts as absent.
    public func strings(_ key: String, countMax: Int = 100) throws(ConfigError) -> [String]? {
        guard let node = self.node[key], !node.isNull else { return nil }
        guard let sequence = node.sequence else { throw error(key, "must be a list, e.g. [\"Sat 02:00-06:00\"]") }
        guard sequence.count <= countMax else { throw error(key, "holds \(sequence.count) items; at most \(countMax)") }
        var items: [String] = []
        for item in sequence {
            guard let text = item.string else { throw error(key, "must hold only strings") }
            items.append(text)
        }
        return items
    }

    /// A boolean: a plain (unquoted) YAML 1.1 boolean, as the default resolver would tag it.
    public func bool(_ key: String) throws(ConfigError) -> Bool? {
        guard let node = self.node[key], !node.isNull else { return nil }
        guard node.style == .plain, let text = node.string, let value = YAML11Scalars.boolean(text) else {
            throw error(key, "must be true or false; is \"\(node.string ?? "a non-scalar")\"")
        }
        return value
    }

    public func rejectUnknown(_ known: Set<String>) throws(ConfigError) {
        for entry in node.mapping ?? [] {
            guard let name = entry.key.string, known.contains(name) else {
                let text = entry.key.string ?? "a non-string key"
                throw ConfigError(file: file, line: entry.key.line, field: self.name(text),
                                  problem: "is not a known field; known here: \(known.sorted().joined(separator: ", "))")
            }
        }
    }
}

/// Durations as configuration files and command lines write them: whole seconds, or a count
/// with one unit (`s`, `m`, `h`, `d`).
public enum DurationText {
    /// The seconds `text` means; nil when it is not a duration (or is negative or absurd).
    public static func seconds(_ text: String) -> Int? {
        let units: [Character: Int] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
        var digits = Substring(text)
        var scale = 1
        if let unit = text.last, let found = units[unit] {
            digits = digits.dropLast()
            scale = found
        }
        guard !digits.isEmpty, digits.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), digits.count <= 9, let count = Int(digits) else { return nil }
        return count * scale
    }

    /// `seconds` the shortest way: `90s`, `10m`, `2h`, `1d`.
    public static func text(_ seconds: Int) -> String {
        for (unit, scale) in [("d", 86_400), ("h", 3600), ("m", 60)] where seconds >= scale && seconds % scale == 0 {
            return "\(seconds / scale)\(unit)"
        }
        return "\(seconds)s"
    }
}
