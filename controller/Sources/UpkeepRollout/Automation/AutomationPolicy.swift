import UpkeepCore

/// `automation:` of upkeep.yaml: how often `upkeep serve` looks for a new k3s, and which new
/// versions it may roll out on its own (docs/serve.md). The default starts nothing: serve
/// checks and tells (`update.available`), and an operator applies.
public struct AutomationPolicy: Equatable, Sendable, CustomStringConvertible {
    /// How far serve may move k3s on its own.
    public enum K3sScope: String, CaseIterable, Equatable, Sendable {
        /// Check and tell, never start a rollout.
        case none
        /// Newer patch releases of the minor the cluster runs.
        case patch
        /// Patch releases, and the next minor (one minor per rollout, as k3s requires).
        case minor
    }

    /// What "the newest" is measured against.
    public enum Goal: Equatable, Sendable, CustomStringConvertible {
        /// The version a k3s release channel points at (`stable`, `latest`, `v1.31`, …).
        case channel(String)
        /// `automation.k3sVersion`: this version and nothing newer.
        case pinned(K3sVersion)

        public var description: String {
            switch self {
            case .channel(let name): "channel \(name)"
            case .pinned(let version): "k3sVersion \(version)"
            }
        }
    }

    public var checkIntervalSeconds = 3600
    public var k3s = K3sScope.none
    public var goal = Goal.channel("stable")

    /// Bounds of `automation.checkInterval`: at least a minute (release servers rate-limit),
    /// at most a week.
    public static let checkIntervalSecondsRange = 60...604_800

    public init(checkIntervalSeconds: Int = 3600, k3s: K3sScope = .none, goal: Goal = .channel("stable")) {
        self.checkIntervalSeconds = checkIntervalSeconds
        self.k3s = k3s
        self.goal = goal
    }

    /// The policy as `history` names who decided: `automation.k3s: minor (channel stable)`.
    public var description: String { "automation.k3s: \(k3s.rawValue) (\(goal))" }
}
