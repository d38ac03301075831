import Foundation
import UpkeepRollout
import UpkeepCore

/// The events Upkeep notifies about, by the names scripts, filters and docs rely on
/// (`<subject>.<verb>`, docs/notifications.md).
public enum NotificationEventName: String, CaseIterable, Codable, Sendable {
    case updateAvailable = "update.available"
    case rolloutStarted = "rollout.started"
    case rolloutNodeDone = "rollout.node-done"
    case rolloutBlocked = "rollout.blocked"
    case rolloutFinished = "rollout.finished"
    case rolloutFailed = "rollout.failed"
    case rolloutRolledBack = "rollout.rolled-back"
    case maintenanceEnabled = "maintenance.enabled"
    case maintenanceDisabled = "maintenance.disabled"
    case backupFailed = "backup.failed"
    case certificateExpiring = "certificate.expiring"
    /// `upkeep notify test`: goes to the sinks asked for, whatever their `events:` say.
    case test = "notification.test"

    /// The names an `events:` filter may list.
    public static var filterable: [NotificationEventName] { allCases.filter { $0 != .test } }
}

/// One event as every sink receives it: the generic webhook's JSON body is exactly its
/// encoding (`json`), and the chat formats are rendered from it. Made once when emitted and
/// stored as text, so every retry and every restart sends the same bytes with the same `id`.
public struct NotificationEvent: Codable, Equatable, Sendable {
    public var event: NotificationEventName
    /// The idempotency key: a random UUID, the same for every sink and every attempt.
    public var id: String
    /// When it happened, RFC 3339 UTC (`2026-12-07T10:00:00Z`).
    public var time: String
    /// The cluster's name (`cluster:` in upkeep.yaml).
    public var cluster: String
    /// One sentence for people (the chat formats show it).
    public var summary: String
    /// The event's facts, every value a string (docs/notifications.md lists them per event).
    public var details: [String: String]

    public init(_ event: NotificationEventName, summary: String, details: [String: String], cluster: String, at time: Instant,
                id: String = NotificationEvent.newID()) {
        self.event = event
        self.id = id
        self.time = time.utcDescription
        self.cluster = cluster
        self.summary = summary
        self.details = details
    }

    /// A fresh idempotency key.
    public static func newID() -> String { UUID().uuidString.lowercased() }

    /// The canonical JSON: sorted keys, slashes as they are, no whitespace.
    public var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        do {
            return String(decoding: try encoder.encode(self), as: UTF8.self)
        } catch {
            preconditionFailure("encoding a notification failed: \(error)")
        }
    }

    /// The event from its canonical JSON (an outbox row's body).
    public static func decode(_ json: String) throws(StoreError) -> NotificationEvent {
        try StateStore.decode(NotificationEvent.self, json, what: "notification")
    }
}

/// Which sinks want which events, and the cluster's name: what emitting needs of the
/// configuration (no URL, no secret). A store opened with it writes one outbox row per sink an
/// event is for; `none` writes nothing.
public struct NotificationRouting: Equatable, Sendable {
    public struct Route: Equatable, Sendable {
        /// The sink's key (docs/notifications.md, "Sinks").
        public var sink: String
        /// The events it wants; nil: every event.
        public var events: Set<NotificationEventName>?

        public init(sink: String, events: Set<NotificationEventName>?) {
            self.sink = sink
            self.events = events
        }
    }

    public var cluster: String
    public var routes: [Route]
    /// Outbox rows kept at most: past it, delivered and given-up rows go first, then the oldest
    /// undelivered ones (counted as dropped).
    public var rowsMax: Int

    public static let rowsMaxDefault = 10_000

    public init(cluster: String, routes: [Route], rowsMax: Int = NotificationRouting.rowsMaxDefault) {
        self.cluster = cluster
        self.routes = routes
        self.rowsMax = max(1, rowsMax)
    }

    public static let none = NotificationRouting(cluster: "", routes: [])

    /// The sinks that want `event` (a test goes to none unless named).
    public func sinks(for event: NotificationEventName) -> [String] {
        guard event != .test else { return [] }
        return routes.filter { $0.events?.contains(event) ?? true }.map(\.sink)
    }
}

extension NotificationEvent {
    /// The event a rollout milestone is told as (`engine`: the rollout after the transition).
    static func rollout(_ milestone: RolloutMilestone, engine: RolloutEngine, cluster: String, at now: Instant) -> NotificationEvent {
        let id = engine.rolloutID, target = engine.plan.target.description
        let base = ["rollout": id, "target": target]
        func event(_ name: NotificationEventName, _ summary: String, _ extra: [String: String] = [:]) -> NotificationEvent {
            NotificationEvent(name, summary: summary, details: base.merging(extra) { _, new in new }, cluster: cluster, at: now)
        }
        switch milestone {
        case .started(let nodes, let hops):
            let from = StateStore.fromSummary(engine.plan)
            return event(.rolloutStarted, "Rollout \(id) to \(target) started: \(nodes) node\(nodes == 1 ? "" : "s") from \(from)",
                         ["nodes": "\(nodes)", "hops": "\(hops)", "from": from])
        case .nodeDone(let node, let role, let from, let to):
            return event(.rolloutNodeDone, "\(node) runs \(to) (was \(from)); rollout \(id)",
                         ["node": node, "role": role.rawValue, "from": from.description, "to": to.description])
        case .blocked(let reason):
            // A block by the gates names them, so a receiver can tell an alert from an agent.
            var details = ["reason": reason]
            if let hold = engine.gateHold, hold.blocked { details["gates"] = hold.holds.map(\.gate.rawValue).joined(separator: ",") }
            return event(.rolloutBlocked, "Rollout \(id) to \(target) is blocked: \(reason)", details)
        case .finished(.completed):
            return event(.rolloutFinished, "Rollout \(id) to \(target) completed: every node runs \(target)")
        case .finished(.rolledBack(let cause)) where engine.restoreWasRequested:
            // `rollback --restore` or `recover`: nothing failed, the operator asked for it.
            return event(.rolloutRolledBack, "Rollout \(id) was rolled back as asked: \(cause)", ["cause": cause, "requested": "true"])
        case .finished(.rolledBack(let cause)):
            return event(.rolloutRolledBack, "Rollout \(id) to \(target) failed and was rolled back: \(cause)", ["cause": cause, "requested": "false"])
        case .finished(.failed(let cause)):
            return event(.rolloutFailed, "Rollout \(id) to \(target) failed, not rolled back: \(cause); `upkeep status` shows each node",
                         ["cause": cause, "outcome": "failed"])
        case .finished(.abandoned(let reason)):
            return event(.rolloutFailed, "Rollout \(id) to \(target) was abandoned: \(reason)", ["cause": reason, "outcome": "abandoned"])
        case .backupFailed(let hop, let node, let backupID, let message):
            return event(.backupFailed, "The datastore backup \(backupID) before hop \(hop) failed on \(node): \(message); the rollout waits",
                         ["backup": backupID, "hop": "\(hop)", "node": node, "reason": message])
        }
    }
}
