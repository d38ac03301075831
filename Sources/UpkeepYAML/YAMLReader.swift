/// Why a YAML text could not be read: where, and what to write instead.
public struct YAMLError: Error, Equatable, Sendable, CustomStringConvertible {
    /// 1-based line and column.
    public var line: Int
    public var column: Int
    public var message: String

    public init(line: Int, column: Int, message: String) {
        self.line = line
        self.column = column
        self.message = message
    }

    public var description: String { "line \(line), column \(column): \(message)" }
}

/// Reads the YAML that configuration files and kubeconfigs are written in, without Foundation
/// (the agent reads both, and Yams brings full Foundation, CoreFoundation and ICU into its
/// memory): block mappings and lists (lists may sit at their key's indentation), flow `{ }` and
/// `[ ]`, plain, single- and double-quoted scalars (all escapes, multi-line folding), literal and
/// folded block scalars with chomping and indentation indicators, comments, one document with
/// optional `---` / `...` markers. Every scalar stays text; `YAMLNode` says how it was written.
///
/// Refused with a message saying what to write instead: anchors, aliases, tags, `?` keys,
/// collections as keys, directives, more than one document, duplicate keys, tabs as indentation,
/// nesting deeper than `depthMax`.
public enum YAMLReader {
    public static let depthMax = 64

    /// The document of `text`, or nil when it holds none (only comments, say).
    public static func document(_ text: String) throws(YAMLError) -> YAMLNode? {
        var parser = Parser(Array(text.utf8))
        return try parser.stream()
    }
}

private enum ASCII {
    static let tab = UInt8(ascii: "\t"), newline = UInt8(ascii: "\n"), carriageReturn = UInt8(ascii: "\r"), space = UInt8(ascii: " ")
    static let hash = UInt8(ascii: "#"), colon = UInt8(ascii: ":"), dash = UInt8(ascii: "-"), comma = UInt8(ascii: ",")
    static let doubleQuote = UInt8(ascii: "\""), singleQuote = UInt8(ascii: "'"), backslash = UInt8(ascii: "\\")
    static let openBracket = UInt8(ascii: "["), closeBracket = UInt8(ascii: "]"), openBrace = UInt8(ascii: "{"), closeBrace = UInt8(ascii: "}")
    static let pipe = UInt8(ascii: "|"), greater = UInt8(ascii: ">"), plus = UInt8(ascii: "+"), question = UInt8(ascii: "?")
    static let dot = UInt8(ascii: "."), percent = UInt8(ascii: "%")
}

private struct Parser {
    typealias A = ASCII
    var b: [UInt8]
    var i = 0
    var line = 1
    var lineStart = 0
    var depth = 0

    init(_ bytes: [UInt8]) {
        // Line breaks normalised to \n (CRLF and CR), a byte-order mark dropped.
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var k = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? 3 : 0
        while k < bytes.count {
            if bytes[k] == A.carriageReturn {
                out.append(A.newline)
                if k + 1 < bytes.count && bytes[k + 1] == A.newline { k += 1 }
            } else {
                out.append(bytes[k])
            }
            k += 1
        }
        b = out
    }

    // MARK: cursor

    func at(_ k: Int) -> UInt8? { k < b.count ? b[k] : nil }
    var cur: UInt8? { at(i) }
    var column: Int { i - lineStart }

    func fail(_ message: String) -> YAMLError { YAMLError(line: line, column: column + 1, message: message) }

    func isBlank(_ c: UInt8?) -> Bool { c == A.space || c == A.tab }
    func isBlankOrEnd(_ k: Int) -> Bool { at(k) == nil || at(k) == A.space || at(k) == A.tab || at(k) == A.newline }
    func isBreakOrEnd(_ k: Int) -> Bool { at(k) == nil || at(k) == A.newline }
    func isFlowIndicator(_ c: UInt8?) -> Bool {
        c == A.comma || c == A.openBracket || c == A.closeBracket || c == A.openBrace || c == A.closeBrace
    }
    /// A `#` that starts a comment: at a line's start or after whitespace.
    func isComment(_ k: Int) -> Bool { at(k) == A.hash && (k == lineStart || isBlank(at(k - 1)) || at(k - 1) == A.newline) }
    func isSequenceEntry(_ k: Int) -> Bool { at(k) == A.dash && isBlankOrEnd(k + 1) }

