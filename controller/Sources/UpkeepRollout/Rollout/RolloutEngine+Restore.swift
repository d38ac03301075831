import UpkeepCore

/// Undoing a hop by restoring the datastore snapshot taken before it, the way k3s documents a
/// roll-back across a minor (https://docs.k3s.io/upgrades/roll-back): stage the old binaries
/// and stream the snapshot to the restoring server before anything stops; drain every node
/// (API available); stop k3s on every server; restore on one server with the old binary; clear
/// and rejoin the others one at a time; return the hop's agents; uncordon; verify. Every step
/// is a request with an operation id in the persisted engine, so a crash of the controller or
/// an agent at any point resumes where it was.
extension RolloutEngine {
    // MARK: - What `upkeep rollback --restore` would do

    /// The hop a restore would undo now and its snapshot, or why there is none.
    public var restoreChoice: RestoreChoice {
        switch status {
        case .notStarted: return .refused("rollout \(rolloutID) has not started; nothing to undo")
        case .running, .stopping:
            return .refused("rollout \(rolloutID) is still running; wait until it finishes or blocks (`upkeep status`)")
        case .finished(.abandoned):
            return .refused("rollout \(rolloutID) was abandoned, so Upkeep no longer knows where its nodes are; "
                            + "restore a backup with `upkeep recover --from-backup ID`")
        case .blocked, .finished:
            break
        }
        if case .restoring = direction, let run = restore, run.stage != .done {
            return .refused("a restore of rollout \(rolloutID) is under way; `upkeep resume` carries it on")
        }
        let undone = Set(undoneHops ?? [])
        let started = moves.indices.compactMap { index -> Int? in
            let move = moves[index]
            guard let hop = hop(ofMove: index), !undone.contains(hop) else { return nil }
            return move.installOperationID != nil || move.phase == .installing ? hop : nil
        }
        guard let hop = started.max() else {
            return .refused("rollout \(rolloutID) has no hop left to undo: no node of it runs a version it installed")
        }
        guard let snapshot = snapshot(before: hop) else {
            return .refused("hop \(hop) of rollout \(rolloutID) has no datastore snapshot (backups were skipped or failed); "
                            + "restore a backup taken before it with `upkeep recover --from-backup ID`")
        }
        return .ready(hop: hop, snapshot: snapshot)
    }

    /// `upkeep rollback --restore`: the operator's restore of the newest hop not undone.
    mutating func operatorRestore(_ now: Instant, _ out: inout [Action]) {
        guard case .ready(let hop, let snapshot) = restoreChoice else {
            if case .refused(let why) = restoreChoice { out.append(.notice(Notice(.error, "restore refused: \(why)"))) }
            return
        }
        // Requests left unanswered by the block are given up: the restore resets every node.
        for request in unansweredRequests {
            out.append(.notice(Notice(.warning, node: request.node, "\(request.command.name) was sent and not answered: "
                                          + "given up for the restore (\(request.operationID))")))
        }
        pending.removeAll()
        pendingOrder.removeAll()
        stopReason = nil
        beginRestore(hop: hop, snapshot: snapshot, cause: "the operator undid hop \(hop) (`upkeep rollback --restore`)", requested: true, now, &out)
    }

    /// The last restore was the operator's (`upkeep rollback --restore`, `upkeep recover`), not
    /// the engine's answer to a failure: its end is the command's success.
    public var restoreWasRequested: Bool { restore?.requested == true }

    /// Starts restoring `snapshot` to undo `hop`: forward work is over; the restore surveys the
    /// cluster for its members first.
    mutating func beginRestore(hop: Int, snapshot: RestoreSnapshot, cause: String, requested: Bool = false, _ now: Instant, _ out: inout [Action]) {
        let number = (restore?.number ?? 0) + 1
        var run = RestoreRun(number: number, hop: hop, snapshot: snapshot,
                             cause: "\(cause); hop \(hop) undone by restoring datastore backup \(snapshot.backupID) "
                                 + "(taken \(MaintenanceWindowClock.text(snapshot.takenAt)) at \(snapshot.version))",
                             requested: requested, apiAvailable: true, stage: .surveying)
        run.deadline = now.adding(seconds: policy.gateTimeoutSeconds)
        run.sinceSerial = observationSerial
        // The hop's moves that changed something are over: the restore takes their nodes back.
        for index in moves.indices where self.hop(ofMove: index) == hop {
            switch moves[index].phase {
            case .pending, .cancelled, .reverted: continue
            default:
                moves[index].phase = .reverted
                moves[index].deadline = nil
                moves[index].note = "undone by restore \(number)"
            }
        }
        stragglers.removeAll()
        restore = run
        direction = .restoring(cause: run.cause)
        status = .running
        undoneHops = (undoneHops ?? []) + [hop]
        cursor = waves.count
        openFrom = nil
        out.append(.notice(Notice(.warning, "restoring datastore backup \(snapshot.backupID) (taken \(MaintenanceWindowClock.text(snapshot.takenAt)) "
                                      + "on \(snapshot.node) at \(snapshot.version)) to undo hop \(hop): every object written to the "
                                      + "cluster since then is lost")))
    }

