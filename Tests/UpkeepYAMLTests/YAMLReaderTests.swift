import Testing
import UpkeepCore
import UpkeepYAML
import Yams

/// `YAMLReader` against libyaml (through Yams, composing with its basic resolver so that every
/// scalar stays text): the same trees, styles and lines for the documents Upkeep reads, for
/// generated documents in every style the reader supports, and clear errors for what it refuses.
@Suite struct YAMLReaderTests {
    // MARK: reference

    /// libyaml's tree in YAMLNode's shape, or nil for an empty stream.
    static func reference(_ text: String) throws -> YAMLNode? {
        try Yams.compose(yaml: text, .basic, .default, .utf8).map(convert)
    }

    static func convert(_ node: Node) -> YAMLNode {
        switch node {
        case .scalar(let scalar):
            let style: YAMLNode.ScalarStyle = switch scalar.style {
            case .singleQuoted: .singleQuoted
            case .doubleQuoted: .doubleQuoted
            case .literal: .literal
            case .folded: .folded
            default: .plain
            }
            return YAMLNode(.scalar(scalar.string, style), line: scalar.mark?.line ?? 0)
        case .mapping(let mapping):
            return YAMLNode(.mapping(mapping.map { YAMLNode.Entry(key: convert($0.key), value: convert($0.value)) }), line: mapping.mark?.line ?? 0)
        case .sequence(let sequence):
            return YAMLNode(.sequence(sequence.map(convert)), line: sequence.mark?.line ?? 0)
        case .alias:
            Issue.record("the reference documents hold no aliases")
            return YAMLNode(.scalar("", .plain), line: 0)
        }
    }

    /// The tree as text: content and styles, with lines where both readers agree they matter
    /// (libyaml gives an empty scalar the position of whatever follows it).
    static func render(_ node: YAMLNode?, lines: Bool = true) -> String {
        guard let node else { return "(none)" }
        let at = lines ? "@\(node.line)" : ""
        switch node.content {
        case .scalar(let text, let style):
            let shown = text.unicodeScalars.map { $0.isASCII && $0.value >= 32 ? String($0) : "\\u{\(String($0.value, radix: 16))}" }.joined()
            return "\(style)\"\(shown)\"" + (text.isEmpty ? "" : at)
        case .mapping(let entries):
            return "{" + entries.map { render($0.key, lines: lines) + ": " + render($0.value, lines: lines) }.joined(separator: ", ") + "}" + at
        case .sequence(let items):
            return "[" + items.map { render($0, lines: lines) }.joined(separator: ", ") + "]" + at
        }
    }

    static func expectSameAsReference(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let expected = try reference(text)
        let actual = try YAMLReader.document(text)
        #expect(render(actual) == render(expected), "\(text)", sourceLocation: sourceLocation)
    }

    // MARK: documents Upkeep reads