    /// A character no plain scalar may start with (YAML's indicators), or `-`, `?` or `:` followed
    /// by whitespace.
    func isIndicatorStart(_ k: Int) -> Bool {
        guard let c = at(k) else { return false }
        switch c {
        case A.comma, A.openBracket, A.closeBracket, A.openBrace, A.closeBrace, A.hash, A.ampersand, A.asterisk,
             A.exclamation, A.pipe, A.greater, A.singleQuote, A.doubleQuote, A.percent, A.at, A.backtick:
            return true
        case A.dash, A.question, A.colon:
            return isBlankOrEnd(k + 1)
        default:
            return false
        }
    }

    /// `---` or `...` at the start of the line beginning at `k`.
    func isDocumentMarker(_ k: Int) -> Bool {
        guard k + 2 < b.count else { return false }
        let c = b[k]
        return (c == A.dash || c == A.dot) && b[k + 1] == c && b[k + 2] == c && isBlankOrEnd(k + 3)
    }

    mutating func consumeNewline() {
        i += 1
        line += 1
        lineStart = i
    }

    mutating func skipInline() { while isBlank(cur) { i += 1 } }

    mutating func enter() throws(YAMLError) {
        depth += 1
        guard depth <= YAMLReader.depthMax else { throw fail("nested deeper than \(YAMLReader.depthMax) levels") }
    }

    var preview: String {
        var k = i
        while k < b.count && b[k] != A.newline && k - i < 20 { k += 1 }
        return "\"" + String(decoding: b[i..<k], as: UTF8.self) + "\""
    }

    /// The rest of the line may hold only whitespace and a comment; moves to the next line's start.
    mutating func endLine(_ advice: String = "put one value per line, or quote the whole value") throws(YAMLError) {
        skipInline()
        if isComment(i) { while let c = cur, c != A.newline { i += 1 } }
        guard isBreakOrEnd(i) else { throw fail("unexpected \(preview) after the value; \(advice)") }
        if cur == A.newline { consumeNewline() }
    }

    /// From a line's start, skips lines holding only whitespace or a comment. Returns the next
    /// content line's indentation with the cursor left at that line's start, or nil at the end.
    mutating func nextContentLine() throws(YAMLError) -> Int? {
        while i < b.count {
            var k = i
            while at(k) == A.space { k += 1 }
            if at(k) == A.tab {
                // libyaml's rule too: a tab at a line's start, even before a comment, is an error.
                i = k
                throw fail("a tab at the start of a line; indentation must use spaces")
            }
            if at(k) == A.hash || isBreakOrEnd(k) {
                i = k
                while let c = cur, c != A.newline { i += 1 }
                if cur == A.newline { consumeNewline() }
                continue
            }
            return k - i
        }
        return nil
    }

    /// Whether the content line at `k` spaces of indentation is a document marker.
    func isMarkerLine(_ indent: Int) -> Bool { indent == 0 && isDocumentMarker(i) }

    func null(_ line: Int) -> YAMLNode { YAMLNode(.scalar("", .plain), line: line) }

    // MARK: document

    mutating func stream() throws(YAMLError) -> YAMLNode? {
        guard let first = try nextContentLine() else { return nil }
        if first == 0 && cur == A.percent { throw fail("directives (%YAML, %TAG) are not supported; remove the line") }
        if first == 0 && isDocumentMarker(i) && b[i] == A.dash {
            i += 3
            try endLine("put the document on the lines after ---")
        }
        var root: YAMLNode?
        if let indent = try nextContentLine(), !isMarkerLine(indent) {
            i += indent
            root = try blockNode(parentIndent: -1, indent: indent)
        }
        while let indent = try nextContentLine() {
            if isMarkerLine(indent) && b[i] == A.dot {
                i += 3
                try endLine("nothing may follow ... on its line")
                continue
            }
            i += indent
            if isMarkerLine(0) && indent == 0 {
                throw fail("the file holds more than one document; keep one")
            }
            throw fail("unexpected \(preview): is it indented as the lines above it?")
        }
        return root
    }

    // MARK: block context (every block node ends with the cursor at a line's start)

    mutating func blockNode(parentIndent: Int, indent: Int) throws(YAMLError) -> YAMLNode {
        try enter()
        defer { depth -= 1 }
        if isSequenceEntry(i) { return try blockSequence(indent: indent) }
        if try isMappingKey() { return try blockMapping(indent: indent) }
        return try inlineValue(parentIndent: parentIndent)
    }

