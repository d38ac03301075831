import Foundation
import Prometheus
import UpkeepFleet
import UpkeepHTTP
import UpkeepHTTPServer
import UpkeepProtocol
import UpkeepRollout
import UpkeepStore
import UpkeepUpdates
import UpkeepCore

/// What Upkeep knows, as numbers: read from the state database and the check history at the
/// moment of a scrape (or of `upkeep metrics`), so the metrics survive any controller crash and
/// every controller process reports the same. docs/metrics.md lists each one.
struct MetricsSnapshot: Equatable {
    struct LastRollout: Equatable {
        var id: String
        var succeeded: Bool
        var finishedAtSeconds: Double
        var durationSeconds: Double
    }

    struct LastCheck: Equatable {
        var checkedAtSeconds: Double
        var succeeded: Bool
        var updateAvailable: [String: Bool]
    }

    var rolloutsByOutcome: [String: Int] = [:]
    var running = false
    var blocked = false
    var lastRollout: LastRollout?
    var nodeUpgradesByResult: [String: Int] = [:]
    var nodeUpgradeSeconds: [Double] = []
    var cordonedByUpkeep = 0
    /// Per gate holding the unfinished rollout's current wave: for how long (seconds).
    var gatesHeldSeconds: [String: Double] = [:]
    /// A controller holds an unexpired lease (it is driving a rollout right now).
    var controllerActive = false
    var backupsKept = 0
    var lastBackupAtSeconds: Double?
    var lastBackupBytes: Int64?
    var lastCheck: LastCheck?
    /// notAfter (Unix time) of each readable certificate, by identity (`PKIInventory`).
    var certificateExpiries: [String: Double] = [:]
    /// The notification outbox per sink (docs/notifications.md).
    var notifications: [SinkDeliveryStats] = []
    /// The cluster Lease's events (`ClusterLease.Event`) this controller counted, by event.
    var leaseEvents: [String: Int] = [:]
    /// Longhorn and Flux updates through Git (`upkeep update`, serve's automation), from their records.
    var updates = ComponentUpdateSummary()
    /// When the snapshot was taken: how long a running update has run is measured to it.
    var takenAt = Instant(milliseconds: 0)

    /// `sinks`: the configured notification sinks, listed even before their first event.
    static func gather(store: StateStore, checks: (any CheckRecorder)?, now: Instant, sinks: [String] = []) throws(StoreError) -> MetricsSnapshot {
        var snapshot = MetricsSnapshot()
        snapshot.takenAt = now
        snapshot.notifications = try store.notificationStats(sinks: sinks)
        if let lease = try store.currentLease() { snapshot.controllerActive = lease.expiresAt > now }
        let summary = try store.summary()
        for (outcome, count) in summary.finishedByOutcome { snapshot.rolloutsByOutcome[Self.metricName(outcome: outcome), default: 0] += count }
        snapshot.blocked = summary.unfinishedStatuses.contains("blocked")
        snapshot.running = summary.unfinishedStatuses.contains { $0 != "blocked" }
        for stage in ["done", "reverted", "unhealthy", "cancelled"] {
            if let count = summary.forwardStepsByStage[stage] { snapshot.nodeUpgradesByResult[stage] = count }
        }
        snapshot.nodeUpgradeSeconds = summary.doneStepMilliseconds.map { Double($0) / 1000 }
        if let last = summary.lastFinished {
            snapshot.lastRollout = LastRollout(id: last.id, succeeded: last.outcome == "completed",
                                               finishedAtSeconds: Double(last.finished.milliseconds) / 1000,
                                               durationSeconds: Double(last.finished.milliseconds - last.began.milliseconds) / 1000)
        }
        if let unfinished = try store.unfinishedRollout() {
            let engine = try store.engine(rolloutID: unfinished.id)
            snapshot.cordonedByUpkeep = engine.cordonedByUpkeep.count
            if let hold = engine.gateHold {
                for held in hold.holds { snapshot.gatesHeldSeconds[held.gate.rawValue] = Double(now.milliseconds(since: hold.since)) / 1000 }
            }
        }
        snapshot.leaseEvents = try store.leaseEventCounts()
        snapshot.updates = try store.componentUpdateSummary()
        snapshot.backupsKept = summary.backupCount
        if let newest = summary.newestBackup {
            snapshot.lastBackupAtSeconds = Double(newest.takenAt.milliseconds) / 1000
            snapshot.lastBackupBytes = newest.bytes
        }
        if let checks, let record = try? checks.recent(limit: 1).last, let at = Self.seconds(iso8601: record.checkedAt) {
            snapshot.lastCheck = LastCheck(checkedAtSeconds: at, succeeded: record.outcome != "failed",
                                           updateAvailable: Dictionary(record.components.map { ($0.component.rawValue, $0.updateAvailable) },
                                                                       uniquingKeysWith: { $0 || $1 }))
        }
        return snapshot
    }

