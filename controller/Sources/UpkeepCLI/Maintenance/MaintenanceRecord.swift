import UpkeepCore
import UpkeepKube
import UpkeepStore

/// The cluster's record of maintenance mode: the ConfigMap `kube-system/upkeep-maintenance`,
/// which every controller and `kubectl -n kube-system get configmap upkeep-maintenance -o yaml`
/// read. Its data are strings: `state`, `since` (RFC 3339), `reason`, `by`, `rollout` (when held
/// for one), and one object per line in `suspended` (what maintenance mode suspended and will
/// resume) and `alreadySuspended` (what was suspended before it and stays so).
enum MaintenanceRecord {
    static let namespace = "kube-system"
    static let name = "upkeep-maintenance"
    static let place = "ConfigMap \(namespace)/\(name)"

    /// The ConfigMap holding `period`.
    static func configMap(_ period: MaintenancePeriod) -> JSON {
        var data: [String: JSON] = [
            "id": .string(period.id), "state": .string(period.state.rawValue), "since": .string(KubeTime.format(period.since.unixSeconds)),
            "reason": .string(period.reason), "by": .string(period.by),
            "suspended": .string(lines(period.suspended)), "alreadySuspended": .string(lines(period.alreadySuspended)),
        ]
        if let rollout = period.rollout { data["rollout"] = .string(rollout) }
        return [
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": ["name": .string(name), "namespace": .string(namespace),
                         "labels": ["app.kubernetes.io/managed-by": "upkeep", "app.kubernetes.io/component": "maintenance-mode"]],
            "data": .object(data),
        ]
    }

    private static func lines(_ items: [String]) -> String { items.map { $0 + "\n" }.joined() }

    /// The period a ConfigMap holds; what is missing or unreadable is named.
    static func period(_ configMap: JSON) throws(MaintenanceError) -> MaintenancePeriod {
        let data = configMap["data"]?.stringMap ?? [:]
        func field(_ key: String) throws(MaintenanceError) -> String {
            guard let value = data[key] else { throw MaintenanceError.unreadableRecord("it has no data.\(key)") }
            return value
        }
        guard let state = MaintenancePeriod.State(rawValue: try field("state")), state != .ended else {
            throw MaintenanceError.unreadableRecord("data.state is \(data["state"] ?? ""), not enabling, enabled or disabling")
        }
        guard let since = KubeTime.parse(try field("since")) else { throw MaintenanceError.unreadableRecord("data.since is not an RFC 3339 time") }
        func objects(_ key: String) throws(MaintenanceError) -> [String] {
            let items = (data[key] ?? "").split(separator: "\n").map(String.init)
            for item in items where FluxObjectRef(item) == nil {
                throw MaintenanceError.unreadableRecord("data.\(key) holds \"\(item)\", not Kind/namespace/name")
            }
            return items
        }
        return MaintenancePeriod(id: try field("id"), state: state, since: Instant(milliseconds: Int64(since * 1000)), reason: try field("reason"),
                                 by: try field("by"), rollout: data["rollout"], suspended: try objects("suspended"),
                                 alreadySuspended: try objects("alreadySuspended"))
    }

    /// A new period from the objects there are now: those not suspended are maintenance mode's to
    /// suspend (and later resume); those suspended already stay as they are.
    static func enabling(id: String, objects: [(ref: FluxObjectRef, suspended: Bool)], since: Instant, reason: String, by: String,
                         rollout: String?) -> MaintenancePeriod {
        MaintenancePeriod(id: id, state: .enabling, since: since, reason: reason, by: by, rollout: rollout,
                          suspended: objects.filter { !$0.suspended }.map(\.ref.description),
                          alreadySuspended: objects.filter(\.suspended).map(\.ref.description))
    }
}

/// Why maintenance mode could not be switched or read, in words that say what to do.
enum MaintenanceError: Error, Equatable, CustomStringConvertible {
    /// The ConfigMap is there but does not read as a record.
    case unreadableRecord(String)
    /// A disable was interrupted: finish it before anything else.
    case disableInterrupted(MaintenancePeriod)
    /// This controller recorded a period the cluster has no ConfigMap for.
    case configMapGone(MaintenancePeriod)
    /// The Kubernetes API failed.
    case cluster(String)
    /// More objects match than one record may name (`MaintenanceMode.objectsMax`).
    case tooManyObjects(Int, max: Int)
    /// The command's lock was lost (why): it stopped before its next write.
    case lockLost(String)

    var description: String {
        switch self {
        case .unreadableRecord(let problem):
            "\(MaintenanceRecord.place) is not a maintenance record Upkeep can read (\(problem)); look at it with "
                + "`kubectl -n \(MaintenanceRecord.namespace) get configmap \(MaintenanceRecord.name) -o yaml`, resume the Flux objects "
                + "it names with `flux resume`, then delete it"
        case .disableInterrupted(let period):
            "a disable of maintenance mode \(period.id) was interrupted; run `upkeep maintenance disable` to finish it first"
        case .configMapGone(let period):
            "this controller recorded maintenance mode \(period.id) (since \(KubeTime.format(period.since.unixSeconds)), by \(period.by)), but "
                + "\(MaintenanceRecord.place) is gone; run `upkeep maintenance disable` to resume what it suspended"
        case .cluster(let message):
            "the Kubernetes API: \(message)"
        case .tooManyObjects(let count, let max):
            "\(count) Flux objects match, more than the \(max) maintenance mode records; narrow them with "
                + "maintenance.suspend or maintenance.suspendSelector in upkeep.yaml; nothing was suspended"
        case .lockLost(let reason):
            "\(reason); stopped before its next write to the cluster: `upkeep maintenance status` shows where it stands, "
                + "and the same command run again once the lock is free carries on from the record"
        }
    }
}

extension Instant {
    /// Seconds since the epoch, as `KubeTime` takes them.
    var unixSeconds: Double { Double(milliseconds) / 1000 }
}
