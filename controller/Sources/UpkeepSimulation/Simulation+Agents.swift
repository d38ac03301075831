import UpkeepRollout
import UpkeepCore

/// The simulated upkeep-agent on every node (docs/agent.md): requests arrive over a lossy
/// network, every operation id is journalled and a repeat is answered from the journal, an
/// install keeps and places the binary, restarts k3s and reverts when it is not healthy in time,
/// a watch waits for commit, and a restarted agent resolves what it was doing: an install whose
/// new binary is live is probed again, never judged by the restart. Sabotages act here.
extension Simulation {
    func isHealthy(_ node: SimNode, version: K3sVersion) -> Bool {
        if node.name == scenario.faults.badNode && version == scenario.target { return false }
        return node.role == .agent || datastoreAllows(node, version)
    }

    mutating func arrive(_ request: AgentRequest, from: Int, send: Int) {
        guard let position = index[request.node] else { return }
        guard nodes[position].agentUp else {
            log("\(request.node): agent down, \(request.operationID) refused at connect")
            queue.push(.requestTimeout(operationID: request.operationID, incarnation: from, send: send), at: after(between(5, 3000)))
            return
        }
        if request.command == .uncordon && scenario.preCordoned.contains(request.node) {
            violations.append("uncordon sent to \(request.node), which was cordoned before the rollout")
        }
        let fingerprint = "\(request.command)"
        if let recorded = nodes[position].journal[request.operationID] {
            let reply = recorded.fingerprint == fingerprint ? recorded.reply
                : .refused(code: "conflict", message: "operation id reused for another request")
            if recorded.fingerprint != fingerprint { violations.append("operation id \(request.operationID) reused for a different request") }
            respond(request.operationID, reply, to: [(from, send)])
            return
        }
        if case .stage = request.command {
            if var running = nodes[position].stageOperation, running.request.operationID == request.operationID {
                running.waiters.append((from, send))
                nodes[position].stageOperation = running
            } else if nodes[position].stageOperation != nil {
                respond(request.operationID, .refused(code: "busy", message: "another stage is running"), to: [(from, send)], record: false)
            } else {
                nodes[position].stageOperation = SimOperation(request: request, waiters: [(from, send)], startedAt: now)
                queue.push(.operationStep(node: request.node, operationID: request.operationID, step: 1), at: after(between(1000, 8000)))
            }
            return
        }
        if var running = nodes[position].operation {
            if running.request.operationID == request.operationID {
                running.waiters.append((from, send))
                nodes[position].operation = running
            } else {
                respond(request.operationID, .refused(code: "conflict", message: "\(running.request.operationID) is running"),
                        to: [(from, send)], record: false)
                violations.append("\(request.node) got \(request.operationID) while \(running.request.operationID) was running")
            }
            return
        }
        nodes[position].operation = SimOperation(request: request, waiters: [(from, send)], startedAt: now)
        begin(position)
    }

    /// Sends an answer to everyone waiting (subject to loss, duplication and delay) and records it.
    private mutating func respond(_ id: String, _ reply: AgentReply, to waiters: [(incarnation: Int, send: Int)], record: Bool = false) {
        for waiter in waiters {
            if chance(scenario.faults.responseLoss) {
                log("fault: answer to \(id) lost")
                continue
            }
            queue.push(.reply(operationID: id, reply, incarnation: waiter.incarnation, send: waiter.send), at: after(latency()))
            if chance(scenario.faults.duplicate) {
                queue.push(.reply(operationID: id, reply, incarnation: waiter.incarnation, send: waiter.send), at: after(latency() + 500))
            }
        }
    }

    mutating func finishOperation(_ position: Int, _ reply: AgentReply, stage: Bool = false) {
        guard let operation = stage ? nodes[position].stageOperation : nodes[position].operation else { return }
        nodes[position].journal[operation.request.operationID] = ("\(operation.request.command)", reply)
        if stage { nodes[position].stageOperation = nil } else { nodes[position].operation = nil }
        respond(operation.request.operationID, reply, to: operation.waiters)
    }