    /// The store's outcome word as the metric's label (`rolledBack` → `rolled_back`).
    static func metricName(outcome: String) -> String { outcome == "rolledBack" ? "rolled_back" : outcome }

    static func seconds(iso8601 text: String) -> Double? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        if let date = formatter.date(from: text) { return date.timeIntervalSince1970 }
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: text)?.timeIntervalSince1970
    }

    /// Buckets of `upkeep_node_upgrade_duration_seconds`: a node takes from under a minute
    /// (no pods, fast start) to an hour (a long drain and a Longhorn rebuild).
    static let upgradeBuckets: [Double] = [30, 60, 120, 300, 600, 1200, 1800, 3600]

    /// Buckets of `upkeep_update_duration_seconds`: Flux applies a commit within its interval
    /// (a minute or so), a Longhorn chart upgrade takes minutes; `upkeep update` waits 15 min by default.
    static let updateBuckets: [Double] = [30, 60, 120, 300, 600, 900, 1800, 3600]

    /// What `upkeep update` changes through Git; listed even before their first update.
    static let updateComponents = ["longhorn", "flux"]
    static let updateOutcomes = ["completed", "reverted", "failed", "failedForward"]

    /// The Prometheus text exposition (format 0.0.4). `limits`: the bounds a running `upkeep
    /// serve` reached (a one-shot `upkeep metrics` has none).
    func exposition(version: String, limits: ServeLimits = ServeLimits()) -> String {
        let registry = PrometheusCollectorRegistry()
        func describe(_ name: String, _ help: String) -> MetricNameDescriptor {
            MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
        }
        func gauge(_ name: String, _ help: String, labels: [(String, String)] = [], _ value: Double) {
            registry.makeGauge(descriptor: describe(name, help), labels: labels).set(to: value)
        }
        func counter(_ name: String, _ help: String, labels: [(String, String)], _ value: Int) {
            registry.makeCounter(descriptor: describe(name, help), labels: labels).increment(by: Int64(value))
        }
        gauge("upkeep_info", "Upkeep controller build; always 1.", labels: [("version", version)], 1)
        for outcome in ["completed", "rolled_back", "failed", "abandoned"] {
            counter("upkeep_rollouts_total", "Finished rollouts by outcome.", labels: [("outcome", outcome)], rolloutsByOutcome[outcome] ?? 0)
        }
        gauge("upkeep_rollout_running", "1 while a rollout is in progress (not blocked, not finished).", running ? 1 : 0)
        gauge("upkeep_controller_active", "1 while a controller holds the lease (drives a rollout); running without it means the controller is gone.",
              controllerActive ? 1 : 0)
        for event in ClusterLease.Event.allCases {
            counter("upkeep_cluster_lease_events_total",
                    "Events of the cluster Lease kube-system/upkeep seen by this controller: held (refused), conflict (a write lost on "
                        + "resourceVersion), took_over, renew_failed, lost (stopped an operation).",
                    labels: [("event", event.rawValue)], leaseEvents[event.rawValue] ?? 0)
        }
        gauge("upkeep_rollout_blocked", "1 while a rollout waits for `upkeep resume` (a gate, an agent, a closed window).", blocked ? 1 : 0)
        if let lastRollout {
            gauge("upkeep_last_rollout_success", "1 when the last finished rollout completed, 0 when it failed or rolled back.",
                  lastRollout.succeeded ? 1 : 0)
            gauge("upkeep_last_rollout_finished_timestamp_seconds", "When the last finished rollout ended (Unix time).", lastRollout.finishedAtSeconds)
            gauge("upkeep_last_rollout_duration_seconds", "How long the last finished rollout took.", lastRollout.durationSeconds)
        }
        for result in ["done", "reverted", "unhealthy", "cancelled"] {
            counter("upkeep_node_upgrades_total", "Per-node upgrade steps that ended, by result.", labels: [("result", result)],
                    nodeUpgradesByResult[result] ?? 0)
        }
        let histogram = registry.makeValueHistogram(
            descriptor: describe("upkeep_node_upgrade_duration_seconds", "Time from a node's cordon to its commit, for nodes upgraded."),
            buckets: Self.upgradeBuckets)
        for seconds in nodeUpgradeSeconds { histogram.record(seconds) }
        updateExposition(registry: registry)
        gauge("upkeep_nodes_cordoned_by_upkeep", "Nodes the unfinished rollout cordoned and has not uncordoned.", Double(cordonedByUpkeep))
        for gate in GateKind.allCases.map(\.rawValue) {
            let held = gatesHeldSeconds[gate]
            gauge("upkeep_gate_held", "1 while the gate holds the unfinished rollout's next wave (waiting, or blocked on it).",
                  labels: [("gate", gate)], held == nil ? 0 : 1)
            gauge("upkeep_gate_held_seconds", "How long the gate has held the unfinished rollout's next wave; 0 when it does not.",
                  labels: [("gate", gate)], held ?? 0)
        }
        gauge("upkeep_backups", "Sealed datastore backups kept.", Double(backupsKept))
        if let lastBackupAtSeconds, let lastBackupBytes {
            gauge("upkeep_last_backup_timestamp_seconds", "When the newest datastore backup was taken (Unix time).", lastBackupAtSeconds)
            gauge("upkeep_last_backup_bytes", "Size of the newest datastore backup.", Double(lastBackupBytes))
        }
        if let lastCheck {
            gauge("upkeep_last_check_timestamp_seconds", "When `upkeep check` last ran (Unix time).", lastCheck.checkedAtSeconds)
            gauge("upkeep_last_check_success", "1 when the last `upkeep check` could read the cluster and the releases.", lastCheck.succeeded ? 1 : 0)
            for (component, available) in lastCheck.updateAvailable.sorted(by: { $0.key < $1.key }) {
                gauge("upkeep_update_available", "1 when the last check found a newer release of the component.",
                      labels: [("component", component)], available ? 1 : 0)
            }
        }
        for (identity, notAfter) in certificateExpiries.sorted(by: { $0.key < $1.key }) {
            gauge("upkeep_certificate_expiry_timestamp_seconds", "When the certificate of the identity expires (Unix time; `upkeep pki status`).",
                  labels: [("identity", identity)], notAfter)
        }
        if let earliest = certificateExpiries.values.min() {
            gauge("upkeep_certificate_earliest_expiry_timestamp_seconds", "When the first of the CA, controller and agent certificates expires (Unix time).",
                  earliest)
        }
        for sink in notifications {
            let labels = [("sink", sink.sink)]
            gauge("upkeep_notification_backlog", "Notifications waiting in the outbox for the sink (not delivered, not given up).", labels: labels,
                  Double(sink.pending))
            counter("upkeep_notifications_sent_total", "Notifications the sink accepted.", labels: labels, sink.sent)
            counter("upkeep_notifications_failed_total", "Notifications given up: the sink refused them, or every attempt failed.", labels: labels,
                    sink.failed)
            counter("upkeep_notifications_dropped_total", "Undelivered notifications pruned to keep the outbox within its bound.", labels: labels,
                    sink.dropped)
            counter("upkeep_notification_attempts_failed_total", "Delivery attempts that failed (each retry counts).", labels: labels,
                    sink.attemptsFailed)
        }
        for (limit, count) in limits.server {
            counter("upkeep_http_server_limits_reached_total", "Times `upkeep serve`'s HTTP server reached a bound (docs/http.md), by bound.",
                    labels: [("limit", limit.rawValue)], count)
        }
        for (limit, count) in limits.httpClients {
            counter("upkeep_http_client_limits_reached_total",
                    "Times the HTTP clients of `upkeep serve` (releases, Kubernetes API, notifications) reached a bound (docs/http.md), by bound.",
                    labels: [("limit", limit.rawValue)], count)
        }
        for (limit, count) in limits.agentClients {
            counter("upkeep_agent_client_limits_reached_total", "Times `upkeep serve`'s connections to agents reached a bound (docs/metrics.md), by bound.",
                    labels: [("limit", limit.rawValue)], count)
        }
        for (source, count) in limits.insecureReleaseUses {
            counter("upkeep_release_insecure_uses_total",
                    "Times `upkeep serve` read a release source over plain http:// (releases.insecure: true), by source.",
                    labels: [("source", source.rawValue)], count)
        }
        for (reason, count) in limits.artifactRefusals {
            counter("upkeep_artifact_refusals_total", "Artifacts `upkeep serve` refused for their digest (docs/fleet.md), by reason.",
                    labels: [("reason", reason.rawValue)], count)
        }
        return registry.emitToString()
    }
}

