import UpkeepCore

/// Bounds and choices for carrying out a plan. Every wait the engine does has one of these
/// as its limit; none is unbounded.
public struct RolloutPolicy: Codable, Equatable, Sendable {
    /// How long a wave may wait for its gate (all nodes Ready, attached volumes healthy, the
    /// wave safe for Longhorn, etcd healthy) before the rollout stops as blocked.
    public var gateTimeoutSeconds: Int
    /// Passed to the agent's drain (PDB retries included).
    public var drainTimeoutSeconds: Int
    /// Passed to every node's drain before a restore stops k3s on every server: cordon and
    /// evictions, a pod its PodDisruptionBudget keeps is left in place and named
    /// (docs/decisions/2026-12-07-restore-drain.md). Nil in rollouts persisted before it existed.
    var restoreDrainTimeout: Int?
    /// Passed to the agent's install and rollback: how long k3s may take to pass its probes.
    public var healthTimeoutSeconds: Int
    /// After a healthy install, how long the API may take to show the node Ready at the new version.
    public var verifyTimeoutSeconds: Int
    /// After an uncordon, how long Longhorn may take to report every attached volume healthy.
    public var rebuildTimeoutSeconds: Int
    /// Passed to the agent's install: how long it waits for `commit` before judging health itself.
    /// Longer than verify + rebuild, so a slow rebuild never makes the agent decide alone.
    public var watchdogTimeoutSeconds: Int
    /// Sends of one request that got no answer (lost, timed out, agent restarting) before the
    /// rollout stops as blocked; the same operation id every time, so a late answer is harmless.
    public var requestTriesMax: Int
    /// First retry delay; doubles per try up to `retryDelayMaxMilliseconds`.
    public var retryDelayMilliseconds: Int64
    public var retryDelayMaxMilliseconds: Int64
    /// How often to look at the cluster while waiting on it.
    public var pollIntervalMilliseconds: Int64
    /// What the engine may do on its own when a node fails (docs/planning.md, "Rollback kinds").
    public var autoRollback: AutoRollback
    /// Waves after the current one whose binaries are staged ahead of their turn.
    public var prefetchWaves: Int
    /// When set, a wave starts its nodes only inside one of these windows; outside them the
    /// rollout blocks at the next gate (what is in flight finishes) until `resume` in a window.
    public var maintenanceWindows: [MaintenanceWindow]?
    /// Take a datastore backup before the first server of each hop is touched (design: a
    /// snapshot per hop). Nil in rollouts persisted before hop snapshots existed: none taken.
    var hopSnapshots: Bool?
    /// The gates read before every forward wave (`gates:` in upkeep.yaml); nil: none.
    public var gates: GatePolicy?
    /// How agents drain beyond `drainTimeoutSeconds` (`policy.drain`); nil: the defaults of
    /// `DrainPolicy()` (and rollouts persisted before drain options existed).
    public var drain: DrainPolicy?

    /// How long a restore's drain of each node may take (all at once); 60 s unless set.
    public var restoreDrainTimeoutSeconds: Int {
        get { restoreDrainTimeout ?? Self.restoreDrainTimeoutDefault }
        set { restoreDrainTimeout = newValue }
    }

    public static let restoreDrainTimeoutDefault = 60

    /// Whether the engine asks for a datastore backup before each hop's first server.
    public var takesHopSnapshots: Bool {
        get { hopSnapshots ?? false }
        set { hopSnapshots = newValue }
    }