    /// The end of a quoted scalar starting at `k` when it closes on the same line.
    func closingQuote(_ k: Int) -> Int? {
        let quote = b[k]
        var m = k + 1
        while let c = at(m), c != A.newline {
            if quote == A.doubleQuote && c == A.backslash {
                m += 2
                continue
            }
            if c == quote {
                if quote == A.singleQuote && at(m + 1) == A.singleQuote {
                    m += 2
                    continue
                }
                return m
            }
            m += 1
        }
        return nil
    }

    /// Whether the line from the cursor is `key: ...`.
    func isMappingKey() throws(YAMLError) -> Bool {
        guard let c = cur else { return false }
        if c == A.doubleQuote || c == A.singleQuote {
            guard let close = closingQuote(i) else { return false }
            var k = close + 1
            while isBlank(at(k)) { k += 1 }
            return at(k) == A.colon && isBlankOrEnd(k + 1)
        }
        if c == A.question && isBlankOrEnd(i + 1) { throw fail("complex mapping keys (? key) are not supported; write key: value") }
        if c == A.openBracket || c == A.openBrace {
            // A collection as a key (`[a, b]: c`) is not supported; anything else here is a value.
            return false
        }
        // A plain scalar cannot start with an indicator; the value reader says so.
        if isIndicatorStart(i) { return false }
        var k = i
        while let c = at(k), c != A.newline {
            if c == A.colon && isBlankOrEnd(k + 1) { return true }
            if isComment(k) { return false }
            k += 1
        }
        return false
    }

    mutating func mappingKey() throws(YAMLError) -> YAMLNode {
        let keyLine = line
        let key: YAMLNode
        if cur == A.doubleQuote || cur == A.singleQuote {
            let (text, style) = try quotedScalar()
            key = YAMLNode(.scalar(text, style), line: keyLine)
        } else {
            if let c = cur, c == A.ampersand || c == A.asterisk || c == A.exclamation {
                throw fail("anchors (&), aliases (*) and tags (!) are not supported; write the key out in full")
            }
            let start = i
            var end = i
            while let c = cur, !(c == A.colon && isBlankOrEnd(i + 1)) {
                i += 1
                if !isBlank(c) { end = i }
            }
            key = YAMLNode(.scalar(String(decoding: b[start..<end], as: UTF8.self), .plain), line: keyLine)
        }
        skipInline()
        guard cur == A.colon else { throw fail("expected ':' after the key") }
        i += 1
        return key
    }

    mutating func blockMapping(indent: Int) throws(YAMLError) -> YAMLNode {
        let startLine = line
        var entries: [YAMLNode.Entry] = []
        var seen: [String: Int] = [:]
        while true {
            let keyColumn = column + 1
            let key = try mappingKey()
            let name = key.string ?? ""
            if let first = seen[name] {
                throw YAMLError(line: key.line, column: keyColumn, message: "key \"\(name)\" appears twice (first on line \(first)); keep one")
            }
            seen[name] = key.line
            let separator = i
            skipInline()
            if b[separator..<i].contains(A.tab) { throw fail("a tab after \":\"; separate a value from its key with spaces") }
            let value: YAMLNode
            if isBreakOrEnd(i) || isComment(i) {
                try endLine()
                if let next = try nextContentLine(), !isMarkerLine(next), next > indent || (next == indent && isSequenceEntry(i + next)) {
                    i += next
                    value = next > indent ? try blockNode(parentIndent: indent, indent: next) : try blockSequence(indent: indent)
                } else {
                    value = null(key.line)
                }
            } else {
                if isSequenceEntry(i) { throw fail("a list cannot start on its key's line; put each \"- item\" on a line of its own below the key") }
                if try isMappingKey() { throw fail("a mapping cannot start on its key's line; put its keys on the lines below, indented") }
                value = try inlineValue(parentIndent: indent)
            }
            entries.append(YAMLNode.Entry(key: key, value: value))
            guard let next = try nextContentLine(), !isMarkerLine(next), next >= indent else { break }
            i += next
            if next > indent { throw fail("this line is indented more than the keys above it") }
            if isSequenceEntry(i) { throw fail("a list item where a key was expected; indent the list under its key") }
            guard try isMappingKey() else { throw fail("expected a key (name: value) at this indentation, found \(preview)") }
        }
        return YAMLNode(.mapping(entries), line: startLine)
    }