    // MARK: - Progress

    /// Moves the restore as far as it can go now; true when anything changed.
    mutating func stepRestore(_ now: Instant, _ out: inout [Action]) -> Bool {
        guard case .restoring = direction, status == .running, let run = restore, run.stage != .done else { return false }
        switch run.stage {
        case .surveying: return survey(now, &out)
        case .preparing: return prepare(now, &out)
        case .draining: return drainEveryNode(now, &out)
        case .stopping: return stopServers(now, &out)
        case .restoring: return restoreFirstServer(now, &out)
        case .rejoining: return rejoinServers(now, &out)
        case .returningAgents: return returnAgents(now, &out)
        case .uncordoning: return uncordonMembers(now, &out)
        case .verifying: return verifyRestore(now, &out)
        case .done: return false
        }
    }

    private mutating func advanceRestore(to stage: RestoreRun.Stage, _ now: Instant, _ out: inout [Action]) {
        restore?.stage = stage
        restore?.position = 0
        restore?.deadline = nil
        switch stage {
        case .verifying:
            restore?.deadline = now.adding(seconds: policy.verifyTimeoutSeconds)
            restore?.sinceSerial = observationSerial
        case .done:
            // Without the API nothing is cordoned: every member that came back is done.
            for index in restore?.members.indices ?? 0..<0 where restore?.members[index].phase != .done {
                restore?.members[index].phase = .done
            }
            if let run = restore { out.append(.notice(Notice(.info, "restore \(run.number) done: \(run.cause)"))) }
        default:
            break
        }
    }

    private mutating func survey(_ now: Instant, _ out: inout [Action]) -> Bool {
        guard let run = restore else { return false }
        guard let observation, observationSerial > run.sinceSerial else {
            guard let deadline = run.deadline, now >= deadline else { return false }
            stop(.blocked("cannot read the cluster to begin the restore within \(policy.gateTimeoutSeconds) s; nothing was changed. "
                          + "If the Kubernetes API is down, run `upkeep recover --from-backup \(run.snapshot.backupID)`"), &out)
            return true
        }
        var members = restoreMembers(observation: observation, hop: run.hop, number: run.number)
        // A node a move cordoned (left cordoned as unhealthy, or the restore began mid-wave) is
        // the restore's to uncordon now.
        for index in moves.indices where moves[index].cordonedByUs {
            if let member = members.firstIndex(where: { $0.node == moves[index].node }) { members[member].cordonedByUs = true }
            moves[index].cordonedByUs = false
        }
        restore?.members = members
        let batches = agentBatches(hop: run.hop)
        restore?.agentBatches = batches
        let servers = restore?.members.filter { $0.role == .server }.map(\.node) ?? []
        out.append(.notice(Notice(.info, "restore \(run.number): \(servers.first ?? "?") restores the snapshot; "
                                      + "\(servers.dropFirst().isEmpty ? "no other server" : GateCheck.listed(Array(servers.dropFirst()))) rejoin")))
        advanceRestore(to: .preparing, now, &out)
        return true
    }

