import Foundation
import UpkeepFleet
import UpkeepKube
import UpkeepRollout
import UpkeepYAML

/// The nodes `policy.nodes`, `policy.exclude` and `policy.selector` choose (the flags of the same
/// names override each field); docs/planning.md, "Node selection".
public struct NodeChoice: Equatable, Sendable {
    /// Only these nodes; nil: every node.
    public var nodes: [String]?
    public var exclude: [String] = []
    /// A label selector the chosen nodes must match.
    public var selector: String?

    public init(nodes: [String]? = nil, exclude: [String] = [], selector: String? = nil) {
        self.nodes = nodes
        self.exclude = exclude
        self.selector = selector
    }

    public var isEverything: Bool { nodes == nil && exclude.isEmpty && selector == nil }

    /// How the choice reads on a command line, for the plan's messages.
    public var how: String {
        var parts: [String] = []
        if let nodes { parts.append("--nodes \(nodes.joined(separator: ","))") }
        if !exclude.isEmpty { parts.append("--exclude \(exclude.joined(separator: ","))") }
        if let selector { parts.append("--selector \(selector)") }
        return parts.joined(separator: " ")
    }

    /// The chosen names among `nodes` (name and labels), in their order. Names the cluster
    /// does not have stay in the list, so the planner refuses them by name.
    public func resolve(_ nodes: [(name: String, labels: [String: String])]) throws(SelectorError) -> NodeSelection? {
        guard !isEverything else { return nil }
        var matching: LabelSelector?
        if let selector { matching = try LabelSelector.parse(selector) }
        var chosen = self.nodes ?? nodes.map(\.name)
        let labels = Dictionary(nodes.map { ($0.name, $0.labels) }, uniquingKeysWith: { first, _ in first })
        if let matching { chosen = chosen.filter { name in labels[name].map(matching.matches) ?? true } }
        let excluded = Set(exclude)
        chosen = chosen.filter { !excluded.contains($0) }
        // Excluding a node the cluster does not have is a typo too.
        let unknown = exclude.filter { labels[$0] == nil }
        return NodeSelection(nodes: chosen + unknown.filter { !chosen.contains($0) }, how: how)
    }
}

extension ControllerConfig {
    /// `gates:` (docs/configuration.md; docs/planning.md, "Gates").
    static func parseGates(_ gates: ConfigFields, resolve: (String) -> String,
                           url: (ConfigFields, String) throws(ConfigError) -> String?) throws(ConfigError) -> (GateSettings, holdSeconds: Int, passUnreachable: Bool) {
        var settings = GateSettings()
        var passUnreachable = false
        let holdSeconds = try gates.duration("holdTimeout", in: 10...7 * 86_400) ?? ControllerConfig.defaultGateHoldSeconds
        if let prometheus = try gates.section("prometheus") {
            guard let base = try url(prometheus, "url") else {
                throw prometheus.error("url", "is required: the Prometheus server's base URL, e.g. http://prometheus.monitoring:9090")
            }
            var reader = GateSettings.Prometheus(url: base)
            for key in ["include", "exclude"] {
                guard let pattern = try prometheus.string(key) else { continue }
                do { _ = try Regex(pattern) } catch {
                    throw prometheus.error(key, "is not a regular expression: \(error)")
                }
                if key == "include" { reader.include = pattern } else { reader.exclude = pattern }
            }
            reader.timeoutSeconds = try prometheus.duration("timeout", in: 1...120) ?? reader.timeoutSeconds
            if let file = try prometheus.string("caFile") { reader.caFile = resolve(file) }
            if let when = try prometheus.string("whenUnreachable") {
                guard ["hold", "pass"].contains(when) else {
                    throw prometheus.error("whenUnreachable", "must be hold (an unreachable Prometheus holds the rollout) or pass; is \"\(when)\"")
                }
                passUnreachable = when == "pass"
            }
            try prometheus.rejectUnknown(["url", "include", "exclude", "timeout", "caFile", "whenUnreachable"])
            settings.prometheus = reader
        }
        if let pods = try gates.section("blockingPods") {
            for key in ["anywhere", "onNode"] {
                let selectors = try pods.strings(key, countMax: 20) ?? []
                for selector in selectors {
                    do { _ = try LabelSelector.parse(selector) } catch {
                        throw pods.error(key, "\"\(selector)\" is not a label selector: \(error)")
                    }
                }
                if key == "anywhere" { settings.podsAnywhere = selectors } else { settings.podsOnNode = selectors }
            }
            try pods.rejectUnknown(["anywhere", "onNode"])
        }
        settings.etcd = try gates.bool("etcd") ?? settings.etcd
        try gates.rejectUnknown(["holdTimeout", "prometheus", "blockingPods", "etcd"])
        return (settings, holdSeconds, passUnreachable)
    }

    /// `policy.drain` (kubectl drain's options; docs/configuration.md). `timeout` is
    /// `policy.drainTimeoutSeconds` under another name: giving both is refused.
    static func parseDrain(_ drain: ConfigFields, policy: ConfigFields) throws(ConfigError) -> (DrainPolicy, timeoutSeconds: Int?) {
        var options = DrainPolicy()
        let timeout = try drain.duration("timeout", in: 1...604_800)
        if timeout != nil && policy.has("drainTimeoutSeconds") {
            throw drain.error("timeout", "and policy.drainTimeoutSeconds say the same thing; keep one")
        }
        options.gracePeriodSeconds = try drain.duration("gracePeriod", in: 0...86_400)
        if let selector = try drain.string("podSelector") {
            do { _ = try LabelSelector.parse(selector) } catch {
                throw drain.error("podSelector", "\"\(selector)\" is not a label selector: \(error)")
            }
            options.podSelector = selector
        }
        options.deleteEmptyDirData = try drain.bool("deleteEmptyDirData") ?? options.deleteEmptyDirData
        options.skipWaitForDeleteTimeoutSeconds = try drain.duration("skipWaitForDeleteTimeout", in: 1...86_400)
        options.disableEviction = try drain.bool("disableEviction") ?? options.disableEviction
        try drain.rejectUnknown(["timeout", "gracePeriod", "podSelector", "deleteEmptyDirData", "skipWaitForDeleteTimeout", "disableEviction"])
        return (options, timeout)
    }

    /// `policy.nodes`, `policy.exclude`, `policy.selector`, `policy.canary`, `policy.canarySoak`.
    static func parseSelection(_ policy: ConfigFields) throws(ConfigError) -> (NodeChoice, canary: Int?, soakSeconds: Int?) {
        var choice = NodeChoice()
        choice.nodes = try policy.strings("nodes", countMax: 10_000)
        choice.exclude = try policy.strings("exclude", countMax: 10_000) ?? []
        if let selector = try policy.string("selector") {
            do { _ = try LabelSelector.parse(selector) } catch {
                throw policy.error("selector", "\"\(selector)\" is not a label selector: \(error)")
            }
            choice.selector = selector
        }
        let canary = try policy.int("canary", in: 0...PlanPolicy.canaryAgentsMax)
        let soak = try policy.duration("canarySoak", in: 0...PlanPolicy.canarySoakSecondsMax)
        return (choice, canary, soak)
    }
}
