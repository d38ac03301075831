import UpkeepKube

/// A PodDisruptionBudget that will hold the drain of a node: it allows no eviction now, and
/// pods it covers run on the node (https://kubernetes.io/docs/concepts/workloads/pods/disruptions/#pod-disruption-budgets).
/// Found from a capture before anything runs; the twin's drain then meets it for real. Pure.
public struct DisruptionHold: Sendable, Codable, Equatable {
    public var node: String
    /// `namespace/name` of the budget.
    public var budget: String
    /// Its `status.disruptionsAllowed` when captured.
    public var allowed: Int
    public var currentHealthy: Int
    public var desiredHealthy: Int
    /// The budget's pods on the node (`namespace/name`).
    public var pods: [String]
    /// What would make room, in words an operator can act on.
    public var remedy: String

    public init(node: String, budget: String, allowed: Int, currentHealthy: Int, desiredHealthy: Int, pods: [String], remedy: String) {
        self.node = node
        self.budget = budget
        self.allowed = allowed
        self.currentHealthy = currentHealthy
        self.desiredHealthy = desiredHealthy
        self.pods = pods
        self.remedy = remedy
    }

    /// Every hold on the drains of `nodes`, in their order: a budget that allows no disruption
    /// over pods on the node that a drain evicts (not DaemonSet pods, not finished pods, those
    /// `podSelector` selects when given). With `disableEviction` the drain deletes pods and no
    /// budget is consulted, so nothing holds.
    public static func find(in capture: ClusterCapture, nodes: [String], podSelector: String? = nil,
                            disableEviction: Bool = false) -> [DisruptionHold] {
        guard !disableEviction else { return [] }
        let selected = podSelector.flatMap { try? LabelSelector.parse($0) }
        let budgets = capture.disruptionBudgets.compactMap { budget in
            (try? LabelSelector.parse(budget.selector)).map { (budget, $0) }
        }
        var holds: [DisruptionHold] = []
        for node in nodes {
            let evicted = capture.pods.filter { pod in
                pod.node == node && pod.owner?.kind != "DaemonSet" && pod.owner?.kind != "Node"
                    && pod.phase != "Succeeded" && pod.phase != "Failed" && (selected?.matches(pod.labels) ?? true)
            }
            for (budget, selector) in budgets where budget.disruptionsAllowed <= 0 {
                let covered = evicted.filter { $0.namespace == budget.namespace && !selector.isEmpty && selector.matches($0.labels) }
                guard !covered.isEmpty else { continue }
                holds.append(DisruptionHold(node: node, budget: "\(budget.namespace)/\(budget.name)", allowed: budget.disruptionsAllowed,
                                            currentHealthy: budget.currentHealthy, desiredHealthy: budget.desiredHealthy,
                                            pods: covered.map { "\($0.namespace)/\($0.name)" }, remedy: remedy(budget, covered)))
            }
        }
        return holds
    }

    static func remedy(_ budget: ClusterCapture.DisruptionBudget, _ pods: [ClusterCapture.Pod]) -> String {
        let owners = Set(pods.compactMap { $0.owner.map { "\($0.kind.lowercased())/\($0.name)" } }).sorted()
        let target = owners.isEmpty ? "its pods' workload" : owners.joined(separator: ", ")
        let rule = budget.minAvailable.map { "minAvailable \($0)" } ?? budget.maxUnavailable.map { "maxUnavailable \($0)" } ?? "its rule"
        if budget.currentHealthy < budget.desiredHealthy {
            return "only \(budget.currentHealthy) of the \(budget.desiredHealthy) pods it needs are healthy: make \(target) healthy first"
        }
        return "\(rule) leaves none to spare: scale \(target) up by one (kubectl -n \(budget.namespace) scale … --replicas N+1), "
            + "or relax \(rule) in poddisruptionbudget/\(budget.name)"
    }
}