    /// Servers (the hop's first restores), then the agents the hop moved (batch by batch), then
    /// every other node (drained and uncordoned around the restore only).
    private func restoreMembers(observation: ClusterObservation, hop: Int?, number: Int) -> [RestoreMember] {
        let hopMoves = moves.indices.filter { index in hop != nil && self.hop(ofMove: index) == hop }
        var firstServer: String?
        for index in hopMoves where moves[index].role == .server {
            firstServer = moves[index].node
            break
        }
        var pre: [String: K3sVersion] = [:]
        var installed: [String: K3sVersion] = [:]
        for index in hopMoves where pre[moves[index].node] == nil {
            pre[moves[index].node] = moves[index].from
            if moves[index].installOperationID != nil { installed[moves[index].node] = moves[index].to }
        }
        var nodes = observation.inventory.nodes
        for index in hopMoves where !nodes.contains(where: { $0.name == moves[index].node }) {
            let move = moves[index]
            nodes.append(InventoryNode(name: move.node, role: move.role, arch: move.arch, version: move.from, ready: false))
        }
        let servers = nodes.filter { $0.role == .server }
            .sorted { ($0.name == firstServer ? 0 : 1, $0.name) < ($1.name == firstServer ? 0 : 1, $1.name) }
        let agents = nodes.filter { $0.role == .agent }.sorted { $0.name < $1.name }
        var members: [RestoreMember] = []
        for (position, node) in (servers + agents).enumerated() {
            // An agent the hop left elsewhere than it found it goes back: by the binary its agent
            // kept when the hop's install is what runs, else by an install of its old version.
            let way: RestoreMember.Way = node.role == .server ? (position == 0 ? .restore : .rejoin)
                : node.version == (pre[node.name] ?? node.version) ? .stay
                : installed[node.name] == node.version ? .rollback : .install
            members.append(RestoreMember(key: "x\(number).\(position)", node: node.name, role: node.role, arch: node.arch,
                                         from: node.version, to: pre[node.name] ?? node.version, way: way))
        }
        return members
    }

    /// The agents a restore returns, in the hop's own waves.
    private func agentBatches(hop: Int?) -> [[Int]] {
        guard let run = restore else { return [] }
        var batches: [[Int]] = []
        for (wave, planned) in plan.waves.enumerated() where planned.hop == hop && planned.role == .agent {
            let names = Set(waves[wave].moves.map { moves[$0].node })
            let batch = run.members.indices.filter { names.contains(run.members[$0].node) && [.rollback, .install].contains(run.members[$0].way) }
            if !batch.isEmpty { batches.append(batch) }
        }
        return batches
    }

    private mutating func prepare(_ now: Instant, _ out: inout [Action]) -> Bool {
        guard let run = restore else { return false }
        var progressed = false
        for index in run.members.indices {
            let member = run.members[index]
            switch (member.phase, member.way) {
            case (.waiting, .stay), (.waiting, .rollback):
                restore?.members[index].phase = .prepared
                progressed = true
            case (.waiting, _), (.staging, _):
                progressed = stageMember(index, then: member.way == .restore ? .receiving : .prepared, now, &out) || progressed
            default:
                continue
            }
        }
        if restore?.members.allSatisfy({ $0.phase == .prepared }) == true {
            out.append(.notice(Notice(.info, "restore \(run.number): binaries staged and the backup received; "
                                          + (run.apiAvailable ? "draining every node" : "stopping k3s on every server"))))
            advanceRestore(to: run.apiAvailable ? .draining : .stopping, now, &out)
            return true
        }
        return progressed
    }

    /// Stages the member's binary of `to` with a stage request of its own, then enters `next`;
    /// true when anything changed. A stage that fails blocks the restore.
    private mutating func stageMember(_ index: Int, then next: RestoreMember.Phase, _ now: Instant, _ out: inout [Action]) -> Bool {
        guard let member = restore?.members[index] else { return false }
        guard let id = member.stageOperationID, let stage = stageIndex.position(operationID: id, in: stages) else {
            let id = startStage(node: member.node, version: member.to, arch: member.arch, key: member.key, now)
            restore?.members[index].stageOperationID = id
            restore?.members[index].phase = .staging
            return true
        }
        switch stages[stage].state {
        case .sending:
            if member.phase == .staging { return false }
            restore?.members[index].phase = .staging
        case .staged:
            enterMember(index, next, now, &out)
        case .failed:
            let stopped = restore?.stage == .preparing ? "; nothing was stopped" : ""
            failMember(index, retry: .staging, "staging \(member.to) on \(member.node) failed: \(stages[stage].message ?? "no reason given")\(stopped)", &out)
        }
        return true
    }