    static let corpus: [String] = [
        // k3s's k3s.yaml
        """
        apiVersion: v1
        clusters:
        - cluster:
            certificate-authority-data: LS0tLS1CRUdJTi
            server: https://127.0.0.1:6443
          name: default
        contexts:
        - context:
            cluster: default
            user: default
          name: default
        current-context: default
        kind: Config
        preferences: {}
        users:
        - name: default
          user:
            client-certificate-data: LS0tLS1CRUdJTiBDRVJU
            client-key-data: LS0tLS1CRUdJTiBFQyBQUk
        """,
        // an agent.yaml with flow sections, comments and quoting
        """
        # upkeep-agent configuration
        nodeName: node-1   # as kubectl get nodes shows it
        listen: {address: 0.0.0.0, port: 9443}
        tls: {ca: /etc/upkeep/ca.crt, certificate: "/etc/upkeep/agent.crt", key: '/etc/upkeep/agent.key'}
        k3s:
          binary: /usr/local/bin/k3s
          unit: k3s

        probes: {kubeletHealthz: "http://127.0.0.1:10248/healthz", supervisorPing: "", nodeReady: false, intervalMs: 50}
        logLevel: warning
        """,
        // indented lists, nested lists, empty values, quoted keys, document markers
        """
        ---
        windows:
          - "Sat 02:00-06:00"
          - Sun 02:00-06:00
        empty:
        "quoted key": 'it''s'
        nested:
        - - a
          - b
        - [c, d]
        - {e: f, g: [h, {i: j}]}
        ...
        """,
        // multi-line plain and quoted scalars, escapes, unicode, colons in values
        """
        url: https://example.com:8443/path?q=1#frag
        plain: this is
          folded over

          three lines
        single: 'one
          two'
        double: "tab\\there \\u00e9\\x41\\U0001F600 \\"q\\" \\\\ \\
          joined"
        after: é and ü # comment
        time: 12:30
        dash: -1
        """,
        // block scalars: literal and folded, every chomping, indentation indicator, empty lines
        """
        literal: |
          line one
            indented
          line three

        strip: |-
          no newline
        keep: |+
          kept

        folded: >
          folded
          text

          new paragraph
            more indented
          back
        indicator: |2
            two extra spaces
        empty: |
        last: >-
          end
        """,
        // sequences of mappings at the key's indentation, and comments between entries
        """
        users:
        # a comment inside the list
        - name: a   # trailing
          user: {token: abc}

        - name: b
          user:
            tokenFile: ./token
        contexts: []
        """,
        // flow collections over several lines
        """
        list: [
          one,   # first
          "two",
          three four
        ]
        map: {a: 1,
          b: [x, y],
          c: }
        json: {"k":"v","n":[1,2]}
        """,
        // CRLF line ends and a top-level list
        "- a\r\n- b: c\r\n  d: e\r\n",
        // only comments
        "# nothing here\n\n",
        // a top-level scalar
        "just text\n",
    ]

    @Test func readsTheCorpusAsLibyamlDoes() throws {
        for text in Self.corpus { try Self.expectSameAsReference(text) }
    }

    @Test func keepsOrderStylesAndLines() throws {
        let node = try #require(try YAMLReader.document("b: 1\na: 'x'\nc:\n  - \"y\"\n"))
        #expect(node.mapping?.map { $0.key.string } == ["b", "a", "c"])
        #expect(node["a"]?.style == .singleQuoted)
        #expect(node["c"]?.line == 4)
        #expect(node["c"]?.sequence?.first?.string == "y")
        #expect(node["c"]?.sequence?.first?.line == 4)
    }

    // MARK: generated documents


    indirect enum Tree {
        case text(String)
        case map([(String, Tree)])
        case list([Tree])
    }

    static func tree(_ random: inout SeededGenerator, depth: Int) -> Tree {
        let pick = depth >= 4 ? 0 : random.below(3)
        switch pick {
        case 1:
            let keys = ["name", "server", "a", "b-c", "under_score", "x.y", "Key9", "é"]
            var used = Set<String>()
            var entries: [(String, Tree)] = []
            for _ in 0..<random.below(5) {
                let key = keys[random.below(keys.count)]
                guard used.insert(key).inserted else { continue }
                entries.append((key, tree(&random, depth: depth + 1)))
            }
            return .map(entries)
        case 2:
            return .list((0..<random.below(4)).map { _ in tree(&random, depth: depth + 1) })
        default:
            return .text(text(&random))
        }
    }

    static func text(_ random: inout SeededGenerator) -> String {
        let pieces = ["word", "x", "9", " ", "  ", ":", ": ", "#", " #", "-", "- ", "'", "\"", "\\", "é", "😀", "\n", "\n\n", "\t", "/", ",", "[", "}", "true", "~", "a b"]
        return (0..<random.below(6)).map { _ in pieces[random.below(pieces.count)] }.joined()
    }

