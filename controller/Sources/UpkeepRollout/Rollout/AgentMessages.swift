import UpkeepCore

/// What the engine asks one node's agent to do. The runtime turns it into a protocol request
/// with the same operation id; the agent records each id, so sending it again is always safe.
public enum AgentCommand: Codable, Equatable, Sendable {
    case cordon
    /// `options` nil: `DrainPolicy.beforeDrainOptions` (a rollout persisted before drain options).
    case drain(timeoutSeconds: Int, options: DrainPolicy? = nil)
    /// Stream the binary of `version` for `arch` into the agent's staging area.
    case stage(version: K3sVersion, arch: Arch)
    /// Swap the staged `version` in, restart k3s, wait for health (or revert); then keep a watch.
    case install(version: K3sVersion, healthTimeoutSeconds: Int, watchdogTimeoutSeconds: Int)
    /// Put the binary kept by the last install back (ends the watch).
    case rollback(healthTimeoutSeconds: Int)
    case uncordon
    /// End the watch that `installOperationID` started.
    case commit(installOperationID: String)
    /// Take a datastore backup on this server (`k3s etcd-snapshot save`, or the SQLite datastore
    /// with its token); the runtime seals it and records it as `backupID`, taken at `version`
    /// before `hop` (docs/backups.md). Answered `backedUp`.
    case backup(backupID: String, hop: Int, version: K3sVersion)
    /// Stream the sealed backup `backupID` (taken at `version`) to this server's agent, which
    /// verifies and keeps it for `restore`. Nothing else changes on the node.
    case restoreBackup(backupID: String, version: K3sVersion)
    /// Stop k3s on this server and wait until it is inactive.
    case stopK3s
    /// Restore the received backup `backupID` with the staged binary of `version` (etcd:
    /// `--cluster-reset --cluster-reset-restore-path`; SQLite: `state.db` and the token), start
    /// k3s and wait for its probes (https://docs.k3s.io/upgrades/roll-back).
    case restore(backupID: String, version: K3sVersion, healthTimeoutSeconds: Int)
    /// Place the staged binary of `version`, delete `server/db`, start k3s so it joins the
    /// restored server's cluster, and wait for its probes.
    case rejoin(version: K3sVersion, healthTimeoutSeconds: Int)

    /// The word used in operation ids and logs.
    public var name: String {
        switch self {
        case .cordon: "cordon"
        case .drain: "drain"
        case .stage: "stage"
        case .install: "install"
        case .rollback: "rollback"
        case .uncordon: "uncordon"
        case .commit: "commit"
        case .backup: "backup"
        case .restoreBackup: "restoreBackup"
        case .stopK3s: "stopK3s"
        case .restore: "restore"
        case .rejoin: "rejoin"
        }
    }
}

/// One request for one agent.
public struct AgentRequest: Codable, Equatable, Sendable {
    /// `<rollout>:<move>:<command>:<attempt>`, e.g. `r1:f3:install:1`. The same step of the same
    /// attempt always has the same id; a deliberate redo (after a resume) has the next attempt.
    public var operationID: String
    public var node: String
    public var command: AgentCommand

    public init(operationID: String, node: String, command: AgentCommand) {
        self.operationID = operationID
        self.node = node
        self.command = command
    }
}

/// An agent's answer to an `AgentRequest`, as the runtime decoded it.
public enum AgentReply: Codable, Equatable, Sendable {
    case cordoned(wasUnschedulable: Bool)
    case drained
    case staged
    /// k3s runs `version` healthy; the agent watches it until commit.
    case installed(version: K3sVersion?)
    /// The new version never became healthy; the agent put the previous binary back.
    /// `healthy` says whether the restored version passed its probes.
    case installReverted(version: K3sVersion?, healthy: Bool, message: String)
    case rolledBack(version: K3sVersion?, healthy: Bool, message: String)
    case uncordoned(Bool)
    /// The version that stays after the watch ended (the new one, or the previous one if the
    /// agent's watchdog already reverted an unhealthy node).
    case committed(version: K3sVersion?)
    /// The backup was taken, sealed and recorded under `backupID`.
    case backedUp(backupID: String)
    /// The agent holds the backup, its digest and length verified.
    case backupReceived
    /// k3s is stopped (`wasActive`: it was running until now).
    case stopped(wasActive: Bool)
    /// The restore ran and k3s was started: at `version`, healthy or not by its probes.
    case restored(version: K3sVersion?, healthy: Bool, message: String)
    /// The server cleared its datastore and started: at `version`, healthy or not by its probes.
    case rejoined(version: K3sVersion?, healthy: Bool, message: String)
    /// The agent answered with an error: the operation did not succeed (drain timed out, digest
    /// mismatch, no space, conflict, …). `code` is the protocol's error code.
    case refused(code: String, message: String)

    /// The protocol's error code for a step the agent's restart left undone (PROTOCOL.md 9.2):
    /// send the step again under a new operation id; it is no verdict on the version.
    public static let interruptedCode = "interrupted"
}

/// What the runtime saw of the cluster: the Kubernetes nodes and Longhorn volumes, plus etcd
/// health where it can tell (nil: no embedded etcd, or unknown).
public struct ClusterObservation: Codable, Equatable, Sendable {
    public var inventory: ClusterInventory
    public var etcdHealthy: Bool?

    public init(inventory: ClusterInventory, etcdHealthy: Bool? = nil) {
        self.inventory = inventory
        self.etcdHealthy = etcdHealthy
    }
}

/// How a rollout ended.
public enum RolloutOutcome: Codable, Equatable, Sendable {
    /// Every node runs the target.
    case completed
    /// A node failed; every node was returned to its version from before the rollout.
    case rolledBack(cause: String)
    /// A node failed and auto-rollback was off: nodes stay where they are (within skew).
    case failed(cause: String)
    /// The operator gave the rollout up (`upkeep abandon`): Upkeep stopped tracking it and left
    /// every node as it was at that moment.
    case abandoned(reason: String)
}

/// A line for the operator's progress view and the history.
public struct Notice: Codable, Equatable, Sendable {
    public enum Level: String, Codable, Sendable { case info, warning, error }
    public var level: Level
    /// The node it is about, when it is about one.
    public var node: String?
    public var message: String

    public init(_ level: Level, node: String? = nil, _ message: String) {
        self.level = level
        self.node = node
        self.message = message
    }
}