    private mutating func begin(_ position: Int) {
        guard let operation = nodes[position].operation else { return }
        let id = operation.request.operationID
        let name = nodes[position].name
        switch operation.request.command {
        case .cordon:
            let was = nodes[position].unschedulable && !nodes[position].cordonedByAgent
            nodes[position].unschedulable = true
            if !was { nodes[position].cordonedByAgent = true }
            queue.push(.operationStep(node: name, operationID: id, step: was ? 2 : 1), at: after(between(20, 200)))
        case .uncordon:
            queue.push(.operationStep(node: name, operationID: id, step: 1), at: after(between(20, 200)))
        case .drain(let seconds, _):
            let blocked = chance(scenario.faults.drainBlock)
            let duration = between(1000, 20_000)
            if blocked {
                log("fault: drain of \(name) blocked by a PodDisruptionBudget")
                queue.push(.operationStep(node: name, operationID: id, step: 2), at: after(Int64(seconds) * 1000))
            } else {
                queue.push(.operationStep(node: name, operationID: id, step: 1), at: after(duration))
            }
        case .install(let asked, _, _):
            guard nodes[position].staged.contains(asked) else {
                finishOperation(position, .refused(code: "notFound", message: "\(asked) is not staged"))
                return
            }
            // Keeping the live binary and placing the new one take a moment (step 2).
            queue.push(.operationStep(node: name, operationID: id, step: 2), at: after(between(200, 3000)))
            if installKillsLeft > 0, chance(0.7) {
                installKillsLeft -= 1
                // Around the place, around the new k3s starting, or later, in the probes or a revert.
                let latest: Int64 = chance(0.3) ? 3000 : chance(0.7) ? 20_000 : 120_000
                queue.push(.killDuringInstall(node: name, operationID: id), at: after(between(0, latest)))
            }
        case .rollback:
            guard let kept = nodes[position].previous else {
                finishOperation(position, .refused(code: "notFound", message: "no previous binary kept"))
                return
            }
            let previous = wayBack(position, kept)
            violations += checkWayBack(position, to: previous, datastore: datastoreMinor(nodes[position]), by: "a rollback")
            guard datastoreAllows(nodes[position], previous) else {
                finishOperation(position, .refused(code: "conflict", message: "rolling a server back a Kubernetes minor needs its datastore restored"))
                return
            }
            nodes[position].watch = nil
            nodes[position].binary = previous
            nodes[position].previous = nil
            nodes[position].operation?.swapped = true
            restartK3s(position)
        case .commit(let install):
            if nodes[position].watch?.install == install { nodes[position].watch = nil }
            queue.push(.operationStep(node: name, operationID: id, step: 1), at: after(between(5, 50)))
        case .stage:
            break
        case .backup, .restoreBackup, .stopK3s, .restore, .rejoin:
            beginDatastoreOperation(position)
        }
    }

