import UpkeepCore

/// One entry of the compatibility table that rules out a pair: `component` at `version` does
/// not support Kubernetes `kubernetes`, which it is below the entry's minimum or above its
/// maximum for.
public struct CompatibilityConflict: Equatable, Sendable {
    public enum Limit: Equatable, Sendable {
        case minimum(MinorLine)
        case maximum(MinorLine)
    }

    public var component: Component
    public var version: K3sVersion
    public var kubernetes: MinorLine
    public var limit: Limit
    /// The entry that says so (its `source` is named in every message).
    public var entry: CompatibilityEntry
    /// The nodes that run `kubernetes` (when a Flux or Longhorn target is judged); empty when
    /// a k3s target is.
    public var nodes: [String] = []

    /// `Longhorn v1.7.2 supports Kubernetes up to v1.31` / `Flux v2.8.0 needs Kubernetes v1.33 or newer`.
    public var statement: String {
        switch limit {
        case .minimum(let minimum): "\(component.title) \(version) needs Kubernetes \(minimum) or newer"
        case .maximum(let maximum): "\(component.title) \(version) supports Kubernetes up to \(maximum)"
        }
    }

    /// `the table's entry for Longhorn v1.4.0 up to v1.8.0 (source: …)`.
    public var entryText: String {
        let range = entry.before.map { "\(entry.from) up to \($0)" } ?? "\(entry.from) and later"
        return "the compatibility entry for \(component.title) \(range) (source: \(entry.source))"
    }
}

/// Why a change is refused by the compatibility table: a k3s target that the installed Flux or
/// Longhorn does not support, or a Flux or Longhorn target that does not support every node's
/// Kubernetes. A value, not a failure: the command decides whether it refuses, or goes on when
/// the operator overrides it (`--ignore-compatibility` with a typed confirmation).
public struct CompatibilityRefusal: Equatable, Sendable, CustomStringConvertible {
    public enum Change: Equatable, Sendable {
        case k3s(K3sVersion)
        case component(Component, K3sVersion)
    }

    public var change: Change
    /// At least one.
    public var conflicts: [CompatibilityConflict]

    /// The version the change goes to: what the operator types to override the refusal.
    public var target: K3sVersion {
        switch change {
        case .k3s(let version), .component(_, let version): version
        }
    }

    /// What the change is, in words: `k3s v1.32.1+k3s1`, `Flux v2.8.0`.
    public var changeText: String {
        switch change {
        case .k3s(let version): "k3s \(version)"
        case .component(let component, let version): "\(component.title) \(version)"
        }
    }

    /// What the table says, without the advice: for history records.
    public var finding: String {
        conflicts.map { conflict in
            var text = "\(conflict.statement) (\(conflict.entryText))"
            switch change {
            case .k3s(let version): text += ", and \(changeText) is Kubernetes \(conflict.kubernetes)" + (version.minorLine == conflict.kubernetes ? "" : " on the way")
            case .component:
                let named = conflict.nodes.prefix(5).joined(separator: ", ") + (conflict.nodes.count > 5 ? " and \(conflict.nodes.count - 5) more" : "")
                text += ", and \(named) run\(conflict.nodes.count == 1 ? "s" : "") Kubernetes \(conflict.kubernetes)"
            }
            return text
        }.joined(separator: "; ")
    }

    /// What to do instead.
    public var advice: String {
        switch change {
        case .k3s:
            let components = Array(Set(conflicts.map(\.component))).sorted()
            let names = components.map(\.title).joined(separator: " and ")
            let commands = components.map { "`upkeep update --component \($0.rawValue) --to V`" }.joined(separator: ", then ")
            return "update \(names) first to a release that supports the target (\(commands)), choose an older k3s target, "
                + "or pass --ignore-compatibility to go on anyway (a typed confirmation of \(target))"
        case .component(let component, _):
            let tooNew = conflicts.contains { if case .minimum = $0.limit { true } else { false } }
            let k3s = tooNew ? "upgrade k3s first (`upkeep apply`), " : "bring every node to a Kubernetes it supports first, "
            return k3s + "choose a \(component.title) release that supports every node's Kubernetes, "
                + "or pass --ignore-compatibility to go on anyway (a typed confirmation of \(target))"
        }
    }

    public var description: String {
        "the compatibility table refuses \(changeText): \(finding); \(advice)"
    }
}

extension CompatibilityTable {
    /// Why `version` of `component` does not support Kubernetes `minor`; nil when it does, or
    /// when no entry covers the version (the table cannot say, so nothing is refused).
    public func conflict(_ component: Component, _ version: K3sVersion, kubernetes minor: MinorLine) -> CompatibilityConflict? {
        guard let entry = entry(for: component, version) else { return nil }
        if let minimum = entry.kubernetesMin, minor < minimum {
            return CompatibilityConflict(component: component, version: version, kubernetes: minor, limit: .minimum(minimum), entry: entry)
        }
        if let maximum = entry.kubernetesMax, minor > maximum {
            return CompatibilityConflict(component: component, version: version, kubernetes: minor, limit: .maximum(maximum), entry: entry)
        }
        return nil
    }

    /// A k3s rollout to `target` through `hops` (each hop's version, the last being `target`)
    /// against the Flux and Longhorn that run (`installed`). Judged are the Kubernetes minors
    /// the rollout brings a node to that some node does not run yet (`running`): a patch
    /// within the minors the cluster runs changes nothing the table speaks of.
    public func refusal(k3sTarget target: K3sVersion, hops: [K3sVersion], running: Set<MinorLine>,
                        installed: [Component: K3sVersion]) -> CompatibilityRefusal? {
        let reached = Set((hops + [target]).map(\.minorLine)).subtracting(running).sorted()
        var conflicts: [CompatibilityConflict] = []
        for component in [Component.longhorn, .flux] {
            guard let version = installed[component] else { continue }
            // The first minor it does not support is enough to name per component.
            if let conflict = reached.lazy.compactMap({ self.conflict(component, version, kubernetes: $0) }).first {
                conflicts.append(conflict)
            }
        }
        return conflicts.isEmpty ? nil : CompatibilityRefusal(change: .k3s(target), conflicts: conflicts)
    }

    /// `component` at `target` against every node's Kubernetes minor (`nodes`: name and minor):
    /// during a rollout the cluster runs several minors, and the release must support them all.
    public func refusal(_ component: Component, target: K3sVersion, nodes: [(name: String, kubernetes: MinorLine)]) -> CompatibilityRefusal? {
        let byMinor = Dictionary(grouping: nodes, by: \.kubernetes)
        let conflicts = byMinor.keys.sorted().compactMap { minor -> CompatibilityConflict? in
            guard var conflict = conflict(component, target, kubernetes: minor) else { return nil }
            conflict.nodes = (byMinor[minor] ?? []).map(\.name).sorted()
            return conflict
        }
        return conflicts.isEmpty ? nil : CompatibilityRefusal(change: .component(component, target), conflicts: conflicts)
    }
}

extension Component {
    /// How messages name it: `k3s`, `Flux`, `Longhorn`.
    public var title: String {
        switch self {
        case .k3s: "k3s"
        case .flux: "Flux"
        case .longhorn: "Longhorn"
        }
    }
}
