import UpkeepCore

/// Turns an inventory, a target and the versions on offer into a `Plan`, or a `PlanError`
/// listing every reason it cannot. Pure: no clock, no I/O; the same input gives the same plan.
/// The rules and why they hold are in docs/planning.md.
public enum Planner {
    public static func plan(inventory: ClusterInventory, target: K3sVersion, available: [K3sVersion],
                            policy: PlanPolicy) throws(PlanError) -> Plan {
        let cluster = try ClusterView(inventory: inventory, policy: policy)
        var problems: [PlanProblem] = []
        // The nodes the plan may change (all of them unless the operator chose some).
        let chosen = cluster.chosen(policy.selection, problems: &problems)

        let notReady = cluster.order.filter { chosen[$0] && !cluster.nodes[$0].ready }.map { cluster.nodes[$0].name }
        if !notReady.isEmpty { problems.append(.nodesNotReady(notReady)) }
        if !available.contains(target) {
            let newest = available.filter { $0.minorLine == target.minorLine && $0.isRelease }.max()
            problems.append(.targetNotAvailable(target: target, newestInLine: newest))
        }
        let skew = cluster.skewProblems()
        problems += skew
        if let foreign = cluster.nodes.first(where: { $0.version.major != target.major }) {
            problems.append(.acrossMajor(from: foreign.version.minorLine, to: target.minorLine))
            throw PlanError(problems)
        }

        let newer = cluster.order.filter { chosen[$0] && cluster.nodes[$0].version > target }.map { cluster.nodes[$0].name }
        let older = cluster.order.filter { chosen[$0] && cluster.nodes[$0].version < target }.map { cluster.nodes[$0].name }
        let direction: Plan.Direction
        switch (newer.isEmpty, older.isEmpty) {
        case (true, true): direction = .none
        case (true, false): direction = .upgrade
        case (false, true):
            direction = .downgrade
            if !policy.allowDowngrade { problems.append(.downgradeRefused(nodes: newer, target: target)) }
            if let newest = cluster.servers.filter({ chosen[$0] }).map({ cluster.nodes[$0].version }).max(), newest.minorLine > target.minorLine {
                problems.append(.serversDownAMinor(from: newest.minorLine, to: target.minorLine))
            }
        case (false, false):
            problems.append(.mixedDirection(newer: newer, older: older, target: target))
            throw PlanError(problems)
        }

        // Every chosen node not at the target moves at least once (the last hop brings all to it).
        let moving = cluster.nodes.indices.map { chosen[$0] && cluster.nodes[$0].version != target }
        problems += cluster.volumeProblems(moving: moving)
        // Hops are walked only from a cluster within the skew policy, with a stop on every line.
        guard skew.isEmpty else { throw PlanError(problems) }
        if let selection = policy.selection { problems += cluster.selectionProblems(selection, moving: moving, target: target) }
        let stops = hopStops(cluster: cluster, target: target, direction: direction, available: available, problems: &problems)
        guard problems.isEmpty else { throw PlanError(problems) }
        var sequencer = HopSequencer(cluster: cluster, policy: policy, chosen: chosen)
        let hops = sequencer.sequence(stops: stops, target: target, direction: direction)
        precondition(sequencer.moved == moving, "the hops move exactly the chosen nodes not at the target")

        return Plan(target: target, direction: direction, policy: policy, hops: hops,
                    unchanged: sequencer.unchanged(),
                    warnings: cluster.warnings(moving: moving) + cluster.selectionWarnings(chosen, selection: policy.selection),
                    caveats: direction == .downgrade ? downgradeCaveats : [],
                    longhorn: cluster.longhornSummary(separations: sequencer.separations))
    }

