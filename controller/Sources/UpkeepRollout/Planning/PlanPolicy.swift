/// The operator's choices that shape a plan.
public struct PlanPolicy: Codable, Equatable, Sendable {
    /// Agents upgraded at once (`--concurrency`). Servers always go one at a time.
    public var agentConcurrency: Int
    /// `--allow-downgrade`: without it a target older than any node is refused.
    public var allowDowngrade: Bool

    /// Largest concurrency accepted; beyond it a typo is likelier than intent.
    public static let agentConcurrencyMax = 1_000

    public init(agentConcurrency: Int = 1, allowDowngrade: Bool = false) {
        self.agentConcurrency = agentConcurrency
        self.allowDowngrade = allowDowngrade
    }
}
