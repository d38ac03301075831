import UpkeepCore

/// `automation:` of upkeep.yaml: how often `upkeep serve` looks for new versions, and which it
/// may roll out on its own (docs/serve.md): k3s through the rollout engine, Longhorn and Flux
/// through the Git repository Flux watches. The default starts nothing: serve checks and tells
/// (`update.available`), and an operator applies.
public struct AutomationPolicy: Equatable, Sendable, CustomStringConvertible {
    /// How far serve may move a component on its own.
    public enum Scope: String, CaseIterable, Equatable, Sendable {
        /// Check and tell, never start anything.
        case none
        /// Newer patch releases of the minor the cluster runs.
        case patch
        /// Patch releases, and the next minor (one minor per change).
        case minor
    }

    /// The name the k3s policy had first; the same three scopes.
    public typealias K3sScope = Scope

    /// What "the newest" k3s is measured against.
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

    /// What serve may do to one component that Flux installs from Git (Longhorn, Flux itself).
    public struct GitOps: Equatable, Sendable {
        public var scope: Scope
        /// `automation.longhornVersion` / `automation.fluxVersion`: never past this version;
        /// nil: the newest release of the installed major.
        public var pinned: K3sVersion?

        public init(scope: Scope = .none, pinned: K3sVersion? = nil) {
            self.scope = scope
            self.pinned = pinned
        }
    }

    public var checkIntervalSeconds = 3600
    public var k3s = Scope.none
    public var goal = Goal.channel("stable")
    public var longhorn = GitOps()
    public var flux = GitOps()

    /// Bounds of `automation.checkInterval`: at least a minute (release servers rate-limit),
    /// at most a week.
    public static let checkIntervalSecondsRange = 60...604_800

    public init(checkIntervalSeconds: Int = 3600, k3s: Scope = .none, goal: Goal = .channel("stable"),
                longhorn: GitOps = GitOps(), flux: GitOps = GitOps()) {
        self.checkIntervalSeconds = checkIntervalSeconds
        self.k3s = k3s
        self.goal = goal
        self.longhorn = longhorn
        self.flux = flux
    }

    public subscript(component: GitOpsComponent) -> GitOps {
        switch component {
        case .longhorn: longhorn
        case .flux: flux
        }
    }

    /// The policy as `history` names who decided a rollout: `automation.k3s: minor (channel stable)`.
    public var description: String { "automation.k3s: \(k3s.rawValue) (\(goal))" }

    /// As `history` names who decided an update: `automation.longhorn: minor` (`(longhornVersion v1.8.2)`).
    public func description(of component: GitOpsComponent) -> String {
        let policy = self[component]
        return "automation.\(component.rawValue): \(policy.scope.rawValue)" + (policy.pinned.map { " (\(component.rawValue)Version \($0))" } ?? "")
    }
}

/// The components `upkeep serve` updates through the Git repository Flux watches, in the order
/// it takes them when several are due (after k3s): Longhorn, then Flux, as the operations guide
/// and `apply-updates.sh` run them (docs/serve.md, "Order").
public enum GitOpsComponent: String, CaseIterable, Hashable, Sendable {
    case longhorn
    case flux

    /// How messages name it.
    public var title: String {
        switch self {
        case .longhorn: "Longhorn"
        case .flux: "Flux"
        }
    }
}
