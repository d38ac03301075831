import UpkeepCore

/// A rollout plan: what moves, in which order, to which version, and why. Pure data, Codable
/// (`upkeep plan -o json`, and the rollout engine's persisted input). It never contains a step
/// that breaks a rule in docs/planning.md; the planner refuses instead.
public struct Plan: Codable, Equatable, Sendable {
    public enum Direction: String, Codable, Sendable {
        case upgrade, downgrade
        /// Every node already runs the target.
        case none
    }

    public var target: K3sVersion
    public var direction: Direction
    public var policy: PlanPolicy
    /// In order. Each hop brings the servers to one minor line.
    public var hops: [Hop]
    /// Nodes that do not move, with why.
    public var unchanged: [NodeNote]
    /// Things the operator should know that do not block the plan.
    public var warnings: [String]
    /// For a downgrade: what Upkeep cannot undo by swapping binaries.
    public var caveats: [String]
    public var longhorn: LonghornSummary

    /// Every wave of every hop, in execution order.
    public var waves: [Wave] { hops.flatMap(\.waves) }

    /// `waves.count`, without building the list (the engine asks at every step).
    var waveCount: Int { hops.reduce(0) { $0 + $1.waves.count } }

    /// `waves[index]`, found hop by hop without building the list.
    func wave(_ index: Int) -> Wave {
        var offset = index
        for hop in hops {
            if offset < hop.waves.count { return hop.waves[offset] }
            offset -= hop.waves.count
        }
        preconditionFailure("wave \(index) of a plan with \(waveCount) waves")
    }

    /// The (version, arch) pairs whose binaries the rollout needs, sorted.
    public var artifacts: [Artifact] {
        var seen = Set<Artifact>()
        for wave in waves { for step in wave.steps { seen.insert(Artifact(version: step.to, arch: step.arch)) } }
        return seen.sorted()
    }

    public init(target: K3sVersion, direction: Direction, policy: PlanPolicy, hops: [Hop], unchanged: [NodeNote],
                warnings: [String], caveats: [String], longhorn: LonghornSummary) {
        self.target = target
        self.direction = direction
        self.policy = policy
        self.hops = hops
        self.unchanged = unchanged
        self.warnings = warnings
        self.caveats = caveats
        self.longhorn = longhorn
    }
}

/// All servers (and the agents that must follow now) brought to one version of one minor line.
public struct Hop: Codable, Equatable, Sendable {
    /// 1-based.
    public var number: Int
    public var version: K3sVersion
    public var waves: [Wave]
    /// What the planner decided; nil only in plans persisted before rollback kinds existed.
    var plannedRollbackKind: RollbackKind?

    public var line: MinorLine { version.minorLine }

    /// How this hop is undone (docs/planning.md, "Rollback kinds"). Plans persisted before
    /// rollback kinds existed get the planner's rule applied to their own steps.
    public var rollbackKind: RollbackKind {
        plannedRollbackKind ?? (waves.contains { $0.steps.contains { $0.role == .server && $0.to.minorLine > $0.from.minorLine } }
                                ? .restore : .binaries)
    }

    public init(number: Int, version: K3sVersion, waves: [Wave], rollbackKind: RollbackKind) {
        self.number = number
        self.version = version
        self.waves = waves
        plannedRollbackKind = rollbackKind
    }

    enum CodingKeys: String, CodingKey {
        case number, version, waves
        case plannedRollbackKind = "rollbackKind"
    }
}

/// How a hop is undone. k3s supports going back a Kubernetes minor only together with the
/// datastore snapshot taken on that minor (https://docs.k3s.io/upgrades/roll-back).
public enum RollbackKind: String, Codable, Sendable {
    /// The hop leaves the servers' newest Kubernetes minor where it was (a patch hop, a hop
    /// that moves only agents, a downgrade hop): the binaries go back.
    case binaries
    /// The hop raises the servers' newest Kubernetes minor: once a server has been healthy at it,
    /// the datastore has been written at that minor, and undoing the hop needs the hop's
    /// datastore snapshot restored with the old binary. Before that, binaries still suffice.
    case restore
}

/// Nodes taken down together. A server wave holds exactly one server.
public struct Wave: Codable, Equatable, Sendable {
    public var hop: Int
    /// 1-based within its hop and role.
    public var number: Int
    public var role: NodeRole
    public var steps: [NodeStep]
    public var reason: String
    /// One of the canaries (`--canary N`): an agent that goes alone before the rest. Nil: not one
    /// (and in plans made before canaries existed).
    var canary: Bool?

    public var nodes: [String] { steps.map(\.node) }
    public var isCanary: Bool { canary == true }
    /// `s1` for server wave 1, `w2` for agent wave 2, `c1` for the first canary: how tables and
    /// logs name it.
    public var label: String { (role == .server ? "s" : isCanary ? "c" : "w") + String(number) }

    public init(hop: Int, number: Int, role: NodeRole, steps: [NodeStep], reason: String, canary: Bool = false) {
        self.hop = hop
        self.number = number
        self.role = role
        self.steps = steps
        self.reason = reason
        self.canary = canary ? true : nil
    }
}

/// One node moving from one version to another within a wave.
public struct NodeStep: Codable, Equatable, Sendable {
    public var node: String
    public var role: NodeRole
    public var etcd: Bool
    public var arch: Arch
    public var from: K3sVersion
    public var to: K3sVersion
    /// Why the node is in this hop and wave, in words.
    public var reason: String
    /// The node was cordoned before the rollout; Upkeep leaves it cordoned.
    public var wasCordoned: Bool

    public init(node: String, role: NodeRole, etcd: Bool, arch: Arch, from: K3sVersion, to: K3sVersion,
                reason: String, wasCordoned: Bool) {
        self.node = node
        self.role = role
        self.etcd = etcd
        self.arch = arch
        self.from = from
        self.to = to
        self.reason = reason
        self.wasCordoned = wasCordoned
    }
}

/// A node the plan leaves alone.
public struct NodeNote: Codable, Equatable, Sendable {
    public var node: String
    public var version: K3sVersion
    public var reason: String

    public init(node: String, version: K3sVersion, reason: String) {
        self.node = node
        self.version = version
        self.reason = reason
    }
}

/// A binary the rollout must fetch and verify.
public struct Artifact: Codable, Hashable, Comparable, Sendable {
    public var version: K3sVersion
    public var arch: Arch

    public init(version: K3sVersion, arch: Arch) {
        self.version = version
        self.arch = arch
    }

    public static func < (lhs: Artifact, rhs: Artifact) -> Bool {
        (lhs.version, lhs.arch) < (rhs.version, rhs.arch)
    }
}

/// What Longhorn contributed to the plan.
public struct LonghornSummary: Codable, Equatable, Sendable {
    public var volumes: Int
    public var attached: Int
    public var detached: Int
    /// Volumes with two or more protected nodes, which constrain waves.
    public var constraining: Int
    /// Agents pushed to a later wave because an earlier one would have held every protected
    /// replica of some volume.
    public var separations: Int

    public init(volumes: Int = 0, attached: Int = 0, detached: Int = 0, constraining: Int = 0, separations: Int = 0) {
        self.volumes = volumes
        self.attached = attached
        self.detached = detached
        self.constraining = constraining
        self.separations = separations
    }
}
