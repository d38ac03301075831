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

/// Where maintenance mode's events go: the notifications outbox, once it is wired in
/// `MaintenanceNotifications.notifier`. Emitting hands an event over; it must never wait for a
/// delivery (a dead endpoint never slows maintenance mode or a rollout).
public protocol MaintenanceNotifier: Sendable {
    /// Why nobody would be told (no sink is configured); nil when events are delivered.
    var missingSink: String? { get }
    func emit(_ event: MaintenanceEvent) async throws
}

/// No sink: what every controller has until the notifications outbox is wired.
struct NoNotificationSink: MaintenanceNotifier {
    var missingSink: String? { "no notification sink is configured (`notifications:` in upkeep.yaml); nobody was told" }
    func emit(_ event: MaintenanceEvent) async throws {}
}

/// THE SEAM between maintenance mode and the notifications (issue 17 item 5): return the
/// outbox-backed notifier for `config` here once it exists. Until then there is no sink, and
/// `upkeep maintenance enable --notify` says so.
enum MaintenanceNotifications {
    static func notifier(for config: ControllerConfig, store: StateStore) -> any MaintenanceNotifier {
        NoNotificationSink()
    }
}
