/// The operator's choices that shape a plan.
public struct PlanPolicy: Codable, Equatable, Sendable {
    /// Agents upgraded at once (`--concurrency`). Servers always go one at a time.
    public var agentConcurrency: Int
    /// `--allow-downgrade`: without it a target older than any node is refused.
    public var allowDowngrade: Bool
    /// The nodes the plan may change (`--nodes`, `--exclude`, `--selector`); nil: every node.
    public var selection: NodeSelection?
    /// `--canary N`: the first N agents the plan moves go alone, each in a wave of its own,
    /// before the rest. Nil: none (and plans made before canaries existed).
    var canaryAgents: Int?
    /// `--canary-soak`: after the last canary, the rest waits this long (then its gates).
    var canarySoak: Int?

    /// Largest concurrency accepted; beyond it a typo is likelier than intent.
    public static let agentConcurrencyMax = 1_000
    /// Largest canary count and soak accepted.
    public static let canaryAgentsMax = 100
    public static let canarySoakSecondsMax = 7 * 86_400

    public init(agentConcurrency: Int = 1, allowDowngrade: Bool = false, selection: NodeSelection? = nil, canaryAgents: Int = 0,
                canarySoakSeconds: Int = 0) {
        self.agentConcurrency = agentConcurrency
        self.allowDowngrade = allowDowngrade
        self.selection = selection
        self.canaryAgents = canaryAgents > 0 ? canaryAgents : nil
        canarySoak = canaryAgents > 0 && canarySoakSeconds > 0 ? canarySoakSeconds : nil
    }

    public var canaries: Int { canaryAgents ?? 0 }
    public var canarySoakSeconds: Int { canarySoak ?? 0 }
}

/// The nodes an operator chose for a plan, resolved to names before planning (a label selector
/// is matched against the nodes' labels by the caller, which reads them). Nodes not chosen stay
/// where they are; the planner still holds every rule against them (servers within one minor,
/// no kubelet newer than an API server or lagging beyond the skew policy) and refuses a
/// choice that would break one.
public struct NodeSelection: Codable, Equatable, Sendable {
    /// The chosen nodes.
    public var nodes: [String]
    /// How they were chosen, as the operator wrote it (`--nodes a,b --exclude c`), for messages.
    public var how: String

    public init(nodes: [String], how: String) {
        self.nodes = nodes
        self.how = how
    }
}
