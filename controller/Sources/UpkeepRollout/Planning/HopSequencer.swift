import UpkeepCore

/// Walks the hop stops in order, deciding which nodes move in each hop and in which wave,
/// while tracking every node's version so the skew rules are checked against the cluster as it
/// will be at that point, not as it is now.
struct HopSequencer {
    let cluster: ClusterView
    let policy: PlanPolicy
    /// Per node: the plan may change it.
    let chosen: [Bool]
    private(set) var current: [K3sVersion]
    /// Nodes that move at least once.
    private(set) var moved: [Bool]
    private(set) var separations = 0
    /// Canaries still to place: the first agents the plan moves, each in a wave of its own.
    private var canariesLeft: Int

    init(cluster: ClusterView, policy: PlanPolicy, chosen: [Bool]) {
        self.cluster = cluster
        self.policy = policy
        self.chosen = chosen
        current = cluster.nodes.map(\.version)
        moved = Array(repeating: false, count: cluster.nodes.count)
        canariesLeft = policy.canaries
    }

    mutating func sequence(stops: [K3sVersion], target: K3sVersion, direction: Plan.Direction) -> [Hop] {
        var hops: [Hop] = []
        for (position, stop) in stops.enumerated() {
            let number = hops.count + 1
            let last = position == stops.count - 1
            var waves: [Wave]
            switch direction {
            case .upgrade:
                let upServers = cluster.servers.filter { chosen[$0] && current[$0] < stop }
                let upAgents = cluster.agents.filter { agent in
                    guard chosen[agent], current[agent] < stop else { return false }
                    return last || !SkewPolicy.kubeletAllowed(current[agent].minorLine, server: stops[position + 1].minorLine)
                }
                let agents = agentWaves(upAgents, to: stop, hop: number, reason: { agent in
                    upgradeReason(agent: agent, stop: stop, next: last ? nil : stops[position + 1])
                })
                waves = serverWaves(upServers, to: stop, hop: number, direction: direction) + agents.waves
                separations += agents.separations
                canariesLeft -= agents.waves.filter(\.isCanary).count
            case .downgrade:
                let downAgents = cluster.agents.filter { chosen[$0] && current[$0] > stop }
                let downServers = cluster.servers.filter { chosen[$0] && current[$0] > stop }
                let agents = agentWaves(downAgents, to: stop, hop: number, reason: { _ in
                    "agent: goes down to \(stop) before the servers do, so no kubelet is ever newer than an API server"
                })
                waves = agents.waves + serverWaves(downServers, to: stop, hop: number, direction: direction)
                separations += agents.separations
                canariesLeft -= agents.waves.filter(\.isCanary).count
            case .none:
                waves = []
            }
            guard !waves.isEmpty else { continue }
            let before = newestServerMinor
            for wave in waves { for step in wave.steps { commit(step) } }
            let raises = newestServerMinor.map { after in before.map { after > $0 } ?? true } ?? false
            hops.append(Hop(number: number, version: stop, waves: waves, rollbackKind: raises ? .restore : .binaries))
        }
        return hops
    }

    /// The newest Kubernetes minor any server runs at this point of the plan: the minor the
    /// datastore is written at once servers run it.
    private var newestServerMinor: MinorLine? { cluster.servers.map { current[$0].minorLine }.max() }

    private mutating func commit(_ step: NodeStep) {
        guard let node = cluster.index[step.node] else { preconditionFailure("planned an unknown node \(step.node)") }
        current[node] = step.to
        moved[node] = true
    }

    private func step(_ node: Int, to version: K3sVersion, reason: String) -> NodeStep {
        let entry = cluster.nodes[node]
        let cordonNote = entry.cordoned ? "; cordoned before the rollout, so it stays cordoned afterwards" : ""
        return NodeStep(node: entry.name, role: entry.role, etcd: entry.etcd, arch: entry.arch, from: current[node], to: version,
                        reason: reason + cordonNote, wasCordoned: entry.cordoned)
    }

