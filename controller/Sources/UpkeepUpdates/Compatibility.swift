import Foundation
import UpkeepCore

/// What Kubernetes versions a range of Flux or Longhorn releases needs, and where that fact
/// comes from. Data, not code: a mirror's `compatibility.json` or `--compatibility FILE`
/// replaces the entries of the components it names.
public struct CompatibilityEntry: Sendable, Equatable, Codable {
    public var component: Component
    /// First version the entry covers (inclusive).
    public var from: K3sVersion
    /// First version it no longer covers (exclusive); nil: all later versions.
    public var before: K3sVersion?
    /// Oldest Kubernetes minor these releases support.
    public var kubernetesMin: MinorLine?
    /// Newest Kubernetes minor these releases support, when the project states one.
    public var kubernetesMax: MinorLine?
    /// Where the fact was read (repository path at a tag, or documentation URL).
    public var source: String

    public init(component: Component, from: K3sVersion, before: K3sVersion? = nil, kubernetesMin: MinorLine? = nil,
                kubernetesMax: MinorLine? = nil, source: String)
    {
        self.component = component
        self.from = from
        self.before = before
        self.kubernetesMin = kubernetesMin
        self.kubernetesMax = kubernetesMax
        self.source = source
    }

    public func covers(_ version: K3sVersion) -> Bool {
        // Compare without build metadata: the table speaks of releases.
        let plain = K3sVersion(major: version.major, minor: version.minor, patch: version.patch, preRelease: version.preRelease, build: nil)
        return from <= plain && before.map { plain < $0 } ?? true
    }
}

/// The entries Upkeep checks cross-component warnings against.
public struct CompatibilityTable: Sendable, Equatable {
    public var entries: [CompatibilityEntry]

    public init(entries: [CompatibilityEntry]) {
        self.entries = entries
    }

    /// The entry for `version` of `component`; the last matching entry wins.
    public func entry(for component: Component, _ version: K3sVersion) -> CompatibilityEntry? {
        entries.last { $0.component == component && $0.covers(version) }
    }

    /// This table with every entry of the components `overrides` names replaced by `overrides`.
    public func replacing(with overrides: [CompatibilityEntry]) -> CompatibilityTable {
        let replaced = Set(overrides.map(\.component))
        return CompatibilityTable(entries: entries.filter { !replaced.contains($0.component) } + overrides)
    }

    /// The entries of a compatibility file (`--compatibility FILE`), named by its path.
    public static func entries(file path: String) throws(AnswerError) -> [CompatibilityEntry] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw AnswerError(source: path, problem: "the compatibility file cannot be read")
        }
        return try entries(fromJSON: Array(data), source: path)
    }

    /// `{"entries":[{"component":"longhorn","from":"v1.8.0","before":"v1.11.3","kubernetesMin":"v1.25","source":"…"}]}`.
    public static func entries(fromJSON bytes: [UInt8], source: String) throws(AnswerError) -> [CompatibilityEntry] {
        struct File: Decodable { var entries: [CompatibilityEntry] }
        do {
            let file = try JSONDecoder().decode(File.self, from: Data(bytes))
            for (index, entry) in file.entries.enumerated() {
                if let before = entry.before, before <= entry.from {
                    throw AnswerError(source: source, location: ".entries[\(index)]", problem: "before (\(before)) is not after from (\(entry.from))")
                }
                if entry.component == .k3s {
                    throw AnswerError(source: source, location: ".entries[\(index)].component", problem: "entries describe flux or longhorn")
                }
                if entry.source.isEmpty {
                    throw AnswerError(source: source, location: ".entries[\(index)].source", problem: "every entry names where its fact comes from")
                }
            }
            return file.entries
        } catch let error as AnswerError {
            throw error
        } catch {
            throw AnswerError(source: source, problem: "not a compatibility table (\(error))")
        }
    }

    private static func entry(_ component: Component, _ from: String, _ before: String?, min: String, max: String? = nil,
                              _ source: String) -> CompatibilityEntry
    {
        // The literals below are checked by the tests; a typo is a bug, not operator input.
        CompatibilityEntry(component: component, from: try! K3sVersion(from), before: before.map { try! K3sVersion($0) },
                           kubernetesMin: try! MinorLine(min), kubernetesMax: max.map { try! MinorLine($0) }, source: source)
    }

    /// Facts read from the upstream repositories at each release tag; each entry's source is
    /// the URL of what was read, so a refusal can name it.
    /// - Flux: the `kubernetesConstraints` of fluxcd/flux2 `cmd/flux/check.go` at `vX.Y.0`
    ///   (unchanged by any patch release up to v2.9.4), the minimum `flux check --pre` enforces
    ///   and the one the installation guide's prerequisites state
    ///   (https://fluxcd.io/flux/installation/#prerequisites). Flux states no maximum in code.
    /// - Longhorn: "Ensure that your cluster is running Kubernetes vX or later" in
    ///   longhorn/longhorn `CHANGELOG/CHANGELOG-<version>.md` (also `kubeVersion` of
    ///   `chart/Chart.yaml`); v1.11.3 alone raised it to v1.34 (CSI external provisioner v6.3.0).
    ///   Longhorn states no maximum: add `kubernetesMax` through a compatibility file when your
    ///   support matrix gives one.
    public static let builtIn = CompatibilityTable(entries: [
        entry(.flux, "v2.0.0", "v2.1.0", min: "v1.24", fluxCheck("v2.0.0")),
        entry(.flux, "v2.1.0", "v2.2.0", min: "v1.25", fluxCheck("v2.1.0")),
        entry(.flux, "v2.2.0", "v2.3.0", min: "v1.26", fluxCheck("v2.2.0")),
        entry(.flux, "v2.3.0", "v2.5.0", min: "v1.28", fluxCheck("v2.3.0") + " (the same at v2.4.0)"),
        entry(.flux, "v2.5.0", "v2.6.0", min: "v1.30", fluxCheck("v2.5.0")),
        entry(.flux, "v2.6.0", "v2.7.0", min: "v1.31", fluxCheck("v2.6.0")),
        entry(.flux, "v2.7.0", "v2.8.0", min: "v1.32", fluxCheck("v2.7.0")),
        entry(.flux, "v2.8.0", nil, min: "v1.33", fluxCheck("v2.8.0") + " (the same at v2.9.0)"),
        entry(.longhorn, "v1.4.0", "v1.8.0", min: "v1.21", longhornChangelog("1.4.0") + " (to CHANGELOG-1.7.3.md)"),
        entry(.longhorn, "v1.8.0", "v1.11.3", min: "v1.25", longhornChangelog("1.8.0") + " (to CHANGELOG-1.11.2.md)"),
        entry(.longhorn, "v1.11.3", "v1.12.0", min: "v1.34", longhornChangelog("1.11.3")),
        entry(.longhorn, "v1.12.0", nil, min: "v1.25", longhornChangelog("1.12.0") + " (and CHANGELOG-1.12.1.md)"),
    ])

    private static func fluxCheck(_ tag: String) -> String {
        "https://github.com/fluxcd/flux2/blob/\(tag)/cmd/flux/check.go"
    }

    private static func longhornChangelog(_ version: String) -> String {
        "https://github.com/longhorn/longhorn/blob/master/CHANGELOG/CHANGELOG-\(version).md"
    }
}
