import Foundation

/// The fenced blocks of a Markdown guide that a test runs (docs/operations.md, "This guide is
/// tested"), with what the HTML comments right above each one say.
///
/// A ```` ```sh ```` block is run unless `<!-- not-run: REASON -->` marks it; `text`, `yaml` and
/// `json` blocks are shown, never run. Anything else is refused, so that no shell block is
/// skipped without saying so: a block in another language (or none), a directive above a block
/// that is not `sh`, a directive with an unknown name or no value, a directive not followed by
/// a block, an unclosed fence.
struct GuideBlock: Equatable, Sendable {
    /// The line of the opening fence, from 1.
    var line: Int
    var text: String
    /// Why the test does not run it; nil: it runs.
    var notRun: String?
    /// Texts the output (stdout and stderr) must contain.
    var expects: [String] = []
    var exitCode: Int32 = 0
    /// What the test does to the sandbox before the block (`OperationsGuideTests.SandboxAction`).
    var sandbox: [String] = []
}

enum OperationsGuide {
    struct Refusal: Error, CustomStringConvertible, Equatable {
        let line: Int
        let message: String
        var description: String { "line \(line): \(message)" }
    }

    static let runLanguage = "sh"
    static let shownLanguages: Set<String> = ["text", "yaml", "json"]
    static let directiveNames: Set<String> = ["not-run", "expect", "exit", "sandbox"]

    /// Every `sh` block of `markdown`, in order, with its directives.
    static func blocks(_ markdown: String) throws(Refusal) -> [GuideBlock] {
        let lines = markdown.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var blocks: [GuideBlock] = []
        var pending: [(line: Int, name: String, value: String)] = []
        var index = 0
        while index < lines.count {
            let number = index + 1
            let trimmed = lines[index].trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("<!--") {
                guard let directive = directive(trimmed) else {
                    if !pending.isEmpty { throw Refusal(line: number, message: "a comment between directives and their block: \(trimmed)") }
                    index += 1
                    continue
                }
                guard directiveNames.contains(directive.name) else {
                    throw Refusal(line: number, message: "unknown directive \(directive.name) (known: \(directiveNames.sorted().joined(separator: ", ")))")
                }
                guard !directive.value.isEmpty else { throw Refusal(line: number, message: "directive \(directive.name) without a value") }
                pending.append((number, directive.name, directive.value))
                index += 1
                continue
            }
            if trimmed.hasPrefix("```") {
                let indent = lines[index].prefix { $0 == " " }.count
                let language = String(trimmed.dropFirst(3)).trimmingCharacters(in: .whitespaces)
                guard let close = lines[(index + 1)...].firstIndex(where: { $0.trimmingCharacters(in: .whitespaces) == "```" }) else {
                    throw Refusal(line: number, message: "the fence is never closed")
                }
                let body = lines[(index + 1)..<close].map { String($0.dropFirst(min(indent, $0.prefix { $0 == " " }.count))) }
                if language == runLanguage {
                    blocks.append(try block(line: number, text: body.joined(separator: "\n") + "\n", directives: pending))
                } else if shownLanguages.contains(language) {
                    if let first = pending.first {
                        throw Refusal(line: first.line, message: "\(first.name) above a \(language) block, which is never run")
                    }
                } else {
                    throw Refusal(line: number, message: "a ```\(language) block: make it ```sh (run, or marked <!-- not-run: why -->) "
                                  + "or one of \(shownLanguages.sorted().joined(separator: ", ")) (shown, never run)")
                }
                pending = []
                index = close + 1
                continue
            }
            if let first = pending.first {
                throw Refusal(line: first.line, message: "\(first.name) is not followed by a ```sh block (directives go right above the fence)")
            }
            index += 1
        }
        if let first = pending.first { throw Refusal(line: first.line, message: "\(first.name) at the end, with no block") }
        return blocks
    }

    /// `<!-- name: value -->` on one line; nil for any other comment.
    static func directive(_ line: String) -> (name: String, value: String)? {
        guard line.hasPrefix("<!--"), line.hasSuffix("-->"), line.count >= 7 else { return nil }
        let inner = line.dropFirst(4).dropLast(3).trimmingCharacters(in: .whitespaces)
        guard let colon = inner.firstIndex(of: ":") else { return nil }
        let name = String(inner[..<colon])
        guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0 == "-" }) else { return nil }
        return (name, inner[inner.index(after: colon)...].trimmingCharacters(in: .whitespaces))
    }

    static func block(line: Int, text: String, directives: [(line: Int, name: String, value: String)]) throws(Refusal) -> GuideBlock {
        var block = GuideBlock(line: line, text: text)
        for directive in directives {
            switch directive.name {
            case "not-run": block.notRun = directive.value
            case "expect": block.expects.append(directive.value)
            case "sandbox": block.sandbox.append(directive.value)
            case "exit":
                guard let code = Int32(directive.value), (0...255).contains(code) else {
                    throw Refusal(line: directive.line, message: "exit: \(directive.value) is not an exit code")
                }
                block.exitCode = code
            default: preconditionFailure("directive names are checked when read")
            }
        }
        if block.notRun != nil, directives.count > 1 {
            throw Refusal(line: line, message: "a not-run block with other directives: they would never be checked")
        }
        return block
    }

    /// `text` with every path under `/etc/upkeep` and `/var/lib/upkeep` moved under `root`
    /// (not `/etc/upkeep-…` or `/var/lib/upkeep-agent`, which are other names).
    static func rooted(_ text: String, under root: String) -> String {
        var result = ""
        var rest = Substring(text)
        let prefixes = ["/etc/upkeep", "/var/lib/upkeep"]
        while let (range, prefix) = prefixes.compactMap({ prefix in rest.range(of: prefix).map { ($0, prefix) } })
            .min(by: { $0.0.lowerBound < $1.0.lowerBound }) {
            let before = range.lowerBound == rest.startIndex ? nil : rest[rest.index(before: range.lowerBound)]
            let after = range.upperBound == rest.endIndex ? nil : rest[range.upperBound]
            let standsAlone = !(before.map { $0.isLetter || $0.isNumber || "/._-".contains($0) } ?? false)
                && !(after.map { $0.isLetter || $0.isNumber || "._-".contains($0) } ?? false)
            result += rest[..<range.lowerBound] + (standsAlone ? root + prefix : prefix)
            rest = rest[range.upperBound...]
        }
        return result + rest
    }
}
