#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The patch formats the Kubernetes API accepts, applied to JSON values.
///
/// Both the client (to predict an outcome) and the simulated API server (to answer a PATCH) use
/// these, so they must match what a real API server does for the objects Upkeep touches.
public enum PatchType: String, Sendable, CaseIterable {
    /// RFC 7386: objects merge, `null` deletes, everything else (arrays included) replaces.
    case merge = "application/merge-patch+json"
    /// Kubernetes strategic merge patch: like `merge`, but lists with a merge key merge by it.
    case strategicMerge = "application/strategic-merge-patch+json"
    /// RFC 6902 operations.
    case json = "application/json-patch+json"

    /// The patch type named by a `Content-Type` header, ignoring parameters.
    public init?(contentType: String) {
        let bare = contentType.split(separator: ";").first.map { String($0).trimmingSpaces } ?? ""
        self.init(rawValue: bare)
    }
}

/// Why a patch could not be applied; the API answers 422 (or 415 for an unsupported type).
public struct PatchError: Error, Equatable, CustomStringConvertible {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

public enum Patch {
    /// RFC 7386 JSON merge patch.
    public static func merge(_ target: JSON, _ patch: JSON) -> JSON {
        guard case .object(let members) = patch else { return patch }
        var result: JSON = if case .object = target { target } else { .object([:]) }
        for (key, value) in members {
            if value.isNull {
                result[key] = nil
            } else {
                result[key] = merge(result[key] ?? .null, value)
            }
        }
        return result
    }

    /// Kubernetes strategic merge patch for the built-in objects Upkeep reads and writes.
    ///
    /// Lists merge by the merge key the Kubernetes API declares for them (by field name: a
    /// `conditions` list merges by `type`, `containers` by `name`, …); other lists replace.
    /// Supports the directives `$patch: delete|replace|merge`, `$deleteFromPrimitiveList/<field>`,
    /// and ignores `$setElementOrder/<field>` and `$retainKeys` ordering hints.
    public static func strategicMerge(_ target: JSON, _ patch: JSON) throws(PatchError) -> JSON {
        try strategic(target, patch, field: "")
    }

    /// The merge key of the lists that merge rather than replace, by field name.
    public static let mergeKeys: [String: String] = [
        "conditions": "type", "addresses": "type", "containers": "name", "initContainers": "name",
        "ephemeralContainers": "name", "volumes": "name", "env": "name", "ports": "containerPort",
        "volumeMounts": "mountPath", "taints": "key", "ownerReferences": "uid", "imagePullSecrets": "name",
        "images": "names",
    ]
    /// Lists of scalars that merge as sets.
    public static let setLists: Set<String> = ["finalizers"]

    private static func strategic(_ target: JSON, _ patch: JSON, field: String) throws(PatchError) -> JSON {
        guard case .object(var members) = patch else { return patch }
        if let directive = members["$patch"]?.string {
            members["$patch"] = nil
            switch directive {
            case "delete": return .null
            case "replace": return .object(members)
            case "merge": break
            default: throw PatchError("unknown $patch directive \(directive)")
            }
        }
        var result: JSON = if case .object = target { target } else { .object([:]) }
        var deletions: [String: [JSON]] = [:]
        for (key, value) in members {
            if key.hasPrefix("$setElementOrder/") || key == "$retainKeys" { continue }
            if key.hasPrefix("$deleteFromPrimitiveList/") {
                let name = String(key.dropFirst("$deleteFromPrimitiveList/".count))
                guard case .array(let items) = value else { throw PatchError("\(key) must be a list") }
                deletions[name] = items
                continue
            }
            if key.hasPrefix("$") { throw PatchError("unknown patch directive \(key)") }
            if value.isNull {
                result[key] = nil
                continue
            }
            let current = result[key] ?? .null
            switch value {
            case .array(let patchItems):
                result[key] = try mergeList(current.array ?? [], patchItems, field: key)
            case .object:
                let merged = try strategic(current, value, field: key)
                result[key] = merged.isNull ? nil : merged
            default:
                result[key] = value
            }
        }
        for (name, removed) in deletions {
            if let items = result[name]?.array {
                result[name] = .array(items.filter { !removed.contains($0) })
            }
        }
        return result
    }