    /// Plain in block context: printable, no indicator at the start, no `: ` or ` #`, no edges of spaces.
    static func plainSafe(_ s: String, flow: Bool) -> Bool {
        guard let first = s.first, let last = s.last, !s.contains("\n"), !s.contains("\t") else { return false }
        if "-?:,[]{}#&*!|>'\"%@`".contains(first) || first == " " || last == " " || last == ":" { return false }
        if s.contains(": ") || s.contains(" #") { return false }
        if flow && s.contains(where: { ",[]{}".contains($0) }) { return false }
        if flow && s.contains(":") { return false }
        return true
    }

    static func doubleQuoted(_ s: String) -> String {
        var out = "\""
        for c in s.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default: out.unicodeScalars.append(c)
            }
        }
        return out + "\""
    }

    /// Text as a literal block scalar, when every line is printable and none starts with a space.
    static func literal(_ s: String, indent: String) -> String? {
        var body = Substring(s)
        var trailing = 0
        while body.last == "\n" { body.removeLast(); trailing += 1 }
        let lines = body.split(separator: "\n", omittingEmptySubsequences: false)
        guard let first = lines.first, !first.isEmpty,
              lines.allSatisfy({ !$0.hasPrefix(" ") && !$0.contains("\t") && !$0.hasSuffix(" ") }) else { return nil }
        let chomp = trailing == 0 ? "-" : trailing == 1 ? "" : "+"
        // The line break after the last line comes from the document's next line (or its end).
        return "|" + chomp + "\n" + lines.map { $0.isEmpty ? "" : indent + $0 }.joined(separator: "\n") + String(repeating: "\n", count: max(trailing - 1, 0))
    }

    /// The scalar as written, and the style it was written in.
    static func scalar(_ s: String, _ random: inout SeededGenerator, indent: String, flow: Bool) -> (String, YAMLNode.ScalarStyle) {
        if s.isEmpty { return random.chance(50) ? ("\"\"", .doubleQuoted) : ("''", .singleQuoted) }
        if plainSafe(s, flow: flow) && random.chance(60) { return (s, .plain) }
        if !flow && random.chance(40), let block = literal(s, indent: indent) { return (block, .literal) }
        if !s.contains("\n") && !s.contains("\t") && random.chance(50) {
            return ("'" + s.replacingAll("'", with: "''") + "'", .singleQuoted)
        }
        return (doubleQuoted(s), .doubleQuoted)
    }

    /// The expected node (lines left out) and its block-style text at `indent`.
    static func block(_ tree: Tree, _ random: inout SeededGenerator, indent: Int) -> (text: String, node: YAMLNode, inline: Bool) {
        let pad = String(repeating: " ", count: indent)
        switch tree {
        case .text(let s):
            let (text, style) = scalar(s, &random, indent: pad + "  ", flow: false)
            return (text, YAMLNode(.scalar(s, style), line: 0), true)
        case .map(let entries) where entries.isEmpty || random.chance(20):
            let (text, node) = flow(tree, &random)
            return (text, node, true)
        case .list(let items) where items.isEmpty || random.chance(20):
            let (text, node) = flow(tree, &random)
            return (text, node, true)
        case .map(let entries):
            var lines: [String] = []
            var nodes: [YAMLNode.Entry] = []
            for (key, value) in entries {
                let keyText = random.chance(20) ? doubleQuoted(key) : key
                let keyStyle: YAMLNode.ScalarStyle = keyText.hasPrefix("\"") ? .doubleQuoted : .plain
                let indentless = random.chance(50)
                let child = block(value, &random, indent: indent + 2)
                if child.inline {
                    lines.append(pad + keyText + ": " + child.text + (random.chance(15) && !child.text.hasPrefix("|") ? "  # note" : ""))
                } else if case .list = value, indentless {
                    // The list at its key's indentation: every line of it two columns left.
                    lines.append(pad + keyText + ":")
                    lines.append(child.text.split(separator: "\n", omittingEmptySubsequences: false)
                        .map { $0.hasPrefix("  ") ? String($0.dropFirst(2)) : String($0) }.joined(separator: "\n"))
                } else {
                    lines.append(pad + keyText + ":" + (random.chance(15) ? " # children" : ""))
                    lines.append(child.text)
                }
                nodes.append(YAMLNode.Entry(key: YAMLNode(.scalar(key, keyStyle), line: 0), value: child.node))
                // A blank line would belong to a kept (|+) block scalar that ends the entry.
                if random.chance(15) && !child.text.contains("|+") { lines.append("") }
            }
            return (lines.joined(separator: "\n"), YAMLNode(.mapping(nodes), line: 0), false)
        case .list(let items):
            var lines: [String] = []
            var nodes: [YAMLNode] = []
            for item in items {
                let child = block(item, &random, indent: indent + 2)
                if child.inline {
                    lines.append(pad + "- " + child.text)
                } else if case .map = item, random.chance(50) {
                    // compact: the mapping's first key on the dash's line
                    let body = child.text.dropFirst(indent + 2)
                    lines.append(pad + "- " + body)
                } else {
                    lines.append(pad + "-")
                    lines.append(child.text)
                }
                nodes.append(child.node)
            }
            return (lines.joined(separator: "\n"), YAMLNode(.sequence(nodes), line: 0), false)
        }
    }

    static func flow(_ tree: Tree, _ random: inout SeededGenerator) -> (String, YAMLNode) {
        switch tree {
        case .text(let s):
            if plainSafe(s, flow: true) && random.chance(60) { return (s, YAMLNode(.scalar(s, .plain), line: 0)) }
            return (doubleQuoted(s), YAMLNode(.scalar(s, .doubleQuoted), line: 0))
        case .map(let entries):
            var parts: [String] = []
            var nodes: [YAMLNode.Entry] = []
            for (key, value) in entries {
                let (text, node) = flow(value, &random)
                parts.append(key + ": " + text)
                nodes.append(YAMLNode.Entry(key: YAMLNode(.scalar(key, .plain), line: 0), value: node))
            }
            return ("{" + parts.joined(separator: ", ") + "}", YAMLNode(.mapping(nodes), line: 0))
        case .list(let items):
            let converted = items.map { flow($0, &random) }
            return ("[" + converted.map(\.0).joined(separator: ", ") + "]", YAMLNode(.sequence(converted.map(\.1)), line: 0))
        }
    }

    @Test func generatedDocumentsReadAsWrittenAndAsLibyamlReadsThem() throws {
        for seed in UInt64(1)...500 {
            var random = SeededGenerator(seed: seed)
            let tree: Tree = .map([("root", Self.tree(&random, depth: 0)), ("other", Self.tree(&random, depth: 1))])
            let (body, expected, _) = Self.block(tree, &random, indent: 0)
            let text = body + "\n"
            let actual: YAMLNode?
            do {
                actual = try YAMLReader.document(text)
            } catch {
                Issue.record("seed \(seed): \(error)\n\(text)")
                continue
            }
            #expect(Self.render(actual, lines: false) == Self.render(expected, lines: false), "seed \(seed):\n\(text)")
            #expect(Self.render(actual) == Self.render(try Self.reference(text)), "seed \(seed):\n\(text)")
        }
    }

    /// Damaged documents: the corpus with bytes changed, inserted and deleted. The reader may
    /// refuse more than libyaml does (anchors, duplicate keys, …), but whatever it accepts libyaml
    /// must read as the same tree: it never silently reads a file differently. It also never
    /// traps or hangs on any of them.
    @Test func damagedDocumentsAreRefusedOrReadAsLibyamlReadsThem() throws {
        let alphabet = Array(" \n\t:-#'\"[]{},|>&*!?%@`\\ab01~".utf8)
        var accepted = 0
        for seed in UInt64(1)...5_000 {
            var random = SeededGenerator(seed: seed)
            var bytes = Array(Self.corpus[random.below(Self.corpus.count)].utf8)
            for _ in 0..<(1 + random.below(3)) where !bytes.isEmpty {
                let at = random.below(bytes.count)
                switch random.below(3) {
                case 0: bytes[at] = alphabet[random.below(alphabet.count)]
                case 1: bytes.insert(alphabet[random.below(alphabet.count)], at: at)
                default: bytes.remove(at: at)
                }
            }
            let text = String(decoding: bytes, as: UTF8.self)
            guard let actual = try? YAMLReader.document(text) else { continue }
            accepted += 1
            guard let expected = try? Self.reference(text) else {
                Issue.record("seed \(seed): accepted what libyaml refuses:\n\(text)")
                continue
            }
            #expect(Self.render(actual, lines: false) == Self.render(expected, lines: false), "seed \(seed):\n\(text)")
        }
        #expect(accepted > 1_500, "most small damage still leaves valid YAML; the check compared \(accepted)")
    }

    // MARK: refused, with a reason

    @Test(arguments: [
        ("a: &x 1\nb: *x\n", "anchors"),
        ("a: !!str 1\n", "tags"),
        ("? a\n: b\n", "complex mapping keys"),
        ("%YAML 1.2\n---\na: 1\n", "directives"),
        ("a: 1\n---\nb: 2\n", "more than one document"),
        ("a: 1\na: 2\n", "appears twice"),
        ("a:\n\tb: 1\n", "must use spaces"),
        ("\t# a comment\na: 1\n", "must use spaces"),
        ("a:\tb\n", "a tab after \":\""),
        ("-\tb: c\n", "a tab after \"-\""),
        ("a: {b:[c]}\n", "write \": \" between"),
        ("a: [?x, y]\n", "complex mapping keys"),
        ("a: {b\n  : c}\n", "on one line"),
        ("]a: b\n", "cannot start with"),
        ("a: @b\n", "cannot start with"),
        ("a: 'open\nb: 2\n", "never closed"),
        ("a: [1, 2\n", "never closed"),
        ("a: b: c\n", "cannot start on its key's line"),
        ("a: x\n  b: c\n", "cannot hold"),
        ("a:\n  b:\n    c: 1\n   d: 2\n", "indented more"),
        ("a: - b\n", "list cannot start"),
        ("a: \"\\q\"\n", "unknown escape"),
        ("a: [1,,2]\n", "empty entry"),
        ("a: {b: 1} c\n", "unexpected"),
        ("a: [x: y]\n", "not supported"),
    ])
    func refusesWithAReason(_ text: String, _ reason: String) {
        #expect(throws: YAMLError.self) { try YAMLReader.document(text) }
        do {
            _ = try YAMLReader.document(text)
        } catch {
            #expect(error.description.contains(reason), "\(text): \(error)")
        }
    }

    @Test func errorsSayWhere() {
        do {
            _ = try YAMLReader.document("a: 1\nb:\n  c: 2\n  c: 3\n")
            Issue.record("a duplicate key was accepted")
        } catch {
            #expect(error.line == 4)
            #expect(error.column == 3)
            #expect(error.description.contains("first on line 3"))
        }
    }

    @Test func nestingIsBounded() throws {
        let deep = String(repeating: "[", count: YAMLReader.depthMax + 1) + String(repeating: "]", count: YAMLReader.depthMax + 1)
        #expect(throws: YAMLError.self) { try YAMLReader.document(deep) }
        let fine = String(repeating: "[", count: YAMLReader.depthMax - 1) + String(repeating: "]", count: YAMLReader.depthMax - 1)
        #expect(try YAMLReader.document(fine) != nil)
    }
}

extension SeededGenerator {
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
}

extension String {
    func replacingAll(_ target: Character, with replacement: String) -> String {
        var out = ""
        for c in self { if c == target { out += replacement } else { out.append(c) } }
        return out
    }
}
