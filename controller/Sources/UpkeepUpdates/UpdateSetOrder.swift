import UpkeepCore

/// One component's change in an `upkeep apply --all` set, before it is ordered.
public struct SetChange: Equatable, Sendable {
    public var component: Component
    public var from: K3sVersion
    public var to: K3sVersion
    /// For k3s: each hop's version, the last being `to` (the planner's hops). Empty otherwise.
    public var hops: [K3sVersion]

    public init(component: Component, from: K3sVersion, to: K3sVersion, hops: [K3sVersion] = []) {
        self.component = component
        self.from = from
        self.to = to
        self.hops = hops
    }

    /// `Longhorn v1.7.2 → v1.8.0`.
    public var text: String { "\(component.title) \(from) → \(to)" }
}

/// A change in its place, with why it is there (printed with the plan).
public struct OrderedStage: Equatable, Sendable {
    public var change: SetChange
    public var why: String

    public init(change: SetChange, why: String) {
        self.change = change
        self.why = why
    }
}

/// Why no order of a set's changes satisfies the compatibility table for one component: before
/// k3s its target does not support the Kubernetes the nodes run now (or the installed release of
/// it does not let k3s move, whichever the table says), and after k3s its installed release does
/// not support k3s's target (or its target does not support the Kubernetes k3s brings).
public struct UpdateSetRefusal: Equatable, Sendable, CustomStringConvertible {
    public var change: SetChange
    /// What the table says against going before k3s.
    public var before: CompatibilityRefusal
    /// What it says against going after; nil when there is no k3s stage to go after.
    public var after: CompatibilityRefusal?

    public var description: String {
        guard let after else {
            return "the compatibility table allows no order for \(change.text): \(before.finding); \(before.advice)"
        }
        return "the compatibility table allows no order for \(change.text) and k3s: before k3s, \(before.finding); after k3s, "
            + "\(after.finding); choose other targets (`upkeep apply --all --to V` for k3s, or `upkeep update --component "
            + "\(change.component.rawValue) --to V` first), or pass --ignore-compatibility to go on anyway (each refused stage asks its target typed)"
    }
}

/// The stages of a set and what the table refuses, when it allows no order.
public struct UpdateSetOrdering: Equatable, Sendable {
    /// Every change once, in the order to run them. With refusals, the components the table
    /// allows nowhere are placed before k3s (where their own refusal is asked at their turn).
    public var stages: [OrderedStage]
    /// Empty when the order satisfies the table.
    public var refusals: [UpdateSetRefusal]
}

/// The order of an `upkeep apply --all` set, from the compatibility table alone. Pure: the
/// table, the nodes' Kubernetes before and after the k3s stage, and the changes in; the order out.
///
/// The rule (docs/decisions/2026-12-07-apply-all-order.md): a Longhorn or Flux target that
/// supports both the Kubernetes the nodes run now and the Kubernetes the k3s stage brings (each
/// hop's minor, as `apply` judges it) goes before k3s, so k3s never runs ahead of what the
/// storage and GitOps controllers support; one that needs the target Kubernetes goes after k3s,
/// which the installed release must then support. Neither: refused, naming the table's entries.
/// Within each group Longhorn goes before Flux, the order `serve` and the operations guide use.
/// A component without a change still has to let k3s move: it is judged as it runs.
public enum UpdateSetOrder {
    public static func order(k3s: SetChange?, changes: [SetChange], installed: [Component: K3sVersion],
                             nodesNow: [(name: String, kubernetes: MinorLine)], nodesAfter: [(name: String, kubernetes: MinorLine)],
                             table: CompatibilityTable) -> UpdateSetOrdering {
        let sorted = changes.filter { $0.component != .k3s }.sorted { $0.component.rank < $1.component.rank }
        guard let k3s else {
            var stages: [OrderedStage] = []
            var refusals: [UpdateSetRefusal] = []
            for change in sorted {
                if let refused = table.refusal(change.component, target: change.to, nodes: nodesNow) {
                    refusals.append(UpdateSetRefusal(change: change, before: refused, after: nil))
                }
                stages.append(OrderedStage(change: change, why: "k3s is current"))
            }
            return UpdateSetOrdering(stages: stages, refusals: refusals)
        }
        let running = Set(nodesNow.map(\.kubernetes))
        let target = k3s.to.minorLine
        let hops = k3s.hops.isEmpty ? [k3s.to] : k3s.hops
        func k3sRefusal(_ component: Component, at version: K3sVersion) -> CompatibilityRefusal? {
            table.refusal(k3sTarget: k3s.to, hops: hops, running: running, installed: [component: version])
        }
        let now = running.sorted().map(\.description).joined(separator: ", ")
        var before: [OrderedStage] = []
        var after: [OrderedStage] = []
        var refusals: [UpdateSetRefusal] = []
        var k3sWhy: [String] = []
        for change in sorted {
            let first = table.refusal(change.component, target: change.to, nodes: nodesNow) ?? k3sRefusal(change.component, at: change.to)
            guard let first else {
                before.append(OrderedStage(change: change, why: "\(change.component.title) \(change.to) supports the Kubernetes the nodes run "
                                           + "(\(now)) and k3s's target (\(target)): before k3s"))
                continue
            }
            let second = k3sRefusal(change.component, at: change.from) ?? table.refusal(change.component, target: change.to, nodes: nodesAfter)
            guard let second else {
                after.append(OrderedStage(change: change, why: "not before k3s: \(first.finding); so after k3s"))
                continue
            }
            refusals.append(UpdateSetRefusal(change: change, before: first, after: second))
            before.append(OrderedStage(change: change, why: "no order the compatibility table allows (--ignore-compatibility): before k3s"))
        }
        // A component the set leaves alone must let k3s move as it runs.
        for (component, version) in installed.sorted(by: { $0.key.rank < $1.key.rank }) where component != .k3s {
            guard !sorted.contains(where: { $0.component == component }) else { continue }
            if let refused = k3sRefusal(component, at: version) {
                refusals.append(UpdateSetRefusal(change: k3s, before: refused, after: nil))
            } else {
                k3sWhy.append("\(component.title) \(version) stays")
            }
        }
        let movedFirst = before.map { "\($0.change.component.title) \($0.change.to)" }
        let why = movedFirst.isEmpty ? "the Longhorn and Flux that run let it move" : "after \(movedFirst.joined(separator: " and "))"
        let k3sStage = OrderedStage(change: k3s, why: ([why] + k3sWhy).joined(separator: "; "))
        return UpdateSetOrdering(stages: before + [k3sStage] + after, refusals: refusals)
    }
}

extension Component {
    /// Longhorn, then Flux, then k3s: the order within a group of a set.
    fileprivate var rank: Int {
        switch self {
        case .longhorn: 0
        case .flux: 1
        case .k3s: 2
        }
    }
}