    /// Every node drained at once, each bounded by `policy.restoreDrainTimeoutSeconds`, not the
    /// rollout's drain timeout: with every node cordoned no PodDisruptionBudget can be satisfied,
    /// and k3s stops on every server next anyway. A drain that does not finish is a warning
    /// naming the pods left in place, not a stop; the restore goes on.
    private mutating func drainEveryNode(_ now: Instant, _ out: inout [Action]) -> Bool {
        guard let run = restore else { return false }
        var progressed = false
        for index in run.members.indices where run.members[index].phase == .prepared {
            enterMember(index, .cordoning, now, &out)
            progressed = true
        }
        if restore?.members.allSatisfy({ $0.phase == .drained }) == true {
            advanceRestore(to: .stopping, now, &out)
            return true
        }
        return progressed
    }

    private mutating func stopServers(_ now: Instant, _ out: inout [Action]) -> Bool {
        guard let run = restore else { return false }
        var progressed = false
        for index in run.servers where run.members[index].phase == .prepared || run.members[index].phase == .drained {
            enterMember(index, .stopping, now, &out)
            progressed = true
        }
        if run.servers.allSatisfy({ restore?.members[$0].phase == .stopped }) {
            out.append(.notice(Notice(.info, "restore \(run.number): k3s stopped on every server")))
            advanceRestore(to: .restoring, now, &out)
            return true
        }
        return progressed
    }

    private mutating func restoreFirstServer(_ now: Instant, _ out: inout [Action]) -> Bool {
        guard let run = restore, let first = run.servers.first else { return false }
        switch run.members[first].phase {
        case .stopped:
            enterMember(first, .restoring, now, &out)
            return true
        case .back:
            advanceRestore(to: .rejoining, now, &out)
            return true
        default:
            return false
        }
    }

    private mutating func rejoinServers(_ now: Instant, _ out: inout [Action]) -> Bool {
        guard let run = restore else { return false }
        let others = Array(run.servers.dropFirst())
        guard run.position < others.count else {
            advanceRestore(to: .returningAgents, now, &out)
            return true
        }
        let index = others[run.position]
        switch run.members[index].phase {
        case .stopped:
            enterMember(index, .rejoining, now, &out)
            return true
        case .back:
            restore?.position += 1
            return true
        default:
            return false
        }
    }

    private mutating func returnAgents(_ now: Instant, _ out: inout [Action]) -> Bool {
        guard let run = restore else { return false }
        guard run.position < run.agentBatches.count else {
            advanceRestore(to: run.apiAvailable ? .uncordoning : .done, now, &out)
            return true
        }
        var progressed = false
        let batch = run.agentBatches[run.position]
        for index in batch {
            switch (run.members[index].phase, run.members[index].way) {
            case (.prepared, .rollback), (.drained, .rollback):
                enterMember(index, .rollingBack, now, &out)
                progressed = true
            case (.prepared, .install), (.drained, .install), (.staging, .install):
                progressed = stageMember(index, then: .installing, now, &out) || progressed
            default:
                break
            }
        }
        if batch.allSatisfy({ restore?.members[$0].phase == .back }) {
            restore?.position += 1
            return true
        }
        return progressed
    }

    private mutating func uncordonMembers(_ now: Instant, _ out: inout [Action]) -> Bool {
        guard let run = restore else { return false }
        var progressed = false
        for index in run.members.indices {
            switch run.members[index].phase {
            case .back, .drained, .prepared, .stopped:
                if run.members[index].cordonedByUs {
                    enterMember(index, .uncordoning, now, &out)
                } else {
                    restore?.members[index].phase = .done
                }
                progressed = true
            default:
                break
            }
        }
        if restore?.members.allSatisfy({ $0.phase == .done }) == true {
            advanceRestore(to: .verifying, now, &out)
            return true
        }
        return progressed
    }

    private mutating func verifyRestore(_ now: Instant, _ out: inout [Action]) -> Bool {
        guard let run = restore else { return false }
        if let observation, observationSerial > run.sinceSerial {
            let behind = run.members.filter { !GateCheck.nodeReady($0.node, at: $0.to, in: observation, index: observationIndex) }
            if behind.isEmpty {
                advanceRestore(to: .done, now, &out)
                return true
            }
            if let deadline = run.deadline, now >= deadline {
                let names = behind.map { "\($0.node) (at \($0.to))" }
                stop(.blocked("after the restore, \(GateCheck.listed(names)) \(behind.count == 1 ? "is" : "are") not Ready within "
                              + "\(policy.verifyTimeoutSeconds) s; look at \(behind.count == 1 ? "it" : "them") and run `upkeep resume`"), &out)
                return true
            }
        }
        return false
    }