    /// Servers one at a time: with embedded etcd, one member down keeps quorum; without, the
    /// other API servers keep serving.
    private func serverWaves(_ servers: [Int], to version: K3sVersion, hop: Int, direction: Plan.Direction) -> [Wave] {
        servers.enumerated().map { position, server in
            precondition(current[server].minorLine.minorsUntil(version.minorLine).map { abs($0) <= 1 } ?? false,
                         "a server hop never spans more than one minor")
            let verb = direction == .downgrade ? "downgraded" : "upgraded"
            let why = cluster.nodes[server].etcd ? "\(verb) alone to keep etcd quorum" : "\(verb) alone so the other API servers keep serving"
            let order = direction == .downgrade ? ", after every agent is at or below \(version)" : ""
            let reason = "server: \(why)\(order)"
            return Wave(hop: hop, number: position + 1, role: .server, steps: [step(server, to: version, reason: reason)], reason: reason)
        }
    }

    private func upgradeReason(agent: Int, stop: K3sVersion, next: K3sVersion?) -> String {
        let from = current[agent].minorLine
        guard let next else {
            if (from.minorsUntil(stop.minorLine) ?? 0) <= 1 { return "agent: follows the servers to \(stop) once every server runs it" }
            return "agent: jumps \(from) → \(stop.minorLine) in one step once every server runs \(stop) (a kubelet may lag up to \(SkewPolicy.kubeletLagMax(from)) minors, so it need not hop with the servers)"
        }
        return "agent: moves in this hop because the next one takes the servers to \(next.minorLine), which would leave its kubelet (\(from)) more than \(SkewPolicy.kubeletLagMax(from)) minors behind"
    }

    /// The first `canariesLeft` agents each go in a wave of their own (`c1`, `c2`, …); the rest
    /// in waves built for Longhorn as usual. A wave of one node never holds every protected node
    /// of a volume that has two or more, and single-copy volumes on moving nodes are refused.
    private func agentWaves(_ agents: [Int], to version: K3sVersion, hop: Int, reason: (Int) -> String) -> (waves: [Wave], separations: Int) {
        guard !agents.isEmpty else { return ([], 0) }
        let canaries = Array(agents.prefix(canariesLeft))
        let soak = policy.canarySoakSeconds
        var waves = canaries.enumerated().map { position, agent in
            let rest = canaries.count < agents.count
                ? (soak > 0 ? "; then a soak of \(soak) s and the gates before the rest" : "; then the gates before the rest") : ""
            let why = "canary \(position + 1) of \(policy.canaries): goes alone, before the other agents\(position + 1 == canaries.count ? rest : "")"
            return Wave(hop: hop, number: position + 1, role: .agent, steps: [step(agent, to: version, reason: reason(agent) + "; " + why)],
                        reason: why, canary: true)
        }
        let others = Array(agents.dropFirst(canaries.count))
        guard !others.isEmpty else { return (waves, 0) }
        let built = WaveBuilder.build(others, cluster: cluster, concurrency: policy.agentConcurrency)
        waves += built.waves.enumerated().map { position, members in
            let number = position + 1
            let summary = built.summary(wave: position, number: number, cluster: cluster)
            let steps = members.map { agent in
                var why = reason(agent) + "; " + summary
                if let bump = built.bumps[agent] { why += "; " + bump }
                return step(agent, to: version, reason: why)
            }
            return Wave(hop: hop, number: number, role: .agent, steps: steps, reason: summary)
        }
        return (waves, built.separations)
    }

    func unchanged() -> [NodeNote] {
        cluster.order.filter { !moved[$0] }.map { node in
            let why = chosen[node] ? "already at the target" : "not selected (\(policy.selection?.how ?? "selection"))"
            return NodeNote(node: cluster.nodes[node].name, version: cluster.nodes[node].version, reason: why)
        }
    }
}