    mutating func blockSequence(indent: Int) throws(YAMLError) -> YAMLNode {
        let startLine = line
        var items: [YAMLNode] = []
        while true {
            let itemLine = line
            i += 1
            let separator = i
            skipInline()
            if b[separator..<i].contains(A.tab) { throw fail("a tab after \"-\"; separate a list item from its dash with spaces") }
            if isBreakOrEnd(i) || isComment(i) {
                try endLine()
                if let next = try nextContentLine(), !isMarkerLine(next), next > indent {
                    i += next
                    items.append(try blockNode(parentIndent: indent, indent: next))
                } else {
                    items.append(null(itemLine))
                }
            } else {
                items.append(try blockNode(parentIndent: indent, indent: column))
            }
            guard let next = try nextContentLine(), !isMarkerLine(next), next >= indent else { break }
            if next > indent {
                i += next
                throw fail("this line is indented more than the list items above it")
            }
            // Same indentation but no "- ": the list sat at its key's indentation and has ended.
            guard isSequenceEntry(i + next) else { break }
            i += next
        }
        return YAMLNode(.sequence(items), line: startLine)
    }

    /// A value that starts on the current line (after `key:` or `- `, or at a line's start).
    mutating func inlineValue(parentIndent: Int) throws(YAMLError) -> YAMLNode {
        let startLine = line
        switch cur ?? A.newline {
        case A.doubleQuote, A.singleQuote:
            let (text, style) = try quotedScalar()
            try endLine("quote the whole value")
            return YAMLNode(.scalar(text, style), line: startLine)
        case A.openBracket, A.openBrace:
            let node = try flowNode()
            try endLine("put the whole value inside the brackets")
            return node
        case A.pipe, A.greater:
            return try blockScalar(parentIndent: parentIndent)
        case A.ampersand, A.asterisk, A.exclamation:
            throw fail("anchors (&), aliases (*) and tags (!) are not supported; write the value out in full")
        default:
            if isIndicatorStart(i) { throw fail("a plain value cannot start with \"\(Character(Unicode.Scalar(b[i])))\"; quote it") }
            return try plainScalar(parentIndent: parentIndent)
        }
    }

    /// The rest of a plain scalar's line, without trailing whitespace; stops before a comment.
    mutating func plainLine() throws(YAMLError) -> String {
        let start = i
        var end = i
        while let c = cur, c != A.newline {
            if c == A.colon && isBlankOrEnd(i + 1) {
                throw fail("a plain value cannot hold \": \"; quote the value, or put a mapping on the lines below its key, indented")
            }
            if isComment(i) && i > start { break }
            i += 1
            if !isBlank(c) { end = i }
        }
        return String(decoding: b[start..<end], as: UTF8.self)
    }

    /// A plain scalar: its first line, then lines indented more than `parentIndent` folded in
    /// (one line break becomes a space, n+1 breaks n newlines), up to a comment.
    mutating func plainScalar(parentIndent: Int) throws(YAMLError) -> YAMLNode {
        let startLine = line
        var text = try plainLine()
        var ended = isComment(i)
        try endLine()
        var breaks = 0
        while !ended, i < b.count {
            var k = i
            while at(k) == A.space { k += 1 }
            if at(k) == A.tab && k - i <= parentIndent {
                i = k
                throw fail("a tab at the start of a line; indentation must use spaces")
            }
            var m = k
            while isBlank(at(m)) { m += 1 }
            if at(m) == A.newline {
                breaks += 1
                i = m
                consumeNewline()
                continue
            }
            if at(m) == nil || k - i <= parentIndent || isComment(m) || (k == i && isDocumentMarker(i)) { break }
            i = m
            let more = try plainLine()
            text += breaks == 0 ? " " : String(repeating: "\n", count: breaks)
            text += more
            breaks = 0
            ended = isComment(i)
            try endLine()
        }
        return YAMLNode(.scalar(text, .plain), line: startLine)
    }