    public init(gateTimeoutSeconds: Int = 600, drainTimeoutSeconds: Int = 900, healthTimeoutSeconds: Int = 300,
                verifyTimeoutSeconds: Int = 300, rebuildTimeoutSeconds: Int = 1800, watchdogTimeoutSeconds: Int = 3600,
                requestTriesMax: Int = 8, retryDelayMilliseconds: Int64 = 1000, retryDelayMaxMilliseconds: Int64 = 60_000,
                pollIntervalMilliseconds: Int64 = 5000, autoRollback: AutoRollback = .binaries, prefetchWaves: Int = 1,
                maintenanceWindows: [MaintenanceWindow]? = nil, takesHopSnapshots: Bool = false,
                restoreDrainTimeoutSeconds: Int = RolloutPolicy.restoreDrainTimeoutDefault, gates: GatePolicy? = nil,
                drain: DrainPolicy? = nil) {
        self.gateTimeoutSeconds = gateTimeoutSeconds
        self.drainTimeoutSeconds = drainTimeoutSeconds
        restoreDrainTimeout = restoreDrainTimeoutSeconds
        self.healthTimeoutSeconds = healthTimeoutSeconds
        self.verifyTimeoutSeconds = verifyTimeoutSeconds
        self.rebuildTimeoutSeconds = rebuildTimeoutSeconds
        self.watchdogTimeoutSeconds = watchdogTimeoutSeconds
        self.requestTriesMax = requestTriesMax
        self.retryDelayMilliseconds = retryDelayMilliseconds
        self.retryDelayMaxMilliseconds = retryDelayMaxMilliseconds
        self.pollIntervalMilliseconds = pollIntervalMilliseconds
        self.autoRollback = autoRollback
        self.prefetchWaves = prefetchWaves
        self.maintenanceWindows = maintenanceWindows
        hopSnapshots = takesHopSnapshots ? true : nil
        self.gates = gates
        self.drain = drain
    }

    /// Whether a wave may start its nodes at `now`.
    public func windowOpen(at now: Instant) -> Bool { (maintenanceWindows ?? []).isOpen(at: now) }

    /// What is wrong with these values, if anything, in words an operator can act on.
    public func problems() -> [String] {
        var problems: [String] = []
        let positive: [(String, Int)] = [("gateTimeoutSeconds", gateTimeoutSeconds), ("drainTimeoutSeconds", drainTimeoutSeconds),
                                         ("restoreDrainTimeoutSeconds", restoreDrainTimeoutSeconds),
                                         ("healthTimeoutSeconds", healthTimeoutSeconds), ("verifyTimeoutSeconds", verifyTimeoutSeconds),
                                         ("rebuildTimeoutSeconds", rebuildTimeoutSeconds), ("requestTriesMax", requestTriesMax)]
        for (name, value) in positive where value < 1 { problems.append("\(name) must be at least 1 (is \(value))") }
        if watchdogTimeoutSeconds <= verifyTimeoutSeconds + rebuildTimeoutSeconds {
            problems.append("watchdogTimeoutSeconds (\(watchdogTimeoutSeconds)) must exceed verifyTimeoutSeconds + rebuildTimeoutSeconds "
                            + "(\(verifyTimeoutSeconds + rebuildTimeoutSeconds)), or agents judge their own health before the controller commits")
        }
        if retryDelayMilliseconds < 1 || retryDelayMaxMilliseconds < retryDelayMilliseconds {
            problems.append("retry delays must satisfy 1 <= retryDelayMilliseconds <= retryDelayMaxMilliseconds")
        }
        if pollIntervalMilliseconds < 1 { problems.append("pollIntervalMilliseconds must be at least 1") }
        if prefetchWaves < 0 || prefetchWaves > 10 { problems.append("prefetchWaves must be 0...10 (is \(prefetchWaves))") }
        if let gates, gates.holdTimeoutSeconds < 1 { problems.append("gates.holdTimeout must be at least 1 s (is \(gates.holdTimeoutSeconds))") }
        if let drain { problems += drain.problems() }
        return problems
    }

    /// The delay before sending a request again after `tries` sends went unanswered.
    func retryDelay(afterTries tries: Int) -> Int64 {
        var delay = retryDelayMilliseconds
        for _ in 1..<max(tries, 1) where delay < retryDelayMaxMilliseconds { delay *= 2 }
        return min(delay, retryDelayMaxMilliseconds)
    }
}

/// `policy.autoRollback` in upkeep.yaml: what the engine may do on its own when a node fails.
/// Persisted as YAML and JSON spell it: `false`, `true` (binaries) or `"restore"`, so rollouts
/// recorded while it was a plain boolean read back unchanged.
public enum AutoRollback: Equatable, Sendable, ExpressibleByBooleanLiteral, CustomStringConvertible {
    /// Never roll back on its own: a failure finishes the rollout as `failed`, nodes stay.
    case off
    /// Roll back on its own by binaries, where that is safe; where the failed hop needs a
    /// datastore restore, stop blocked and name both ways out.
    case binaries
    /// As `binaries`, and where a restore is needed, restore the hop's snapshot on its own.
    case restore

    public init(booleanLiteral value: Bool) { self = value ? .binaries : .off }

