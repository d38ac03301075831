import UpkeepCore

/// When a node may start: the one set of rules the engine admits nodes by and the planner
/// predicts the schedule with (docs/planning.md, "Scheduling"). A node starts as soon as they
/// allow, not when its wave ends: waves only show the plan. Pure; it never reads the cluster.
///
/// - Nodes of a later wave may start while an earlier wave's are still in flight only when both
///   waves are agent waves of the same hop and neither is a canary: servers go one at a time and
///   before the hop's agents (skew), a hop starts when the previous one is done (never skip a
///   minor, one etcd member down at most), and the rest waits for the canaries and their soak.
/// - At most `slots` nodes cordoned or down at once (one for servers, `--concurrency` for agents).
/// - Never every protected replica of a volume down or rebuilding at once: a node whose moves
///   are in flight (cordoned, down, or back with its replicas rebuilding) counts as busy.
public enum Admission {
    /// Whether `later`'s nodes may start while `earlier`'s are in flight.
    public static func mayOverlap(_ earlier: Wave, _ later: Wave) -> Bool {
        earlier.hop == later.hop && earlier.role == .agent && later.role == .agent && !earlier.isCanary && !later.isCanary
    }

    /// Nodes of `role` cordoned or down at once.
    public static func slots(_ role: NodeRole, policy: PlanPolicy) -> Int {
        role == .server ? 1 : max(1, policy.agentConcurrency)
    }

    /// The first volume (of `protected`, each a name and the nodes of its protected replicas)
    /// whose every protected node would be busy with `node` added to `busy`; nil when none.
    /// Volumes without a protected node constrain nothing (they have nothing left to keep up).
    public static func longhornHold(_ node: String, busy: Set<String>, protected: [(name: String, nodes: Set<String>)]) -> String? {
        protected.first { $0.nodes.contains(node) && $0.nodes.allSatisfy { $0 == node || busy.contains($0) } }?.name
    }
}