    /// A single- or double-quoted scalar from its opening quote to its closing one; line breaks
    /// fold (one becomes a space, n+1 become n newlines), `\` at a line's end joins lines.
    mutating func quotedScalar() throws(YAMLError) -> (String, YAMLNode.ScalarStyle) {
        let quote = b[i]
        let double = quote == A.doubleQuote
        let open = (line: line, column: column + 1)
        i += 1
        var out: [UInt8] = []
        while true {
            guard let c = cur else {
                throw YAMLError(line: open.line, column: open.column, message: "a quoted value that is never closed; add its closing \(double ? "\"" : "'")")
            }
            if c == quote {
                if !double && at(i + 1) == A.singleQuote {
                    out.append(A.singleQuote)
                    i += 2
                    continue
                }
                i += 1
                break
            }
            if double && c == A.backslash && at(i + 1) == A.newline {
                // An escaped line break joins the lines; empty lines after it are newlines.
                i += 1
                consumeNewline()
                skipInline()
                while cur == A.newline {
                    out.append(A.newline)
                    consumeNewline()
                    skipInline()
                }
                continue
            }
            if double && c == A.backslash {
                try escape(into: &out)
                continue
            }
            if isBlank(c) || c == A.newline {
                var k = i
                while isBlank(at(k)) { k += 1 }
                guard at(k) == A.newline else {
                    out.append(contentsOf: b[i..<k])
                    i = k
                    continue
                }
                i = k
                var breaks = 0
                while cur == A.newline {
                    consumeNewline()
                    breaks += 1
                    if isDocumentMarker(i) { throw fail("a document marker inside a quoted value; close the quote before it") }
                    skipInline()
                }
                fold(breaks, into: &out)
                continue
            }
            out.append(c)
            i += 1
        }
        return (String(decoding: out, as: UTF8.self), double ? .doubleQuoted : .singleQuoted)
    }

    /// YAML's line folding inside a scalar: one line break becomes a space, n+1 become n newlines.
    func fold(_ breaks: Int, into out: inout [UInt8]) {
        if breaks == 1 {
            out.append(A.space)
        } else {
            out.append(contentsOf: repeatElement(A.newline, count: breaks - 1))
        }
    }

    mutating func escape(into out: inout [UInt8]) throws(YAMLError) {
        guard let c = at(i + 1) else { throw fail("a backslash at the end of the text") }
        let simple: [UInt8: UInt32] = [
            UInt8(ascii: "0"): 0, UInt8(ascii: "a"): 7, UInt8(ascii: "b"): 8, UInt8(ascii: "t"): 9, A.tab: 9,
            UInt8(ascii: "n"): 10, UInt8(ascii: "v"): 11, UInt8(ascii: "f"): 12, UInt8(ascii: "r"): 13,
            UInt8(ascii: "e"): 27, A.space: 32, A.doubleQuote: 34, UInt8(ascii: "/"): 47, A.backslash: 92,
            UInt8(ascii: "N"): 0x85, UInt8(ascii: "_"): 0xA0, UInt8(ascii: "L"): 0x2028, UInt8(ascii: "P"): 0x2029,
        ]
        let hexDigits: [UInt8: Int] = [UInt8(ascii: "x"): 2, UInt8(ascii: "u"): 4, UInt8(ascii: "U"): 8]
        var value: UInt32
        if let known = simple[c] {
            value = known
            i += 2
        } else if let count = hexDigits[c] {
            value = 0
            for k in 0..<count {
                guard let d = at(i + 2 + k), let digit = hexValue(d) else {
                    throw fail("\\\(Character(Unicode.Scalar(c))) needs \(count) hexadecimal digits")
                }
                value = value * 16 + digit
            }
            i += 2 + count
        } else {
            throw fail("unknown escape \\\(Character(Unicode.Scalar(c))) in a double-quoted value; write \\\\ for a backslash")
        }
        guard let scalar = Unicode.Scalar(value) else { throw fail("escape names U+\(String(value, radix: 16, uppercase: true)), which is not a character") }
        out.append(contentsOf: String(Character(scalar)).utf8)
    }

    func hexValue(_ c: UInt8) -> UInt32? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(c - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt32(c - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt32(c - UInt8(ascii: "A") + 10)
        default: nil
        }
    }

