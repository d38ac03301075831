import UpkeepCore

/// A node `upkeep recover` addresses through its agent alone (the Kubernetes API is down).
public struct RecoveryNode: Codable, Equatable, Sendable {
    public var name: String
    public var role: NodeRole
    public var arch: Arch
    /// What its agent says k3s runs.
    public var version: K3sVersion

    public init(name: String, role: NodeRole, arch: Arch, version: K3sVersion) {
        self.name = name
        self.role = role
        self.arch = arch
        self.version = version
    }
}

extension RolloutEngine {
    /// `upkeep recover --from-backup`: an engine whose only work is restoring `snapshot` through
    /// the agents, by the same persisted steps as a hop's restore, without the API: binaries
    /// staged and the backup streamed first, k3s stopped on every server, the restore on
    /// `servers[0]`, the other servers cleared and rejoined, then every agent newer than the
    /// backup's version brought to it by an install, `agentConcurrency` at a time.
    public init(recoveryID: String, snapshot: RestoreSnapshot, servers: [RecoveryNode], agents: [RecoveryNode],
                policy: RolloutPolicy, agentConcurrency: Int) throws(RolloutSetupError) {
        guard !servers.isEmpty, servers.allSatisfy({ $0.role == .server }), agents.allSatisfy({ $0.role == .agent }) else {
            throw RolloutSetupError.badRecovery("a recovery needs at least one server, and servers and agents in their own lists")
        }
        let plan = Plan(target: snapshot.version, direction: .downgrade, policy: PlanPolicy(agentConcurrency: max(1, agentConcurrency)),
                        hops: [], unchanged: [], warnings: [], caveats: [],
                        longhorn: LonghornSummary(volumes: 0, attached: 0, detached: 0, constraining: 0, separations: 0))
        try self.init(rolloutID: recoveryID, plan: plan, policy: policy)
        var run = RestoreRun(number: 1, hop: nil, snapshot: snapshot,
                             cause: "recovered from datastore backup \(snapshot.backupID) (taken \(MaintenanceWindowClock.text(snapshot.takenAt)) "
                                 + "at \(snapshot.version))", requested: true, apiAvailable: false, stage: .preparing)
        for (position, server) in servers.enumerated() {
            run.members.append(RestoreMember(key: "x1.\(run.members.count)", node: server.name, role: .server, arch: server.arch,
                                             from: server.version, to: snapshot.version, way: position == 0 ? .restore : .rejoin))
        }
        var batch: [Int] = []
        for agent in agents where agent.version > snapshot.version {
            batch.append(run.members.count)
            run.members.append(RestoreMember(key: "x1.\(run.members.count)", node: agent.name, role: .agent, arch: agent.arch,
                                             from: agent.version, to: snapshot.version, way: .install))
            if batch.count == plan.policy.agentConcurrency {
                run.agentBatches.append(batch)
                batch = []
            }
        }
        if !batch.isEmpty { run.agentBatches.append(batch) }
        restore = run
        direction = .restoring(cause: run.cause)
        cursor = waves.count
        openFrom = nil
    }

    /// What this engine is to do, in one line for its start: the plan's headline, or for a
    /// recovery (which has no hops) the restore's steps and the nodes in each.
    public var headline: String {
        guard case .restoring = direction, let run = restore else { return plan.headline() }
        func names(_ way: RestoreMember.Way) -> [String] { run.members.filter { $0.way == way }.map(\.node) }
        let servers = run.members.filter { $0.role == .server }.count
        var steps = ["restore datastore backup \(run.snapshot.backupID) (at \(run.snapshot.version)) through the agents: "
                     + "stop k3s on \(servers) server\(servers == 1 ? "" : "s"), restore on \(names(.restore).joined(separator: ", "))"]
        let rejoining = names(.rejoin)
        if !rejoining.isEmpty { steps.append("clear and rejoin \(rejoining.joined(separator: ", "))") }
        let installing = names(.install)
        steps.append(installing.isEmpty ? "no agent to bring back"
                     : "bring agent\(installing.count == 1 ? "" : "s") \(installing.joined(separator: ", ")) to \(run.snapshot.version)")
        return steps.joined(separator: "; ")
    }

    /// The recovery or restore under way, for the CLI: which backup, and where it stands.
    public var restoreSummary: (backupID: String, hop: Int?, stage: String)? {
        guard case .restoring = direction, let run = restore else { return nil }
        return (run.snapshot.backupID, run.hop, run.stage.rawValue)
    }
}