extension MetricsSnapshot {
    /// `upkeep_updates_total`, `upkeep_update_duration_seconds`, `upkeep_update_running` and
    /// `upkeep_update_running_seconds`: Longhorn and Flux updates through Git (docs/metrics.md).
    func updateExposition(registry: PrometheusCollectorRegistry) {
        func describe(_ name: String, _ help: String) -> MetricNameDescriptor {
            MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
        }
        let components = Set(Self.updateComponents).union(updates.finished.keys).union(updates.running.map(\.component)).sorted()
        for component in components {
            let outcomes = Set(Self.updateOutcomes).union(updates.finished[component, default: [:]].keys).sorted()
            for outcome in outcomes {
                registry.makeCounter(descriptor: describe("upkeep_updates_total",
                                                          "Finished Longhorn and Flux updates through Git (upkeep update, serve's automation), by component and outcome."),
                                     labels: [("component", component), ("outcome", outcome)])
                    .increment(by: Int64(updates.finished[component]?[outcome] ?? 0))
            }
            let histogram = registry.makeValueHistogram(
                descriptor: describe("upkeep_update_duration_seconds", "Time from an update's commit to Flux showing it done, for updates that completed."),
                labels: [("component", component)], buckets: Self.updateBuckets)
            for milliseconds in updates.completedMilliseconds[component, default: []] { histogram.record(Double(milliseconds) / 1000) }
        }
        for running in updates.running {
            let labels = [("component", running.component), ("to", running.to)]
            registry.makeGauge(descriptor: describe("upkeep_update_running", "1 while an update through Git is recorded running (driven now, or interrupted)."),
                               labels: labels).set(to: 1)
            registry.makeGauge(descriptor: describe("upkeep_update_running_seconds", "How long the running update has run since its commit was recorded."),
                               labels: labels).set(to: Double(max(0, takenAt.milliseconds(since: running.startedAt))) / 1000)
        }
    }
}

/// The bounds a running `upkeep serve` reached since it started, by component: counted in its
/// memory, so only a process that keeps running has them (docs/metrics.md, "Bounds").
struct ServeLimits {
    var server: [(limit: ServerLimit, count: Int)] = []
    var httpClients: [(limit: ClientLimit, count: Int)] = []
    var agentClients: [(limit: ProtocolClientLimit, count: Int)] = []
    var insecureReleaseUses: [(limit: ReleaseTransport.Source, count: Int)] = []
    var artifactRefusals: [(limit: ArtifactCache.Refusal, count: Int)] = []
}
