/// One node of a YAML document as Upkeep's configuration readers see it: every scalar is text
/// (with its style, so that a quoted `"true"` stays text), mappings keep document order, and each
/// node knows the line it starts on for error messages.
public struct YAMLNode: Sendable, Equatable {
    public enum ScalarStyle: Sendable, Equatable {
        case plain, singleQuoted, doubleQuoted, literal, folded
    }

    public struct Entry: Sendable, Equatable {
        public var key: YAMLNode
        public var value: YAMLNode

        public init(key: YAMLNode, value: YAMLNode) {
            self.key = key
            self.value = value
        }
    }

    public enum Content: Sendable, Equatable {
        case scalar(String, ScalarStyle)
        case mapping([Entry])
        case sequence([YAMLNode])
    }

    public var content: Content
    /// 1-based line of the node's first character (a mapping's: its first key's).
    public var line: Int

    public init(_ content: Content, line: Int) {
        self.content = content
        self.line = line
    }

    /// The text of a scalar of any style; nil for collections.
    public var string: String? {
        if case .scalar(let text, _) = content { text } else { nil }
    }

    public var style: ScalarStyle? {
        if case .scalar(_, let style) = content { style } else { nil }
    }

    public var mapping: [Entry]? {
        if case .mapping(let entries) = content { entries } else { nil }
    }

    public var sequence: [YAMLNode]? {
        if case .sequence(let items) = content { items } else { nil }
    }

    /// A plain scalar spelled as YAML 1.1's null (empty, `~`, `null`).
    public var isNull: Bool {
        if case .scalar(let text, .plain) = content { YAML11Scalars.isNull(text) } else { false }
    }

    /// The value of the entry whose key is the scalar `key`.
    public subscript(key: String) -> YAMLNode? {
        mapping?.first { $0.key.string == key }?.value
    }
}
