import UpkeepCore

/// Why no plan could be made. Holds every problem found, not only the first, so the operator
/// can fix them in one go; each says what to do.
public struct PlanError: Error, Equatable, Sendable, CustomStringConvertible {
    public let problems: [PlanProblem]

    public init(_ problems: [PlanProblem]) {
        precondition(!problems.isEmpty, "a PlanError names at least one problem")
        self.problems = problems
    }

    /// Problems shown in `description`; the rest are counted (all stay in `problems`).
    public static let describedMax = 20

    public var description: String {
        if problems.count == 1 { return problems[0].description }
        var lines = problems.prefix(Self.describedMax).map { "- \($0.description)" }
        if problems.count > Self.describedMax { lines.append("- … and \(problems.count - Self.describedMax) more") }
        return "no plan (\(problems.count) problems):\n" + lines.joined(separator: "\n")
    }
}

/// One reason the planner refuses.
public enum PlanProblem: Equatable, Sendable, CustomStringConvertible {
    case noNodes
    case noServers
    case duplicateNode(String)
    case invalidConcurrency(Int)
    /// The target is not in the list of versions the release source offers.
    case targetNotAvailable(target: K3sVersion, newestInLine: K3sVersion?)
    /// A minor line between the cluster and the target has no release to stop at.
    case noReleaseInLine(MinorLine, target: K3sVersion)
    case acrossMajor(from: MinorLine, to: MinorLine)
    /// Nodes newer than the target, without `--allow-downgrade`.
    case downgradeRefused(nodes: [String], target: K3sVersion)
    /// Some nodes are newer than the target and some older.
    case mixedDirection(newer: [String], older: [String], target: K3sVersion)
    case nodesNotReady([String])
    case faultedVolume(String)
    /// The volume's data is served or held by a single node, which an upgrade would take down.
    case singleHealthyReplica(volume: String, node: String, running: Bool)
    /// API servers already more than one minor apart.
    case serversOutOfSkew(oldest: K3sVersion, newest: K3sVersion)
    /// A kubelet newer than an API server, which the skew policy forbids.
    case kubeletNewerThanServer(node: String, version: K3sVersion, server: K3sVersion)
    /// A downgrade that would take servers down a Kubernetes minor by swapping binaries, which
    /// k3s supports only together with a datastore restore.
    case serversDownAMinor(from: MinorLine, to: MinorLine)
    /// The selection names nodes the cluster does not have.
    case unknownNodes([String], how: String)
    /// The selection chose no node.
    case nothingSelected(how: String)
    /// Moving only the selected nodes would break the skew policy against those left alone.
    case selectionBreaksSkew(String, how: String)

    public var description: String {
        switch self {
        case .noNodes:
            return "the inventory has no nodes: check the kubeconfig points at the right cluster"
        case .noServers:
            return "the inventory has no server (control-plane) nodes: Upkeep upgrades servers first and must see them; check the node role labels"
        case .duplicateNode(let name):
            return "node \(name) appears twice in the inventory"
        case .invalidConcurrency(let value):
            return "agent concurrency \(value) is out of range: use 1...\(PlanPolicy.agentConcurrencyMax)"
        case .targetNotAvailable(let target, let newest):
            let hint = newest.map { "; the newest \(target.minorLine) release offered is \($0)" } ?? "; no \(target.minorLine) release is offered"
            return "target \(target) is not among the versions the release source offers\(hint)"
        case .noReleaseInLine(let line, let target):
            return "cannot reach \(target): minors are never skipped, and no \(line) release is offered to stop at; add one to the release source (or the mirror)"
        case .acrossMajor(let from, let to):
            return "cannot plan from \(from) to \(to): Upkeep only moves within one major version"
        case .downgradeRefused(let nodes, let target):
            return "\(listed(nodes)) newer than \(target): that is a downgrade; pass --allow-downgrade to plan it (see the datastore caveat it prints)"
        case .mixedDirection(let newer, let older, let target):
            return "\(listed(newer)) newer than \(target) while \(listed(older)) older: choose a target no older than the newest node, or bring the cluster level first"
        case .nodesNotReady(let nodes):
            return "\(listed(nodes)) not Ready: every node must be Ready before an upgrade starts; fix or remove \(nodes.count == 1 ? "it" : "them") first"
        case .faultedVolume(let volume):
            return "Longhorn volume \(volume) is faulted: Longhorn requires no faulted volumes before an upgrade; restore it (or delete it) first"
        case .singleHealthyReplica(let volume, let node, let running):
            let what = running ? "its only running healthy replica is" : "its only complete copy is"
            return "Longhorn volume \(volume): \(what) on \(node), so upgrading \(node) would take the volume offline; wait for Longhorn to rebuild replicas or raise numberOfReplicas to 2 or more"
        case .serversOutOfSkew(let oldest, let newest):
            return "servers run \(oldest) and \(newest), more than one minor apart (outside the skew policy): bring the older servers to \(newest.minorLine) first"
        case .kubeletNewerThanServer(let node, let version, let server):
            return "node \(node) runs \(version), newer than server version \(server): a kubelet must never be newer than an API server; upgrade the servers first"
        case .unknownNodes(let names, let how):
            return "\(how): no node named \(names.prefix(5).joined(separator: ", "))\(names.count > 5 ? " and \(names.count - 5) more" : ""); `kubectl get nodes` lists them"
        case .nothingSelected(let how):
            return "\(how) selects no node: check the names and the label selector against `kubectl get nodes --show-labels`"
        case .selectionBreaksSkew(let why, let how):
            return "\(how): \(why)"
        case .serversDownAMinor(let from, let to):
            return "servers would go from \(from) down to \(to) by swapping binaries, which k3s does not support "
                + "(https://docs.k3s.io/upgrades/roll-back): run `upkeep rollback --restore` to restore the datastore snapshot taken "
                + "before the upgrade, or `upkeep recover --from-backup ID` with a backup taken at \(to)"
        }
    }

    private func listed(_ nodes: [String]) -> String {
        let shown = nodes.prefix(5).joined(separator: ", ")
        let more = nodes.count > 5 ? " and \(nodes.count - 5) more" : ""
        return nodes.count == 1 ? "node \(shown) is" : "nodes \(shown)\(more) are"
    }
}