    mutating func operationStep(node name: String, id: String, step: Int) {
        guard let position = index[name], nodes[position].agentUp else { return }
        if let stage = nodes[position].stageOperation, stage.request.operationID == id,
           case .stage(let version, _) = stage.request.command {
            if !nodes[position].staged.contains(version) { nodes[position].staged.append(version) }
            if nodes[position].staged.count > 4 { nodes[position].staged.removeFirst() }
            finishOperation(position, .staged, stage: true)
            return
        }
        guard let operation = nodes[position].operation, operation.request.operationID == id else { return }
        switch operation.request.command {
        case .cordon:
            finishOperation(position, .cordoned(wasUnschedulable: step == 2))
        case .uncordon:
            if sabotage == .uncordonIsANoOp {
                finishOperation(position, .uncordoned(true))
            } else if nodes[position].cordonedByAgent {
                nodes[position].unschedulable = false
                nodes[position].cordonedByAgent = false
                nodes[position].drained = false
                finishOperation(position, .uncordoned(true))
            } else {
                finishOperation(position, .uncordoned(false))
            }
        case .drain:
            if step == 2 {
                finishOperation(position, .refused(code: "timeout", message: "PodDisruptionBudget kept blocking the eviction"))
            } else if longhornBlocksDrain(of: name) {
                finishOperation(position, .refused(code: "timeout", message: "Longhorn blocks: last healthy replica"))
            } else {
                nodes[position].drained = true
                if sabotage == .drainTakesEveryReplica {
                    for volume in volumes where volume.replicas.contains(where: { $0.node == name }) {
                        for replica in volume.replicas {
                            guard let other = index[replica.node] else { continue }
                            nodes[other].drained = true
                            nodes[other].cordonedByAgent = true
                            nodes[other].unschedulable = true
                        }
                    }
                }
                finishOperation(position, .drained)
            }
        case .commit:
            finishOperation(position, .committed(version: nodes[position].running))
        case .install(let asked, _, _) where step == 2:
            guard !operation.swapped else { return }
            var version = sabotage == .installJumpsToTheTarget ? scenario.target : asked
            if asked < nodes[position].binary {
                version = wayBack(position, asked)
                violations += checkWayBack(position, to: version, datastore: datastoreMinor(nodes[position]), by: "an install of an older version")
            }
            nodes[position].previous = nodes[position].binary
            nodes[position].binary = version
            nodes[position].operation?.swapped = true
            nodes[position].operation?.startedAt = now
            restartK3s(position)
        case .install(_, let healthSeconds, _):
            // Step 1: the health deadline passed after an unhealthy restart (an event of a
            // deadline that an agent restart renewed comes early and is ignored).
            guard step == 1, !operation.reverting, !nodes[position].restarting,
                  now >= operation.startedAt.adding(milliseconds: Int64(healthSeconds) * 1000 + 15_000) else { return }
            revertInstall(position)
        case .rollback:
            break
        case .stage:
            break
        case .backup, .restoreBackup, .stopK3s, .restore, .rejoin:
            datastoreOperationStep(position, step: step)
        }
    }

    private func longhornBlocksDrain(of name: String) -> Bool {
        volumes.contains { volume in
            volume.attached && volume.replicas.contains { $0.node == name && $0.running && $0.complete }
                && volume.replicas.filter { $0.running && $0.complete }.count == 1
        }
    }

    mutating func restartK3s(_ position: Int) {
        nodes[position].restartGeneration += 1
        let until = after(between(3000, 15_000))
        nodes[position].restartingUntil = until
        queue.push(.k3sUp(node: nodes[position].name, generation: nodes[position].restartGeneration), at: until)
    }

    mutating func k3sUp(_ position: Int) {
        let old = nodes[position].running
        nodes[position].restartingUntil = nil
        nodes[position].running = nodes[position].binary
        let healthy = isHealthy(nodes[position], version: nodes[position].binary) && !chance(scenario.faults.healthFailure)
        nodes[position].k3sHealthy = healthy
        if healthy { datastoreWritten(by: position) } else { newVersionFailed(position, "a probe after k3s started") }
        log("\(nodes[position].name): k3s \(old) → \(nodes[position].running) \(healthy ? "healthy" : "UNHEALTHY")")
        violations += invariants.versionChanged(node: nodes[position].name, from: old, to: nodes[position].running)
        guard nodes[position].agentUp, let operation = nodes[position].operation else { return }
        let id = operation.request.operationID
        switch operation.request.command {
        case .install(_, let healthSeconds, let watchdogSeconds):
            if operation.reverting {
                finishOperation(position, .installReverted(version: nodes[position].running, healthy: healthy,
                                                           message: "probes failed on the new version"))
            } else if healthy && sabotage == .agentRevertsAServerAfterItWasHealthy && nodes[position].role == .server
                        && (nodes[position].previous.map { $0.minorLine < nodes[position].running.minorLine } ?? false) {
                violations += checkWayBack(position, to: nodes[position].previous!, datastore: datastoreMinor(nodes[position]),
                                           by: "its agent's revert after the new minor was healthy")
                revertInstall(position)
            } else if healthy {
                let deadline = after(Int64(watchdogSeconds) * 1000)
                nodes[position].watch = (id, deadline)
                queue.push(.watchdog(node: nodes[position].name, install: id), at: deadline)
                finishOperation(position, .installed(version: nodes[position].running))
            } else {
                queue.push(.operationStep(node: nodes[position].name, operationID: id, step: 1), at: operation.startedAt.adding(milliseconds: Int64(healthSeconds) * 1000 + 15_000))
            }
        case .rollback:
            finishOperation(position, .rolledBack(version: nodes[position].running, healthy: healthy, message: healthy ? "" : "probes failed"))
        case .restore:
            finishOperation(position, .restored(version: nodes[position].running, healthy: healthy, message: healthy ? "" : "probes failed"))
        case .rejoin:
            finishOperation(position, .rejoined(version: nodes[position].running, healthy: healthy, message: healthy ? "" : "probes failed"))
        default:
            break
        }
    }