    private static func mergeList(_ current: [JSON], _ patch: [JSON], field: String) throws(PatchError) -> JSON {
        if setLists.contains(field) {
            var merged = current
            for item in patch where !merged.contains(item) { merged.append(item) }
            return .array(merged)
        }
        guard let key = mergeKeys[field] else { return .array(patch) }
        // A `$patch: replace` element replaces the whole list with the other elements.
        if patch.contains(where: { $0["$patch"]?.string == "replace" }) {
            return .array(patch.filter { $0["$patch"]?.string != "replace" })
        }
        var merged = current
        for item in patch {
            guard case .object = item, let keyValue = item[key] else {
                throw PatchError("list \(field) merges by \(key), but an element has no \(key)")
            }
            if let position = merged.firstIndex(where: { $0[key] == keyValue }) {
                let updated = try strategic(merged[position], item, field: field)
                if updated.isNull { merged.remove(at: position) } else { merged[position] = updated }
            } else if item["$patch"]?.string != "delete" {
                var added = item
                added["$patch"] = nil
                merged.append(added)
            }
        }
        return .array(merged)
    }

    /// RFC 6902 JSON patch (add, remove, replace, test; paths as JSON pointers).
    public static func jsonPatch(_ target: JSON, _ operations: JSON) throws(PatchError) -> JSON {
        guard case .array(let ops) = operations else { throw PatchError("a JSON patch is a list of operations") }
        var result = target
        for op in ops {
            guard let name = op["op"]?.string, let path = op["path"]?.string else {
                throw PatchError("each JSON patch operation needs op and path")
            }
            let tokens = try pointerTokens(path)
            switch name {
            case "add", "replace":
                guard let value = op["value"] else { throw PatchError("\(name) needs a value") }
                if name == "replace", try pointerGet(result, tokens) == nil { throw PatchError("replace: \(path) does not exist") }
                result = try pointerSet(result, tokens, value, insert: name == "add")
            case "remove":
                guard try pointerGet(result, tokens) != nil else { throw PatchError("remove: \(path) does not exist") }
                result = try pointerSet(result, tokens, nil, insert: false)
            case "test":
                guard try pointerGet(result, tokens) == op["value"] else { throw PatchError("test failed at \(path)") }
            default:
                throw PatchError("unsupported JSON patch operation \(name)")
            }
        }
        return result
    }

    private static func pointerTokens(_ path: String) throws(PatchError) -> [String] {
        if path.isEmpty { return [] }
        guard path.hasPrefix("/") else { throw PatchError("JSON pointer \(path) must start with /") }
        return path.dropFirst().split(separator: "/", omittingEmptySubsequences: false).map(unescapePointerToken)
    }

    /// RFC 6901's `~1` → `/` and `~0` → `~`, left to right in one pass (as the API server's
    /// json-patch library decodes them: `~01` is `~1`); any other `~` stays.
    static func unescapePointerToken(_ token: Substring) -> String {
        var out = ""
        var rest = token[...]
        while let tilde = rest.firstIndex(of: "~") {
            out += rest[..<tilde]
            let next = rest.index(after: tilde)
            switch next < rest.endIndex ? rest[next] : nil {
            case "1": out += "/"; rest = rest[rest.index(after: next)...]
            case "0": out += "~"; rest = rest[rest.index(after: next)...]
            default: out += "~"; rest = rest[next...]
            }
        }
        return out + rest
    }

    private static func pointerGet(_ value: JSON, _ tokens: [String]) throws(PatchError) -> JSON? {
        var current: JSON? = value
        for token in tokens {
            switch current {
            case .object(let members): current = members[token]
            case .array(let items):
                guard let i = Int(token), items.indices.contains(i) else { return nil }
                current = items[i]
            default: return nil
            }
        }
        return current
    }

    private static func pointerSet(_ value: JSON, _ tokens: [String], _ newValue: JSON?, insert: Bool) throws(PatchError) -> JSON {
        guard let token = tokens.first else { return newValue ?? .null }
        let rest = Array(tokens.dropFirst())
        switch value {
        case .object(var members):
            if rest.isEmpty {
                members[token] = newValue
            } else {
                guard let child = members[token] else { throw PatchError("path element \(token) does not exist") }
                members[token] = try pointerSet(child, rest, newValue, insert: insert)
            }
            return .object(members)
        case .array(var items):
            if rest.isEmpty {
                if token == "-" && insert, let newValue {
                    items.append(newValue)
                } else {
                    guard let i = Int(token), i >= 0, i <= items.count else { throw PatchError("bad list index \(token)") }
                    if let newValue {
                        if insert { items.insert(newValue, at: i) } else {
                            guard i < items.count else { throw PatchError("bad list index \(token)") }
                            items[i] = newValue
                        }
                    } else {
                        guard i < items.count else { throw PatchError("bad list index \(token)") }
                        items.remove(at: i)
                    }
                }
            } else {
                guard let i = Int(token), items.indices.contains(i) else { throw PatchError("bad list index \(token)") }
                items[i] = try pointerSet(items[i], rest, newValue, insert: insert)
            }
            return .array(items)
        default:
            throw PatchError("path element \(token) is inside a scalar")
        }
    }
}
