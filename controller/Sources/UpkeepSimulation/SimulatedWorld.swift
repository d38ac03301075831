import UpkeepRollout
import UpkeepCore

/// One k3s node and its upkeep-agent, modelled on the behaviour documented in docs/agent.md and
/// the field notes: the agent journals every operation id and answers a repeat from the journal;
/// an install swaps the binary, restarts k3s and reverts when the probes do not pass in time; a
/// watch waits for commit and, past its deadline, keeps a healthy node and reverts an unhealthy
/// one; a restarted agent resolves an interrupted install by restarting k3s on the live binary
/// and probing it again (only a failing probe puts the previous binary back); a server never
/// starts a binary older than the minor its datastore was last written at, and its agent refuses
/// to put one back;
/// cordon remembers whether the node was already unschedulable and uncordon only undoes its own.
struct SimNode {
    let name: String
    let role: NodeRole
    let etcd: Bool
    /// The k3s version running (the kubelet reports it); unchanged while k3s restarts.
    var running: K3sVersion
    /// The live binary.
    var binary: K3sVersion
    /// Kept by the last install for rollback.
    var previous: K3sVersion?
    var staged: [K3sVersion] = []
    var unschedulable: Bool
    /// A server's etcd cluster (an id in `Simulation.datastores`); nil for agents, and for a
    /// server whose `server/db` was removed.
    var cluster: Int?
    /// k3s stopped (`stopK3s`) and not started again.
    var k3sStopped = false
    /// The backup received for a restore (`restoreBackup`).
    var received: String?
    /// The agent's durable memory that it cordoned the node (and should uncordon it).
    var cordonedByAgent = false
    /// Pods evicted: Longhorn's instance manager is gone, replicas here are stopped.
    var drained = false
    /// Set while k3s restarts; k3s is back at this time.
    var restartingUntil: Instant?
    /// Bumped on every restart so a stale "k3s up" event is ignored.
    var restartGeneration = 0
    var k3sHealthy = true
    var notReadyUntil: Instant?

    var agentUp = true
    var journal: [String: (fingerprint: String, reply: AgentReply)] = [:]
    var operation: SimOperation?
    /// A stage runs beside the other operations (it only writes the staging area).
    var stageOperation: SimOperation?
    var watch: (install: String, deadline: Instant)?

    var restarting: Bool { restartingUntil != nil }

    func ready(at now: Instant) -> Bool {
        !restarting && !k3sStopped && k3sHealthy && (notReadyUntil.map { now >= $0 } ?? true)
    }
}

/// An operation an agent is carrying out, and who waits for its answer.
struct SimOperation {
    var request: AgentRequest
    /// Deliveries owed when it finishes: (controller incarnation, send number).
    var waiters: [(incarnation: Int, send: Int)]
    /// When it began; for an install, when its restart (or a recovery's) began the health deadline.
    var startedAt: Instant
    /// Install/rollback: the binary has been swapped (a crash from here on is resumed, not undone).
    var swapped = false
    /// Install: the new version failed its probes; the previous one is being restored.
    var reverting = false
    var step = 0
}

/// A Longhorn replica in the simulated cluster.
struct SimReplica {
    let node: String
    var running: Bool
    /// A complete copy (Longhorn's healthyAt without failedAt).
    var complete: Bool
    /// When a rebuild finishes; bumped generation invalidates stale completions.
    var rebuildUntil: Instant?
    var generation = 0
}

struct SimVolume {
    let name: String
    let attached: Bool
    var replicas: [SimReplica]

    var robustness: InventoryVolume.Robustness {
        let serving = replicas.filter { $0.running && $0.complete }.count
        if !attached { return replicas.contains(where: \.complete) ? .unknown : .faulted }
        if serving == 0 { return .faulted }
        return serving == replicas.count ? .healthy : .degraded
    }
}
