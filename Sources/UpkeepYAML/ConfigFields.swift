import Yams

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

    public var description: String {
        let location = [file, line.map(String.init)].compactMap { $0 }.joined(separator: ":")
        return location.isEmpty ? "\(field): \(problem)" : "\(location): \(field): \(problem)"
    }
}

/// One YAML mapping of a configuration file, read strictly field by field: wrong types,
/// out-of-range values and unknown fields are errors carrying the dotted path and line.
public struct ConfigFields {
    let mapping: Node.Mapping
    public let path: String
    public let file: String?
    let line: Int?

    public init?(_ node: Node, path: String, file: String?) {
        guard let mapping = node.mapping else { return nil }
        self.mapping = mapping
        self.path = path
        self.file = file
        line = node.mark.map { $0.line }
    }

    /// The document of `text` as its top-level mapping, or an error saying what the file must be.
    ///
    /// Composed with Yams's `basic` resolver: every scalar stays a string and the typed accessors
    /// below read it themselves. The default resolver compiles seven `NSRegularExpression`s, which
    /// starts ICU; for the agent that alone kept about 1.3 MiB of ICU code resident while idle.
    public static func document(_ text: String, file: String?, expecting: String) throws(ConfigError) -> ConfigFields {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text, .basic, .default, .utf8)
        } catch {
            throw ConfigError(file: file, line: nil, field: "(yaml)", problem: "is not valid YAML: \(error)")
        }
        guard let root, let top = ConfigFields(root, path: "", file: file) else {
            throw ConfigError(file: file, line: nil, field: "(document)", problem: "must be a mapping \(expecting)")
        }
        return top
    }

    public func has(_ key: String) -> Bool { mapping[key] != nil }

    public func name(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    public func error(_ key: String, _ problem: String) -> ConfigError {
        ConfigError(file: file, line: mapping[key]?.mark?.line ?? line, field: name(key), problem: problem)
    }

    public func section(_ key: String) throws(ConfigError) -> ConfigFields? {
        guard let node = mapping[key], !isNull(node) else { return nil }
        guard let fields = ConfigFields(node, path: name(key), file: file) else {
            throw error(key, "must be a mapping of fields")
        }
        return fields
    }

    /// A string; `null` / `~` counts as absent.
    public func string(_ key: String) throws(ConfigError) -> String? {
        guard let node = mapping[key], !isNull(node) else { return nil }
        guard node.scalar != nil, let text = node.string else { throw error(key, "must be a string") }
        return text
    }

    /// An absolute path.
    public func path(_ key: String) throws(ConfigError) -> String? {
        guard let text = try string(key) else { return nil }
        guard text.hasPrefix("/") else { throw error(key, "must be an absolute path; is \"\(text)\"") }
        return text
    }

    public func int(_ key: String, in range: ClosedRange<Int>) throws(ConfigError) -> Int? {
        guard let node = mapping[key], !isNull(node) else { return nil }
        // Decimal digits only, read by the standard library (Yams's integer reading would also
        // take 0x/0o/underscore forms, and runs Foundation's string search to do so).
        guard let scalar = node.scalar, let value = Int(scalar.string) else {
            throw error(key, "must be a whole number in \(range.lowerBound)...\(range.upperBound); is \"\(node.string ?? "a non-scalar")\"")
        }
        guard range.contains(value) else {
            throw error(key, "must be in \(range.lowerBound)...\(range.upperBound); is \(value)")
        }
        return value
    }

    /// A list of strings (a YAML sequence of scalars); `null` counts as absent.
    public func strings(_ key: String, countMax: Int = 100) throws(ConfigError) -> [String]? {
        guard let node = mapping[key], !isNull(node) else { return nil }
        guard let sequence = node.sequence else { throw error(key, "must be a list, e.g. [\"Sat 02:00-06:00\"]") }
        guard sequence.count <= countMax else { throw error(key, "holds \(sequence.count) items; at most \(countMax)") }
        var items: [String] = []
        for item in sequence {
            guard item.scalar != nil, let text = item.string else { throw error(key, "must hold only strings") }
            items.append(text)
        }
        return items
    }

    /// A boolean: a plain (unquoted) YAML 1.1 boolean, as the default resolver would tag it.
    public func bool(_ key: String) throws(ConfigError) -> Bool? {
        guard let node = mapping[key], !isNull(node) else { return nil }
        guard let scalar = node.scalar, scalar.style == .plain, let value = YAML11Scalars.boolean(scalar.string) else {
            throw error(key, "must be true or false; is \"\(node.string ?? "a non-scalar")\"")
        }
        return value
    }

    public func rejectUnknown(_ known: Set<String>) throws(ConfigError) {
        for (key, _) in mapping {
            guard let name = key.string, known.contains(name) else {
                let text = key.string ?? "a non-string key"
                throw ConfigError(file: file, line: key.mark?.line ?? line, field: self.name(text),
                                  problem: "is not a known field; known here: \(known.sorted().joined(separator: ", "))")
            }
        }
    }

    private func isNull(_ node: Node) -> Bool {
        guard let scalar = node.scalar, scalar.style == .plain else { return false }
        return YAML11Scalars.isNull(scalar.string)
    }
}