    /// A restarted agent finishing an interrupted swap restarts k3s before it answers anyone.
    mutating func restartDuringStart(_ position: Int) {
        nodes[position].restartGeneration += 1
        nodes[position].restartingUntil = nil
        let old = nodes[position].running
        nodes[position].running = nodes[position].binary
        nodes[position].k3sHealthy = isHealthy(nodes[position], version: nodes[position].binary)
        if nodes[position].k3sHealthy { datastoreWritten(by: position) }
        if old != nodes[position].running {
            log("\(nodes[position].name): k3s \(old) → \(nodes[position].running) (agent recovery)")
            violations += invariants.versionChanged(node: nodes[position].name, from: old, to: nodes[position].running)
        }
    }

    private mutating func revertInstall(_ position: Int) {
        guard let kept = nodes[position].previous else { return }
        nodes[position].operation?.reverting = true
        nodes[position].binary = wayBack(position, kept)
        restartK3s(position)
    }

    mutating func watchdog(_ name: String, _ install: String) {
        guard let position = index[name], let watch = nodes[position].watch, watch.install == install, nodes[position].agentUp else { return }
        nodes[position].watch = nil
        if nodes[position].ready(at: now) {
            log("\(name): watchdog deadline, healthy: keeps \(nodes[position].running)")
        } else if let previous = nodes[position].previous, !datastoreAllows(nodes[position], previous) {
            log("\(name): watchdog deadline, unhealthy, but \(previous) cannot run on its datastore: reports instead of reverting")
        } else if let previous = nodes[position].previous {
            newVersionFailed(position, "the watchdog's probe at its deadline")
            violations += checkWayBack(position, to: previous, datastore: datastoreMinor(nodes[position]), by: "the watchdog")
            log("\(name): watchdog deadline, unhealthy: reverts to \(previous)")
            nodes[position].binary = previous
            restartK3s(position)
        }
    }

    mutating func crashAgent(_ name: String) {
        guard !healed, agentCrashesLeft > 0, let position = index[name], nodes[position].agentUp else { return }
        agentCrashesLeft -= 1
        nodes[position].agentUp = false
        log("fault: agent on \(name) crashes\(nodes[position].operation.map { " during \($0.request.operationID)" } ?? "")")
        queue.push(.agentRestart(node: name), at: after(between(2000, 90_000)))
    }