    // MARK: - Requests and answers

    /// Puts member `index` in `phase`, queueing the request that phase sends.
    private mutating func enterMember(_ index: Int, _ phase: RestoreMember.Phase, _ now: Instant, _ out: inout [Action]) {
        guard let run = restore else { return }
        restore?.members[index].phase = phase
        let member = run.members[index]
        let health = policy.healthTimeoutSeconds
        let command: AgentCommand? = switch phase {
        case .receiving: .restoreBackup(backupID: run.snapshot.backupID, version: run.snapshot.version)
        case .cordoning: .cordon
        case .draining: .drain(timeoutSeconds: policy.restoreDrainTimeoutSeconds, options: policy.drain)
        case .stopping: .stopK3s
        case .restoring: .restore(backupID: run.snapshot.backupID, version: member.to, healthTimeoutSeconds: health)
        case .rejoining: .rejoin(version: member.to, healthTimeoutSeconds: health)
        case .rollingBack: .rollback(healthTimeoutSeconds: health)
        case .installing: .install(version: member.to, healthTimeoutSeconds: health, watchdogTimeoutSeconds: policy.watchdogTimeoutSeconds)
        case .committing: member.installOperationID.map { .commit(installOperationID: $0) }
        case .uncordoning: .uncordon
        default: nil
        }
        guard let command else { return }
        queue(AgentRequest(operationID: member.operationID(rolloutID, command), node: member.node, command: command),
              owner: .restore(member.key), now)
    }

    /// The member's step did not succeed: it waits for `resume`, which redoes `retry`.
    private mutating func failMember(_ index: Int, retry: RestoreMember.Phase, _ text: String, _ out: inout [Action]) {
        guard let member = restore?.members[index] else { return }
        restore?.members[index].phase = .failed
        restore?.members[index].retry = retry
        restore?.members[index].note = text
        out.append(.notice(Notice(.error, node: member.node, text)))
        stop(.blocked("restore \(restore?.number ?? 0): \(text); fix it and run `upkeep resume` to carry the restore on"), &out)
    }