    /// The spellings upkeep.yaml accepts: true, false, binaries, restore.
    public init?(text: String) {
        switch text {
        case "true", "binaries": self = .binaries
        case "false": self = .off
        case "restore": self = .restore
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .off: "false"
        case .binaries: "true"
        case .restore: "restore"
        }
    }
}

extension AutoRollback: Codable {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let flag = try? container.decode(Bool.self) {
            self = flag ? .binaries : .off
            return
        }
        let text = try container.decode(String.self)
        guard let value = AutoRollback(text: text) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "autoRollback is true, false or restore, not \(text)")
        }
        self = value
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .off: try container.encode(false)
        case .binaries: try container.encode(true)
        case .restore: try container.encode("restore")
        }
    }
}

/// How an agent drains its node (`policy.drain` in upkeep.yaml, the drain flags of `apply`), as
/// `kubectl drain` names the same choices (https://kubernetes.io/docs/reference/kubectl/generated/kubectl_drain/).
/// The timeout is `RolloutPolicy.drainTimeoutSeconds`. DaemonSet and mirror pods are always left.
public struct DrainPolicy: Codable, Equatable, Sendable {
    /// Overrides each pod's terminationGracePeriodSeconds (`--grace-period`); nil keeps the pod's own.
    public var gracePeriodSeconds: Int?
    /// Only pods matching this label selector are drained (`--pod-selector`); nil: every pod.
    public var podSelector: String?
    /// Drain pods that use emptyDir volumes, losing that data (`--delete-emptydir-data`); when
    /// false such a pod refuses the drain before anything is evicted, as kubectl does.
    public var deleteEmptyDirData: Bool
    /// Stop waiting for a pod whose deletion began more than this many seconds ago
    /// (`--skip-wait-for-delete-timeout`); nil: wait for every pod until the drain's timeout.
    public var skipWaitForDeleteTimeoutSeconds: Int?
    /// Delete pods instead of evicting them (`--disable-eviction`): PodDisruptionBudgets are
    /// not consulted. For a budget that can never be met; use with care.
    public var disableEviction: Bool

    public init(gracePeriodSeconds: Int? = nil, podSelector: String? = nil, deleteEmptyDirData: Bool = false,
                skipWaitForDeleteTimeoutSeconds: Int? = nil, disableEviction: Bool = false) {
        self.gracePeriodSeconds = gracePeriodSeconds
        self.podSelector = podSelector
        self.deleteEmptyDirData = deleteEmptyDirData
        self.skipWaitForDeleteTimeoutSeconds = skipWaitForDeleteTimeoutSeconds
        self.disableEviction = disableEviction
    }

    /// The options a drain of a rollout persisted before `policy.drain` existed used: pods with
    /// emptyDir volumes were drained.
    public static let beforeDrainOptions = DrainPolicy(deleteEmptyDirData: true)

    /// What is wrong with these values (the protocol's bounds, PROTOCOL.md "drain").
    public func problems() -> [String] {
        var problems: [String] = []
        if let gracePeriodSeconds, !(0...86_400).contains(gracePeriodSeconds) {
            problems.append("drain.gracePeriod must be 0...86400 s (is \(gracePeriodSeconds))")
        }
        if let skipWaitForDeleteTimeoutSeconds, !(1...86_400).contains(skipWaitForDeleteTimeoutSeconds) {
            problems.append("drain.skipWaitForDeleteTimeout must be 1...86400 s (is \(skipWaitForDeleteTimeoutSeconds))")
        }
        if let podSelector, podSelector.isEmpty || podSelector.utf8.count > 1024 {
            problems.append("drain.podSelector must be 1...1024 characters")
        }
        return problems
    }

    /// One line for notices and reports, naming only what differs from kubectl's defaults.
    public var summary: String {
        var parts: [String] = []
        if let gracePeriodSeconds { parts.append("grace period \(gracePeriodSeconds) s") }
        if let podSelector { parts.append("pods matching \(podSelector)") }
        if deleteEmptyDirData { parts.append("emptyDir data deleted") }
        if let skipWaitForDeleteTimeoutSeconds { parts.append("pods deleting for over \(skipWaitForDeleteTimeoutSeconds) s not waited for") }
        if disableEviction { parts.append("pods deleted, not evicted (budgets not consulted)") }
        return parts.isEmpty ? "kubectl's defaults" : parts.joined(separator: ", ")
    }
}