    /// The journal resolves what was interrupted (docs/agent.md, "Crash safety").
    mutating func restartAgent(_ name: String) {
        guard let position = index[name], !nodes[position].agentUp else { return }
        nodes[position].agentUp = true
        if let stage = nodes[position].stageOperation {
            nodes[position].journal[stage.request.operationID] = ("\(stage.request.command)", .refused(code: "interrupted", message: "agent restarted"))
            nodes[position].stageOperation = nil
        }
        if let operation = nodes[position].operation, case .install = operation.request.command, operation.swapped,
           sabotage != .restartedAgentRevertsInstall {
            resumeInstall(position)
        } else if let operation = nodes[position].operation {
            let id = operation.request.operationID
            var reply = AgentReply.refused(code: "interrupted", message: "the agent restarted during this operation; send it again with a new operation id")
            switch operation.request.command {
            case .install where operation.swapped:
                // Only under the sabotage: the verdict the agent's restart used to manufacture.
                if let previous = nodes[position].previous { nodes[position].binary = previous }
                nodes[position].watch = nil
                restartDuringStart(position)
                reply = .installReverted(version: nodes[position].running, healthy: nodes[position].k3sHealthy,
                                         message: "interrupted while reverting; previous binary restored")
            case .restore where operation.swapped:
                restartDuringStart(position)
                reply = .restored(version: nodes[position].running, healthy: nodes[position].k3sHealthy, message: "finished after a restart")
            case .rejoin where operation.swapped:
                restartDuringStart(position)
                reply = .rejoined(version: nodes[position].running, healthy: nodes[position].k3sHealthy, message: "finished after a restart")
            case .rollback where operation.swapped:
                restartDuringStart(position)
                reply = .rolledBack(version: nodes[position].running, healthy: nodes[position].k3sHealthy, message: "finished after a restart")
            case .drain:
                // A drain that evicted pods leaves them evicted.
                break
            default:
                break
            }
            nodes[position].journal[id] = ("\(operation.request.command)", reply)
            nodes[position].operation = nil
        }
        log("agent on \(name) restarts")
        if let watch = nodes[position].watch, watch.deadline <= now { watchdog(name, watch.install) }
    }

    /// An install whose binary was placed (the new one, or the previous one while reverting) goes
    /// on after the agent's restart as the agent's recovery does it (docs/agent.md, "Crash
    /// safety"): k3s is restarted on the live binary and probed with a fresh deadline, and the
    /// answer comes from that probe alone. Whoever waited lost the connection; a repeat of the id
    /// joins.
    private mutating func resumeInstall(_ position: Int) {
        guard let operation = nodes[position].operation else { return }
        nodes[position].operation?.waiters = []
        nodes[position].operation?.startedAt = now
        log("\(nodes[position].name): agent recovery restarts k3s on \(nodes[position].binary) and probes it again "
            + "(\(operation.reverting ? "finishing the revert of" : "no verdict from the restart on") \(operation.request.operationID))")
        restartK3s(position)
    }

    /// The `installKills` fault: SIGKILL of the agent while it still runs this install.
    mutating func killDuringInstall(_ name: String, _ id: String) {
        guard !healed, let position = index[name], nodes[position].agentUp, let operation = nodes[position].operation,
              operation.request.operationID == id else { return }
        let point = !operation.swapped ? "before the binary is placed"
            : operation.reverting ? "while the previous binary is put back"
            : nodes[position].restarting ? "while the new k3s starts" : "while the new k3s is probed"
        nodes[position].agentUp = false
        log("fault: agent on \(name) killed during \(id), \(point)")
        queue.push(.agentRestart(node: name), at: after(between(1000, 60_000)))
    }

    /// A version the rollout brought (not the node's version from before it) failed a probe: the
    /// one thing that may start a rollback.
    mutating func newVersionFailed(_ position: Int, _ how: String) {
        let node = nodes[position]
        guard node.running != invariants.initial[node.name] else { return }
        newVersionFailures.append("\(node.name) at \(node.running): \(how)")
    }

    /// The observation about to be taken shows nodes not Ready at a version the rollout brought
    /// (k3s restarting aside): the controller's own probe of the new version failing.
    mutating func noteUnreadyNewVersions() {
        for position in nodes.indices where !nodes[position].restarting && !nodes[position].ready(at: now) {
            newVersionFailed(position, "not Ready in an observation")
        }
    }
}