    mutating func restoreReplied(_ key: String, _ operationID: String, _ reply: AgentReply, _ now: Instant, _ out: inout [Action]) {
        guard let run = restore, let index = run.members.firstIndex(where: { $0.key == key }) else { return }
        let member = run.members[index]
        if case .refused(let code, let message) = reply, code == AgentReply.interruptedCode, member.redos < policy.requestTriesMax {
            // The agent restarted in the middle: the same step again, under the next attempt.
            restore?.members[index].redos += 1
            restore?.members[index].attempt += 1
            out.append(.notice(Notice(.warning, node: member.node, "\(member.phase.rawValue) interrupted (\(code): \(message)); sending it again")))
            enterMember(index, member.phase, now, &out)
            return
        }
        switch (member.phase, reply) {
        case (.receiving, .backupReceived):
            out.append(.notice(Notice(.info, node: member.node, "holds backup \(run.snapshot.backupID), verified")))
            // Before anything stopped it completes the preparation; after a redo the restore follows.
            restore?.members[index].phase = run.stage == .restoring ? .stopped : .prepared
        case (.cordoning, .cordoned(let wasUnschedulable)):
            restore?.members[index].cordonedByUs = member.cordonedByUs || !wasUnschedulable
            enterMember(index, .draining, now, &out)
        case (.cordoning, .refused(let code, let message)):
            out.append(.notice(Notice(.warning, node: member.node, "cordon refused (\(code)): \(message); not drained, the restore goes on")))
            restore?.members[index].phase = .drained
        case (.draining, .drained):
            out.append(.notice(Notice(.info, node: member.node, "drained")))
            restore?.members[index].phase = .drained
        case (.draining, .refused(let code, let message)):
            out.append(.notice(Notice(.warning, node: member.node, "drain did not finish (\(code)): \(message); the restore goes on")))
            restore?.members[index].phase = .drained
        case (.stopping, .stopped(let wasActive)):
            out.append(.notice(Notice(.info, node: member.node, wasActive ? "k3s stopped" : "k3s was not running")))
            restore?.members[index].phase = .stopped
        case (.restoring, .restored(let version, let healthy, let message)), (.rejoining, .rejoined(let version, let healthy, let message)):
            let verb = member.phase == .restoring ? "restored backup \(run.snapshot.backupID)" : "rejoined"
            let running = version ?? member.to
            if healthy && running == member.to {
                out.append(.notice(Notice(.info, node: member.node, "\(verb): k3s \(running) healthy")))
                restore?.members[index].phase = .back
            } else {
                // A restore is redone from the backup (the agent removed it once used).
                failMember(index, retry: member.phase == .restoring ? .receiving : member.phase,
                           "\(verb), but k3s \(running) is not healthy: \(message)", &out)
            }
        case (.rollingBack, .refused(let code, let message)) where code == "notFound":
            // Nothing kept to put back: an install of its old version instead.
            out.append(.notice(Notice(.warning, node: member.node, "no binary kept to roll back to (\(message)); installing \(member.to) instead")))
            restore?.members[index].way = .install
            restore?.members[index].stageOperationID = nil
            restore?.members[index].phase = .staging
        case (.rollingBack, .rolledBack(let version, let healthy, let message)):
            if healthy {
                out.append(.notice(Notice(.info, node: member.node, "back at \(version?.description ?? member.to.description)")))
                restore?.members[index].phase = .back
            } else {
                failMember(index, retry: .rollingBack, "not healthy after going back: \(message)", &out)
            }
        case (.installing, .installed):
            restore?.members[index].installOperationID = operationID
            enterMember(index, .committing, now, &out)
        case (.installing, .installReverted(_, _, let message)):
            failMember(index, retry: .installing, "\(member.to) did not become healthy: \(message)", &out)
        case (.committing, .committed):
            restore?.members[index].installOperationID = nil
            restore?.members[index].phase = .back
        case (.uncordoning, .uncordoned):
            restore?.members[index].cordonedByUs = false
            restore?.members[index].phase = .done
            out.append(.notice(Notice(.info, node: member.node, "uncordoned")))
        case (let phase, .refused(let code, let message)):
            let retry: RestoreMember.Phase = phase == .restoring ? .receiving : phase
            failMember(index, retry: retry, "\(phase.rawValue) on \(member.node) refused (\(code)): \(message)", &out)
        default:
            out.append(.notice(Notice(.warning, node: member.node, "ignored an unexpected answer to \(operationID): \(reply)")))
        }
    }

    /// `resume` in a restore: failed steps are done again under the next attempt; steps whose
    /// answer was a refusal are sent again; waits get a fresh deadline.
    mutating func resumeRestore(_ now: Instant, _ out: inout [Action]) {
        guard case .restoring = direction, let run = restore, run.stage != .done else { return }
        for index in run.members.indices {
            let member = run.members[index]
            let owned = pending.values.contains { if case .restore(let key) = $0.owner { key == member.key } else { false } }
            if member.phase == .failed {
                restore?.members[index].attempt += 1
                restore?.members[index].note = nil
                restore?.members[index].retry = nil
                switch member.retry ?? .waiting {
                case .staging:
                    restore?.members[index].phase = .staging
                    restore?.members[index].stageOperationID = nil
                case let phase:
                    enterMember(index, phase, now, &out)
                }
            } else if !owned, [.receiving, .cordoning, .draining, .stopping, .restoring, .rejoining, .rollingBack, .installing,
                                .committing, .uncordoning].contains(member.phase) {
                restore?.members[index].attempt += 1
                enterMember(index, member.phase, now, &out)
            }
        }
        switch run.stage {
        case .surveying:
            restore?.deadline = now.adding(seconds: policy.gateTimeoutSeconds)
            restore?.sinceSerial = observationSerial
        case .verifying:
            restore?.deadline = now.adding(seconds: policy.verifyTimeoutSeconds)
            restore?.sinceSerial = observationSerial
        default:
            break
        }
    }

    /// Waiting for a look at the cluster (surveying, verifying), with its deadline.
    var restoreWaitsOnCluster: (waits: Bool, fresh: Bool, deadline: Instant?) {
        guard case .restoring = direction, status == .running, let run = restore, run.apiAvailable,
              run.stage == .surveying || run.stage == .verifying else { return (false, false, nil) }
        return (true, run.sinceSerial >= observationSerial, run.deadline)
    }
}
