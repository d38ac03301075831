#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A Kubernetes label selector in its string form (`app=web,tier!=db,env in (a,b),!legacy`).
///
/// Used by the client to build list requests and by the simulated API to answer them, so both
/// read selectors the same way.
public struct LabelSelector: Sendable, Equatable, CustomStringConvertible {
    public enum Requirement: Sendable, Equatable {
        case equals(String, String)
        case notEquals(String, String)
        case isIn(String, Set<String>)
        case notIn(String, Set<String>)
        case exists(String)
        case doesNotExist(String)
    }

    public var requirements: [Requirement]

    public init(_ requirements: [Requirement] = []) { self.requirements = requirements }

    /// Selects objects whose labels include all of `labels`.
    public init(matching labels: [String: String]) {
        requirements = labels.keys.sorted().map { .equals($0, labels[$0]!) }
    }

    public var isEmpty: Bool { requirements.isEmpty }

    public func matches(_ labels: [String: String]) -> Bool {
        requirements.allSatisfy { requirement in
            switch requirement {
            case .equals(let key, let value): labels[key] == value
            case .notEquals(let key, let value): labels[key] != value
            case .isIn(let key, let values): labels[key].map(values.contains) ?? false
            case .notIn(let key, let values): !(labels[key].map(values.contains) ?? false)
            case .exists(let key): labels[key] != nil
            case .doesNotExist(let key): labels[key] == nil
            }
        }
    }

    public var description: String {
        requirements.map { requirement in
            switch requirement {
            case .equals(let key, let value): "\(key)=\(value)"
            case .notEquals(let key, let value): "\(key)!=\(value)"
            case .isIn(let key, let values): "\(key) in (\(values.sorted().joined(separator: ",")))"
            case .notIn(let key, let values): "\(key) notin (\(values.sorted().joined(separator: ",")))"
            case .exists(let key): key
            case .doesNotExist(let key): "!\(key)"
            }
        }.joined(separator: ",")
    }

    /// Parses the string form; throws `SelectorError` naming the bad part.
    public static func parse(_ text: String) throws(SelectorError) -> LabelSelector {
        var requirements: [Requirement] = []
        for part in splitTopLevel(text) {
            let term = part.trimmingSpaces
            if term.isEmpty { continue }
            if term.hasPrefix("!") {
                let key = String(term.dropFirst()).trimmingSpaces
                guard isValidKey(key) else { throw SelectorError(selector: text, term: term) }
                requirements.append(.doesNotExist(key))
            } else if let (range, isNotIn) = term.firstRange(of: " notin ").map({ ($0, true) }) ?? term.firstRange(of: " in ").map({ ($0, false) }) {
                let key = String(term[..<range.lowerBound]).trimmingSpaces
                let rest = String(term[range.upperBound...]).trimmingSpaces
                guard isValidKey(key), rest.hasPrefix("("), rest.hasSuffix(")") else {
                    throw SelectorError(selector: text, term: term)
                }
                let values = Set(rest.dropFirst().dropLast().split(separator: ",").map { String($0).trimmingSpaces })
                requirements.append(isNotIn ? .notIn(key, values) : .isIn(key, values))
            } else if let (key, value, negated) = splitComparison(term) {
                guard isValidKey(key) else { throw SelectorError(selector: text, term: term) }
                requirements.append(negated ? .notEquals(key, value) : .equals(key, value))
            } else {
                guard isValidKey(term) else { throw SelectorError(selector: text, term: term) }
                requirements.append(.exists(term))
            }
        }
        return LabelSelector(requirements)
    }