    /// A literal (`|`) or folded (`>`) block scalar, with YAML's chomping (`-` strip, `+` keep)
    /// and an optional indentation digit; the content's indentation is found from its first
    /// non-empty line otherwise.
    mutating func blockScalar(parentIndent: Int) throws(YAMLError) -> YAMLNode {
        let startLine = line
        let literal = b[i] == A.pipe
        i += 1
        var chomp = 0
        var increment = 0
        for _ in 0..<2 {
            if chomp == 0, let c = cur, c == A.plus || c == A.dash {
                chomp = c == A.plus ? 1 : -1
                i += 1
            } else if increment == 0, let c = cur, c >= UInt8(ascii: "1"), c <= UInt8(ascii: "9") {
                increment = Int(c - UInt8(ascii: "0"))
                i += 1
            }
        }
        try endLine("after | or > only + or -, an indentation digit (1-9) and a comment may follow")
        var indent = increment > 0 ? (parentIndent >= 0 ? parentIndent + increment : increment) : 0
        var out: [UInt8] = []
        var leadingBreak = false
        var trailingBreaks = 0
        var leadingBlank = false

        // Empty lines (and, when the indentation is unknown, the first content line's spaces).
        func breaks(_ parser: inout Parser, _ indent: inout Int, _ count: inout Int) throws(YAMLError) {
            var widest = 0
            while true {
                while (indent == 0 || parser.column < indent) && parser.cur == A.space { parser.i += 1 }
                widest = max(widest, parser.column)
                if (indent == 0 || parser.column < indent) && parser.cur == A.tab {
                    throw parser.fail("a tab where the block's indentation (spaces) was expected")
                }
                guard parser.cur == A.newline else { break }
                parser.consumeNewline()
                count += 1
            }
            if indent == 0 { indent = max(widest, parentIndent + 1, 1) }
        }

        try breaks(&self, &indent, &trailingBreaks)
        while column == indent, let _ = cur {
            let trailingBlank = isBlank(cur)
            if !literal && leadingBreak && !leadingBlank && !trailingBlank {
                if trailingBreaks == 0 { out.append(A.space) }
            } else if leadingBreak {
                out.append(A.newline)
            }
            leadingBreak = false
            out.append(contentsOf: repeatElement(A.newline, count: trailingBreaks))
            trailingBreaks = 0
            leadingBlank = isBlank(cur)
            let start = i
            while let c = cur, c != A.newline { i += 1 }
            out.append(contentsOf: b[start..<i])
            guard cur == A.newline else { break }
            consumeNewline()
            leadingBreak = true
            try breaks(&self, &indent, &trailingBreaks)
        }
        if chomp != -1 && leadingBreak { out.append(A.newline) }
        if chomp == 1 { out.append(contentsOf: repeatElement(A.newline, count: trailingBreaks)) }
        i = lineStart == b.count ? b.count : (cur == nil ? i : lineStart)
        return YAMLNode(.scalar(String(decoding: out, as: UTF8.self), literal ? .literal : .folded), line: startLine)
    }

    // MARK: flow context

    /// Whitespace, line breaks and comments between flow tokens.
    mutating func skipFlowSpace(_ open: (line: Int, column: Int, bracket: UInt8)) throws(YAMLError) {
        while true {
            skipInline()
            if isComment(i) { while let c = cur, c != A.newline { i += 1 } }
            guard let c = cur else {
                let close = open.bracket == A.openBracket ? "]" : "}"
                throw YAMLError(line: open.line, column: open.column, message: "a \(Character(Unicode.Scalar(open.bracket))) that is never closed; add its \(close)")
            }
            guard c == A.newline else { return }
            consumeNewline()
            if isDocumentMarker(i) { throw fail("a document marker inside [ ] or { }; close the brackets before it") }
            var k = i
            while at(k) == A.space { k += 1 }
            if at(k) == A.tab {
                i = k
                throw fail("a tab at the start of a line; indentation must use spaces")
            }
        }
    }

    mutating func flowNode() throws(YAMLError) -> YAMLNode {
        try enter()
        defer { depth -= 1 }
        let open = (line: line, column: column + 1, bracket: b[i])
        i += 1
        if open.bracket == A.openBracket {
            var items: [YAMLNode] = []
            while true {
                try skipFlowSpace(open)
                if cur == A.closeBracket { break }
                items.append(try flowItem(open))
                try skipFlowSpace(open)
                if cur == A.colon { throw fail("key: value pairs inside [ ] are not supported; write them as { key: value }") }
                if cur == A.closeBracket { break }
                guard cur == A.comma else { throw fail("expected , or ] after a list item, found \(preview)") }
                i += 1
            }
            i += 1
            return YAMLNode(.sequence(items), line: open.line)
        }
        var entries: [YAMLNode.Entry] = []
        var seen: [String: Int] = [:]
        while true {
            try skipFlowSpace(open)
            if cur == A.closeBrace { break }
            let keyColumn = column + 1
            if cur == A.openBracket || cur == A.openBrace { throw fail("collections as keys are not supported") }
            let key = try flowItem(open)
            let keyEndLine = line
            let name = key.string ?? ""
            if let first = seen[name] {
                throw YAMLError(line: key.line, column: keyColumn, message: "key \"\(name)\" appears twice (first on line \(first)); keep one")
            }
            seen[name] = key.line
            try skipFlowSpace(open)
            var value = null(key.line)
            if cur == A.colon {
                guard key.line == keyEndLine, line == key.line else {
                    throw fail("a key inside { } must be on one line with its \":\"")
                }
                i += 1
                try skipFlowSpace(open)
                if cur != A.comma && cur != A.closeBrace { value = try flowItem(open) }
                try skipFlowSpace(open)
            }
            entries.append(YAMLNode.Entry(key: key, value: value))
            if cur == A.closeBrace { break }
            guard cur == A.comma else { throw fail("expected , or } after a mapping entry, found \(preview)") }
            i += 1
        }
        i += 1
        return YAMLNode(.mapping(entries), line: open.line)
    }

