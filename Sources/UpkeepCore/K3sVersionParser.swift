/// What was wrong with text that should have been a k3s version. `description` quotes the text
/// and says what a version looks like, so it can be shown to an operator as is.
public struct K3sVersionError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Problem: Equatable, Sendable {
        case empty
        case tooLong(bytes: Int)
        /// The `MAJOR.MINOR.PATCH` part is not three dot-separated numbers; says which way.
        case malformedCore(String)
        /// `part` ("major", "minor", "patch") is not a plain decimal number in range.
        case badNumber(part: String, value: String)
        case badPreRelease(String)
        case badBuild(String)
        /// `k3s --version` output whose first line is not `k3s version vX.Y.Z…`.
        case notVersionOutput(firstLine: String)
    }

    /// The text as given (cut at 140 characters).
    public let text: String
    public let problem: Problem

    public init(text: String, problem: Problem) {
        self.text = String(text.prefix(140))
        self.problem = problem
    }

    public var description: String {
        let shape = "a k3s version looks like v1.30.6+k3s1, v1.31.0-rc1+k3s1 or v1.31.5+k3s-39b54b9f"
        switch problem {
        case .empty:
            return "empty k3s version: \(shape)"
        case .tooLong(let bytes):
            return "\"\(text)…\" is \(bytes) bytes, too long for a k3s version (\(K3sVersionParser.textBytesMax) at most): \(shape)"
        case .malformedCore(let why):
            return "\"\(text)\" is not a k3s version: \(why); \(shape)"
        case .badNumber(let part, let value):
            return "\"\(text)\" is not a k3s version: the \(part) version \"\(value)\" is not a number from 0 to \(K3sVersion.componentMax) without leading zeros; \(shape)"
        case .badPreRelease(let why):
            return "\"\(text)\" is not a k3s version: its pre-release part (after \"-\") \(why); \(shape)"
        case .badBuild(let why):
            return "\"\(text)\" is not a k3s version: its build part (after \"+\") \(why); \(shape)"
        case .notVersionOutput(let line):
            return "k3s --version printed \"\(line.prefix(140))\" where \"k3s version vX.Y.Z+k3sN (commit)\" was expected; is this a k3s binary?"
        }
    }
}

enum K3sVersionParser {
    static let textBytesMax = 128

    static func parse(_ raw: String) throws(K3sVersionError) -> K3sVersion {
        let text = trimmed(raw)
        guard !text.isEmpty else { throw K3sVersionError(text: raw, problem: .empty) }
        guard text.utf8.count <= textBytesMax else {
            throw K3sVersionError(text: text, problem: .tooLong(bytes: text.utf8.count))
        }
        var rest = text.hasPrefix("v") ? text.dropFirst() : Substring(text)

        var build: String?
        if let plus = rest.firstIndex(of: "+") {
            let part = rest[rest.index(after: plus)...]
            if part.isEmpty { throw K3sVersionError(text: text, problem: .badBuild("is empty")) }
            if let bad = part.first(where: { !isIdentifierCharacter($0) && $0 != "." }) {
                throw K3sVersionError(text: text, problem: .badBuild("contains \"\(bad)\"; only letters, digits, \".\" and \"-\" are allowed"))
            }
            build = String(part)
            rest = rest[..<plus]
        }

        var preRelease: [String] = []
        if let dash = rest.firstIndex(of: "-") {
            let part = rest[rest.index(after: dash)...]
            let identifiers = part.split(separator: ".", omittingEmptySubsequences: false)
            for identifier in identifiers {
                if identifier.isEmpty {
                    throw K3sVersionError(text: text, problem: .badPreRelease("has an empty identifier"))
                }
                if let bad = identifier.first(where: { !isIdentifierCharacter($0) }) {
                    throw K3sVersionError(text: text, problem: .badPreRelease("contains \"\(bad)\"; only letters, digits, \".\" and \"-\" are allowed"))
                }
            }
            preRelease = identifiers.map(String.init)
            rest = rest[..<dash]
        }

        let core = rest.split(separator: ".", omittingEmptySubsequences: false)
        guard core.count == 3 else {
            throw K3sVersionError(text: text, problem: .malformedCore(
                "it has \(core.count) dot-separated number\(core.count == 1 ? "" : "s") before any \"-\" or \"+\" where MAJOR.MINOR.PATCH needs 3"))
        }
        return K3sVersion(major: try number(core[0], name: "major", in: text),
                          minor: try number(core[1], name: "minor", in: text),
                          patch: try number(core[2], name: "patch", in: text),
                          preRelease: preRelease, build: build)
    }

    static func number(_ part: Substring, name: String, in text: String) throws(K3sVersionError) -> Int {
        let bad = K3sVersionError(text: text, problem: .badNumber(part: name, value: String(part)))
        guard !part.isEmpty, part.utf8.count <= 5, part.utf8.allSatisfy(isDigit) else { throw bad }
        guard part == "0" || !part.hasPrefix("0") else { throw bad }
        guard let value = Int(part), value <= K3sVersion.componentMax else { throw bad }
        return value
    }

    static func isIdentifierCharacter(_ character: Character) -> Bool {
        guard let ascii = character.asciiValue else { return false }
        return isDigit(ascii) || (ascii >= UInt8(ascii: "a") && ascii <= UInt8(ascii: "z"))
            || (ascii >= UInt8(ascii: "A") && ascii <= UInt8(ascii: "Z")) || ascii == UInt8(ascii: "-")
    }

    static func trimmed(_ text: String) -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        guard let first = text.firstIndex(where: { !isSpace($0) }),
              let last = text.lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(text[first...last])
    }
}

/// What `k3s --version` printed: since late 2020 two lines,
/// `k3s version v1.28.11+k3s1 (617b0e84)` and `go version go1.21.11`; before that only the first.
/// The version is the third word of the first line; it need not end in `+k3sN`.
public struct K3sVersionOutput: Equatable, Sendable {
    public let version: K3sVersion
    /// The short commit in parentheses, when printed.
    public let commit: String?
    /// `go1.21.11` from the second line, when there is one.
    public let goVersion: String?

    public init(parsing output: String) throws(K3sVersionError) {
        let lines = output.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" })
            .map { K3sVersionParser.trimmed(String($0)) }
            .filter { !$0.isEmpty }
        guard let first = lines.first else {
            throw K3sVersionError(text: output, problem: .notVersionOutput(firstLine: ""))
        }
        let words = first.split(separator: " ", omittingEmptySubsequences: true)
        guard words.count >= 3, words[1] == "version", words[2].hasPrefix("v") else {
            throw K3sVersionError(text: output, problem: .notVersionOutput(firstLine: first))
        }
        version = try K3sVersion(String(words[2]))
        if words.count >= 4, words[3].hasPrefix("("), words[3].hasSuffix(")"), words[3].count > 2 {
            commit = String(words[3].dropFirst().dropLast())
        } else {
            commit = nil
        }
        if lines.count >= 2 {
            let second = lines[1].split(separator: " ")
            goVersion = second.count >= 3 && second[0] == "go" && second[1] == "version" ? String(second[2]) : nil
        } else {
            goVersion = nil
        }
    }
}
