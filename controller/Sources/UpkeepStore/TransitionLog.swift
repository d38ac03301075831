import UpkeepRollout
import UpkeepCore

/// The words the transition log keeps for an event and the actions it returned (`transitions`:
/// `event`, `actions`). The actions' words are also what a replay is checked against: a replayed
/// transition must return the same words as the recorded one.
public enum TransitionLog {
    public static func describe(_ event: RolloutEngine.Event) -> String {
        switch event {
        case .start: return "start"
        case .resume: return "resume"
        case .tick: return "tick"
        case .replied(let id, let reply): return "replied \(id): \(reply)"
        case .requestFailed(let id, let message): return "no answer to \(id): \(message)"
        case .observed(let observation):
            let nodes = observation.inventory.nodes
            let etcd = observation.etcdHealthy.map { $0 ? ", etcd healthy" : ", etcd unhealthy" } ?? ""
            // Counted without copying the nodes: an observation of a large cluster comes often.
            var ready = 0
            var cordoned = 0
            for node in nodes {
                if node.ready { ready += 1 }
                if node.cordoned { cordoned += 1 }
            }
            return "observed \(nodes.count) nodes (\(ready) Ready, \(cordoned) cordoned), "
                + "\(observation.inventory.volumes.count) volumes\(etcd)"
        case .abandon(let reason): return "abandon: \(reason)"
        case .restore: return "restore (the operator's rollback --restore)"
        case .setMaintenanceWindows(let windows): return "maintenance windows: \(windows.map(\.listed) ?? "none")"
        case .lockLost(let reason): return "lock lost: \(reason)"
        case .gatesRead(let report): return "gates read: \(report.lines.map { String($0.prefix(160)) }.joined(separator: "; "))"
        }
    }

    public static func describe(_ actions: [RolloutEngine.Action]) -> String {
        var parts: [String] = []
        var notices = 0
        for action in actions {
            switch action {
            case .send(let request): parts.append("send \(request.operationID) to \(request.node)")
            case .observeCluster: parts.append("observe")
            case .checkGates(let question): parts.append("check gates \(question.kinds.map(\.rawValue).joined(separator: ", "))")
            case .wake(let at): parts.append("wake at \(at.milliseconds)")
            case .notice: notices += 1
            case .finished(let outcome): parts.append("finished \(outcome)")
            }
        }
        if notices > 0 { parts.append("\(notices) notice\(notices == 1 ? "" : "s")") }
        return parts.joined(separator: "; ")
    }
}
