import UpkeepCore
import UpkeepStore

/// A maintenance-mode event for the notifications (issue 17's names): `maintenance.enabled`
/// once everything is suspended, `maintenance.disabled` once everything is resumed.
public struct MaintenanceEvent: Equatable, Sendable {
    public enum Name: String, Sendable {
        case enabled = "maintenance.enabled"
        case disabled = "maintenance.disabled"
    }

    public var name: Name
    public var at: Instant
    /// Since when, why, by whom, for which rollout, and what was suspended.
    public var period: MaintenancePeriod
}

/// Where maintenance mode's events go: the notifications outbox (docs/notifications.md).
/// Emitting hands an event over; it never waits for a delivery (a dead endpoint never slows
/// maintenance mode or a rollout).
public protocol MaintenanceNotifier: Sendable {
    /// Why nobody would be told (no sink wants the event); nil when events are delivered.
    var missingSink: String? { get }
    func emit(_ event: MaintenanceEvent) async throws
}

/// No sink wants maintenance events: `--notify` says so.
struct NoNotificationSink: MaintenanceNotifier {
    var missingSink: String? {
        "no notification sink is configured for maintenance events (`notifications:` in upkeep.yaml); nobody was told"
    }
    func emit(_ event: MaintenanceEvent) async throws {}
}

/// Writes maintenance events to the store's outbox, one row per sink that wants them; the
/// command's `NotificationRun` (or `upkeep serve`) delivers them.
struct OutboxMaintenanceNotifier: MaintenanceNotifier {
    let store: StateStore
    var missingSink: String? { nil }

    func emit(_ event: MaintenanceEvent) async throws {
        let period = event.period
        var details = ["period": period.id, "reason": period.reason, "by": period.by, "since": period.since.utcDescription,
                       "suspended": "\(period.suspended.count)", "alreadySuspended": "\(period.alreadySuspended.count)"]
        if let rollout = period.rollout { details["rollout"] = rollout }
        let summary: String
        switch event.name {
        case .enabled:
            summary = "Maintenance mode on: \(period.reason) (by \(period.by)); \(period.suspended.count) Flux objects suspended"
        case .disabled:
            summary = "Maintenance mode off: \(period.reason) (by \(period.by)); Flux objects resumed"
        }
        let name: NotificationEventName = event.name == .enabled ? .maintenanceEnabled : .maintenanceDisabled
        try store.emit(name, summary: summary, details: details, now: event.at)
    }
}

/// The notifier for `config`: the outbox when a sink wants maintenance events, else none.
enum MaintenanceNotifications {
    static func notifier(for config: ControllerConfig, store: StateStore) -> any MaintenanceNotifier {
        let wanted = config.notificationRouting.sinks(for: .maintenanceEnabled) + config.notificationRouting.sinks(for: .maintenanceDisabled)
        return wanted.isEmpty ? NoNotificationSink() : OutboxMaintenanceNotifier(store: store)
    }
}