    /// The version the servers stop at on each hop: every minor line between the cluster and the
    /// target, at its newest offered release, and the target itself last. An upgrade that spans
    /// lines starts with a stop at the oldest server version, where only lagging agents move.
    static func hopStops(cluster: ClusterView, target: K3sVersion, direction: Plan.Direction, available: [K3sVersion],
                         problems: inout [PlanProblem]) -> [K3sVersion] {
        guard direction != .none, let oldest = cluster.serverVersions.min(), let newest = cluster.serverVersions.max() else { return [] }
        var newestRelease: [MinorLine: K3sVersion] = [:]
        for version in available where version.isRelease {
            if let known = newestRelease[version.minorLine], known >= version { continue }
            newestRelease[version.minorLine] = version
        }
        func stop(_ minor: Int) -> K3sVersion? {
            let line = MinorLine(major: target.major, minor: minor)
            if line == target.minorLine { return target }
            guard let release = newestRelease[line] else {
                problems.append(.noReleaseInLine(line, target: target))
                return nil
            }
            return release
        }
        let targetMinor = target.minor
        switch direction {
        case .upgrade where oldest.minor < targetMinor:
            return [oldest] + ((oldest.minor + 1)...targetMinor).compactMap(stop)
        case .downgrade where newest.minor > targetMinor:
            return (targetMinor..<newest.minor).reversed().compactMap(stop)
        default:
            return [target]
        }
    }

    /// Servers never go down a minor in a plan (`serversDownAMinor`); what remains is a
    /// downgrade within the servers' minor, which a binary swap undoes.
    static let downgradeCaveats = [
        "Upkeep swaps k3s binaries only; it does not restore the datastore. Within a Kubernetes minor that is what k3s "
         + "documents; to go back a minor, `upkeep rollback --restore` restores the datastore snapshot taken before the upgrade "
         + "with the old binary (https://docs.k3s.io/upgrades/roll-back)."]
}

/// The inventory indexed for planning: nodes in a stable order, volume constraints by node.
struct ClusterView {
    let nodes: [InventoryNode]
    let volumes: [InventoryVolume]
    /// Node indices, servers first, each role in natural name order.
    let order: [Int]
    let servers: [Int]
    let agents: [Int]
    let index: [String: Int]
    /// Per volume: inventory indices of its protected nodes (nodes outside the inventory are
    /// never taken down, so they are left out).
    let protected: [[Int32]]
    /// How many protected nodes each volume has, counting nodes outside the inventory.
    let protectedCount: [Int32]
    /// Per node: volumes (indices) that constrain waves holding it (two or more protected nodes).
    let constraints: [[Int32]]

    init(inventory: ClusterInventory, policy: PlanPolicy) throws(PlanError) {
        nodes = inventory.nodes
        volumes = inventory.volumes
        var problems: [PlanProblem] = []
        if nodes.isEmpty { problems.append(.noNodes) }
        if !(1...PlanPolicy.agentConcurrencyMax).contains(policy.agentConcurrency) {
            problems.append(.invalidConcurrency(policy.agentConcurrency))
        }
        var index: [String: Int] = [:]
        index.reserveCapacity(nodes.count)
        for (position, node) in nodes.enumerated() {
            if index.updateValue(position, forKey: node.name) != nil { problems.append(.duplicateNode(node.name)) }
        }
        if !nodes.isEmpty && !nodes.contains(where: { $0.role == .server }) { problems.append(.noServers) }
        guard problems.isEmpty else { throw PlanError(problems) }
        self.index = index

        let sorted = NaturalNames.sortedIndices(nodes.map(\.name))
        servers = sorted.filter { inventory.nodes[$0].role == .server }
        agents = sorted.filter { inventory.nodes[$0].role == .agent }
        order = servers + agents

        var protected: [[Int32]] = []
        var protectedCount: [Int32] = []
        var constraints = [[Int32]](repeating: [], count: nodes.count)
        protected.reserveCapacity(volumes.count)
        for (volume, entry) in inventory.volumes.enumerated() {
            let names = entry.protectedNodes
            let members = names.compactMap { index[$0].map(Int32.init) }
            protected.append(members)
            protectedCount.append(Int32(names.count))
            if names.count >= 2 { for member in members { constraints[Int(member)].append(Int32(volume)) } }
        }
        self.protected = protected
        self.protectedCount = protectedCount
        self.constraints = constraints
    }