    mutating func flowItem(_ open: (line: Int, column: Int, bracket: UInt8)) throws(YAMLError) -> YAMLNode {
        let startLine = line
        switch cur ?? A.newline {
        case A.openBracket, A.openBrace:
            return try flowNode()
        case A.doubleQuote, A.singleQuote:
            let (text, style) = try quotedScalar()
            return YAMLNode(.scalar(text, style), line: startLine)
        case A.ampersand, A.asterisk, A.exclamation:
            throw fail("anchors (&), aliases (*) and tags (!) are not supported; write the value out in full")
        case A.pipe, A.greater:
            throw fail("block scalars (| or >) cannot appear inside [ ] or { }; quote the value")
        case A.comma, A.closeBracket, A.closeBrace, A.colon:
            throw fail("an empty entry inside \(Character(Unicode.Scalar(open.bracket))); remove the extra comma or write the value")
        case A.question:
            // Inside [ ] and { } a "?" always starts a complex key.
            throw fail("complex mapping keys (? key) are not supported; write key: value, or quote a value that starts with ?")
        default:
            if isSequenceEntry(i) { throw fail("\"- \" list items cannot appear inside [ ] or { }; separate items with commas") }
            if isIndicatorStart(i) || (b[i] == A.dash || b[i] == A.question) && isFlowIndicator(at(i + 1)) {
                throw fail("a plain value cannot start with \"\(Character(Unicode.Scalar(b[i])))\"; quote it")
            }
            return try flowPlain()
        }
    }

    /// A plain scalar inside [ ] or { }: up to , [ ] { } or `: `, folding line breaks.
    mutating func flowPlain() throws(YAMLError) -> YAMLNode {
        let startLine = line
        var out: [UInt8] = []
        while let c = cur {
            if isFlowIndicator(c) || isComment(i) { break }
            if c == A.colon && (isFlowIndicator(at(i + 1)) || at(i + 1) == A.question) {
                throw fail("\":\" followed by \"\(Character(Unicode.Scalar(b[i + 1])))\" inside [ ] or { }; write \": \" between a key and its value, or quote the value")
            }
            if c == A.colon && isBlankOrEnd(i + 1) { break }
            if isBlank(c) || c == A.newline {
                let saved = (i, line, lineStart)
                var k = i
                while isBlank(at(k)) { k += 1 }
                i = k
                var breaks = 0
                while cur == A.newline {
                    consumeNewline()
                    breaks += 1
                    skipInline()
                }
                if breaks > 0 && isDocumentMarker(lineStart) { throw fail("a document marker inside [ ] or { }; close the brackets before it") }
                let next = cur
                if next == nil || isFlowIndicator(next) || isComment(i)
                    || (next == A.colon && (isBlankOrEnd(i + 1) || isFlowIndicator(at(i + 1))))
                {
                    (i, line, lineStart) = saved
                    break
                }
                if breaks == 0 {
                    out.append(contentsOf: b[saved.0..<k])
                } else {
                    fold(breaks, into: &out)
                }
                continue
            }
            out.append(c)
            i += 1
        }
        return YAMLNode(.scalar(String(decoding: out, as: UTF8.self), .plain), line: startLine)
    }
}

extension ASCII {
    static let ampersand = UInt8(ascii: "&"), asterisk = UInt8(ascii: "*"), exclamation = UInt8(ascii: "!")
    static let at = UInt8(ascii: "@"), backtick = UInt8(ascii: "`")
}