    /// Selects like a `metav1.LabelSelector` object (`matchLabels`, `matchExpressions`).
    public init(_ json: JSON) {
        var requirements: [Requirement] = []
        for (key, value) in (json["matchLabels"]?.object ?? [:]).sorted(by: { $0.key < $1.key }) {
            requirements.append(.equals(key, value.string ?? ""))
        }
        for expression in json["matchExpressions"]?.array ?? [] {
            let key = expression["key"]?.string ?? ""
            let values = Set((expression["values"]?.array ?? []).compactMap(\.string))
            switch expression["operator"]?.string {
            case "In": requirements.append(.isIn(key, values))
            case "NotIn": requirements.append(.notIn(key, values))
            case "Exists": requirements.append(.exists(key))
            case "DoesNotExist": requirements.append(.doesNotExist(key))
            default: requirements.append(.isIn(key, []))  // unknown operators select nothing
            }
        }
        self.requirements = requirements
    }
}

/// A Kubernetes field selector (`spec.nodeName=node-1,status.phase!=Succeeded`).
public struct FieldSelector: Sendable, Equatable, CustomStringConvertible {
    public struct Term: Sendable, Equatable {
        public var field: String
        public var value: String
        public var negated: Bool
        public init(field: String, value: String, negated: Bool = false) {
            self.field = field
            self.value = value
            self.negated = negated
        }
    }

    public var terms: [Term]
    public init(_ terms: [Term] = []) { self.terms = terms }

    public static func equals(_ field: String, _ value: String) -> FieldSelector {
        FieldSelector([Term(field: field, value: value)])
    }

    public var description: String {
        terms.map { "\($0.field)\($0.negated ? "!=" : "=")\($0.value)" }.joined(separator: ",")
    }

    public static func parse(_ text: String) throws(SelectorError) -> FieldSelector {
        var terms: [Term] = []
        for part in text.split(separator: ",") {
            let term = String(part).trimmingSpaces
            if term.isEmpty { continue }
            guard let (field, value, negated) = LabelSelector.splitComparison(term), !field.isEmpty else {
                throw SelectorError(selector: text, term: term)
            }
            terms.append(Term(field: field, value: value, negated: negated))
        }
        return FieldSelector(terms)
    }

    /// Whether `object` matches, reading each field as a dotted path of object members; an
    /// absent field reads as the empty string, as the API server does.
    public func matches(_ object: JSON) -> Bool {
        terms.allSatisfy { term in
            let path = term.field.split(separator: ".").map(String.init)
            let actual: String
            switch object[pathArray: path] {
            case .string(let s): actual = s
            case .bool(let b): actual = b ? "true" : "false"
            case .int(let i): actual = String(i)
            default: actual = ""
            }
            return (actual == term.value) != term.negated
        }
    }
}

/// A selector that cannot be read; the API answers 400.
public struct SelectorError: Error, Equatable, CustomStringConvertible {
    public let selector: String
    public let term: String
    public var description: String { "unable to parse requirement \"\(term)\" in selector \"\(selector)\"" }
}

extension LabelSelector {
    static func splitComparison(_ term: String) -> (String, String, Bool)? {
        for (op, negated) in [("!=", true), ("==", false), ("=", false)] {
            if let range = term.firstRange(of: op) {
                return (String(term[..<range.lowerBound]).trimmingSpaces, String(term[range.upperBound...]).trimmingSpaces, negated)
            }
        }
        return nil
    }

    /// Splits on commas outside parentheses.
    static func splitTopLevel(_ text: String) -> [String] {
        var parts: [String] = []
        var current = ""
        var depth = 0
        for c in text {
            if c == "(" { depth += 1 }
            if c == ")" { depth -= 1 }
            if c == ",", depth == 0 {
                parts.append(current)
                current = ""
            } else {
                current.append(c)
            }
        }
        parts.append(current)
        return parts
    }

    static func isValidKey(_ key: String) -> Bool {
        !key.isEmpty && key.count <= 316
            && key.allSatisfy { $0.isLetter || $0.isNumber || "-_./".contains($0) }
    }
}

extension String {
    /// Without leading and trailing spaces and tabs (HTTP's optional whitespace; kubectl trims
    /// selector terms the same way).
    var trimmingSpaces: String {
        var s = Substring(self)
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return String(s)
    }
}