    var serverVersions: [K3sVersion] { servers.map { nodes[$0].version } }

    func skewProblems() -> [PlanProblem] {
        var problems: [PlanProblem] = []
        guard let oldest = serverVersions.min(), let newest = serverVersions.max() else { return [] }
        if !SkewPolicy.serversAllowed(oldest.minorLine, newest.minorLine) {
            problems.append(.serversOutOfSkew(oldest: oldest, newest: newest))
        }
        for agent in agents where nodes[agent].version.minorLine > oldest.minorLine {
            problems.append(.kubeletNewerThanServer(node: nodes[agent].name, version: nodes[agent].version, server: oldest))
        }
        return problems
    }

    /// Faulted volumes anywhere, and volumes whose only protected node is one the plan moves.
    func volumeProblems(moving: [Bool]) -> [PlanProblem] {
        var problems: [PlanProblem] = []
        for (position, volume) in volumes.enumerated() {
            if volume.robustness == .faulted || (volume.state == .attached && protectedCount[position] == 0) {
                problems.append(.faultedVolume(volume.name))
            } else if protectedCount[position] == 1, let only = protected[position].first, moving[Int(only)] {
                problems.append(.singleHealthyReplica(volume: volume.name, node: nodes[Int(only)].name, running: volume.state != .detached))
            }
        }
        return problems
    }

    func warnings(moving: [Bool]) -> [String] {
        var warnings: [String] = []
        let etcd = servers.filter { nodes[$0].etcd }.count
        if servers.count == 1 && moving[servers[0]] {
            warnings.append("one server only: the Kubernetes API is unavailable while \(nodes[servers[0]].name) restarts (workloads keep running)")
        }
        if etcd == 2 {
            warnings.append("2 etcd members: etcd loses quorum while either restarts; 1 or 3 or more members avoid that")
        }
        let degraded = volumes.filter { $0.robustness == .degraded }.map(\.name)
        if !degraded.isEmpty {
            let shown = degraded.prefix(5).joined(separator: ", ") + (degraded.count > 5 ? " and \(degraded.count - 5) more" : "")
            warnings.append("degraded Longhorn volumes (\(shown)): each node's gate waits for them to be healthy again")
        }
        let cordoned = order.filter { nodes[$0].cordoned && moving[$0] }.map { nodes[$0].name }
        if !cordoned.isEmpty {
            warnings.append("already cordoned: \(cordoned.prefix(5).joined(separator: ", "))\(cordoned.count > 5 ? " and \(cordoned.count - 5) more" : ""); Upkeep leaves them cordoned afterwards")
        }
        for agent in agents where moving[agent] {
            if let newest = serverVersions.max(), !SkewPolicy.kubeletAllowed(nodes[agent].version.minorLine, server: newest.minorLine) {
                warnings.append("\(nodes[agent].name) (\(nodes[agent].version)) is already too far behind the servers (\(newest.minorLine)) for the skew policy; it is brought level in the first hop")
            }
        }
        return warnings
    }

    /// Per node: whether the plan may change it. Names the selection has that the cluster does
    /// not are problems (a typo must not quietly shrink a rollout).
    func chosen(_ selection: NodeSelection?, problems: inout [PlanProblem]) -> [Bool] {
        guard let selection else { return Array(repeating: true, count: nodes.count) }
        let unknown = selection.nodes.filter { index[$0] == nil }
        if !unknown.isEmpty { problems.append(.unknownNodes(unknown, how: selection.how)) }
        if selection.nodes.isEmpty { problems.append(.nothingSelected(how: selection.how)) }
        var chosen = Array(repeating: false, count: nodes.count)
        for name in selection.nodes { if let node = index[name] { chosen[node] = true } }
        return chosen
    }

    /// The skew policy against the nodes the selection leaves where they are: once every chosen
    /// node is at the target, API servers must still be within one minor of each other, and no
    /// kubelet newer than an API server or lagging beyond its allowance. Versions only move one
    /// way in a plan, so the end is where the distance is largest.
    func selectionProblems(_ selection: NodeSelection, moving: [Bool], target: K3sVersion) -> [PlanProblem] {
        let final = nodes.indices.map { moving[$0] ? target : nodes[$0].version }
        let finalServers = servers.map { (name: nodes[$0].name, version: final[$0], moves: moving[$0]) }
        guard let oldest = finalServers.min(by: { $0.version < $1.version }),
              let newest = finalServers.max(by: { $0.version < $1.version }) else { return [] }
        var problems: [PlanProblem] = []
        if !SkewPolicy.serversAllowed(oldest.version.minorLine, newest.version.minorLine) {
            let (still, moved) = oldest.moves ? (newest, oldest) : (oldest, newest)
            problems.append(.selectionBreaksSkew(
                "server \(moved.name) would run \(moved.version) while \(still.name), not selected, stays at \(still.version): API servers "
                + "must stay within one minor of each other (https://kubernetes.io/releases/version-skew-policy/); select \(still.name) too, "
                + "or choose a target in \(still.version.minorLine) or the next minor", how: selection.how))
        }
        for agent in agents {
            let line = final[agent].minorLine
            let name = nodes[agent].name
            if line > oldest.version.minorLine {
                let fix = moving[agent]
                    ? "select \(oldest.name) too (servers go first), or choose a target no newer than \(oldest.version.minorLine)"
                    : "select \(name) too, or leave the servers at or above its minor"
                problems.append(.selectionBreaksSkew(
                    "agent \(name) would run \(final[agent]) while server \(oldest.name)\(oldest.moves ? "" : ", not selected,") "
                    + "\(oldest.moves ? "goes to" : "stays at") \(oldest.version): a kubelet must never be newer than an API server "
                    + "(https://kubernetes.io/releases/version-skew-policy/); \(fix)", how: selection.how))
            } else if !SkewPolicy.kubeletAllowed(line, server: newest.version.minorLine) && !moving[agent] {
                problems.append(.selectionBreaksSkew(
                    "agent \(name), not selected, stays at \(final[agent]) while server \(newest.name) goes to \(newest.version): a kubelet "
                    + "may lag at most \(SkewPolicy.kubeletLagMax(line)) minors behind the API servers "
                    + "(https://kubernetes.io/releases/version-skew-policy/); select \(name) too, or choose a nearer target", how: selection.how))
            }
        }
        return problems
    }

    /// Nodes the selection leaves alone that are not Ready: they do not hold the plan or its
    /// gates, but the operator should know.
    func selectionWarnings(_ chosen: [Bool], selection: NodeSelection?) -> [String] {
        guard let selection else { return [] }
        let left = order.filter { !chosen[$0] }.map { nodes[$0].name }
        var warnings = ["only the selected nodes move (\(selection.how)); \(left.isEmpty ? "none is" : "\(left.count) left alone:") "
                        + (left.isEmpty ? "left alone" : GateCheck.listed(left))]
        let notReady = order.filter { !chosen[$0] && !nodes[$0].ready }.map { nodes[$0].name }
        if !notReady.isEmpty {
            warnings.append("\(GateCheck.listed(notReady)) not Ready but not selected: the rollout does not wait for \(notReady.count == 1 ? "it" : "them")")
        }
        return warnings
    }

    func longhornSummary(separations: Int) -> LonghornSummary {
        LonghornSummary(volumes: volumes.count,
                        attached: volumes.filter { $0.state == .attached }.count,
                        detached: volumes.filter { $0.state == .detached }.count,
                        constraining: protectedCount.filter { $0 >= 2 }.count,
                        separations: separations)
    }
}

/// Natural-order sorting of node names (`node-2` before `node-10`); equal names keep input order.
enum NaturalNames {
    static func sortedIndices(_ names: [String]) -> [Int] {
        Array(names.indices).sorted { a, b in
            if names[a] == names[b] { return a < b }
            return NaturalOrder.less(names[a], names[b])
        }
    }
}
