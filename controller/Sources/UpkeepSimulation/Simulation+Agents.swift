import UpkeepRollout
import UpkeepCore

/// The simulated upkeep-agent on every node (docs/agent.md): requests arrive over a lossy
/// network, every operation id is journalled and a repeat is answered from the journal, an
/// install swaps the binary, restarts k3s and reverts when it is not healthy in time, a watch
/// waits for commit, and a restarted agent resolves what it was doing. Sabotages act here.
extension Simulation {
    func isHealthy(_ node: SimNode, version: K3sVersion) -> Bool {
        if node.name == scenario.faults.badNode && version == scenario.target { return false }
        return true
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

    private mutating func finishOperation(_ position: Int, _ reply: AgentReply, stage: Bool = false) {
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
        case .drain(let seconds):
            let blocked = chance(scenario.faults.drainBlock)
            let duration = between(1000, 20_000)
            if blocked {
                log("fault: drain of \(name) blocked by a PodDisruptionBudget")
                queue.push(.operationStep(node: name, operationID: id, step: 2), at: after(Int64(seconds) * 1000))
            } else {
                queue.push(.operationStep(node: name, operationID: id, step: 1), at: after(duration))
            }
        case .install(let asked, _, _):
            let version = sabotage == .installJumpsToTheTarget ? scenario.target : asked
            guard nodes[position].staged.contains(asked) else {
                finishOperation(position, .refused(code: "notFound", message: "\(version) is not staged"))
                return
            }
            nodes[position].previous = nodes[position].binary
            nodes[position].binary = version
            nodes[position].operation?.swapped = true
            restartK3s(position)
        case .rollback:
            guard let previous = nodes[position].previous else {
                finishOperation(position, .refused(code: "notFound", message: "no previous binary kept"))
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
        case .install, .rollback:
            // Step 1: the health deadline passed after an unhealthy restart.
            guard step == 1, nodes[position].operation?.reverting == false else { return }
            revertInstall(position)
        case .stage:
            break
        }
    }

    private func longhornBlocksDrain(of name: String) -> Bool {
        volumes.contains { volume in
            volume.attached && volume.replicas.contains { $0.node == name && $0.running && $0.complete }
                && volume.replicas.filter { $0.running && $0.complete }.count == 1
        }
    }

    private mutating func restartK3s(_ position: Int) {
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
        log("\(nodes[position].name): k3s \(old) → \(nodes[position].running) \(healthy ? "healthy" : "UNHEALTHY")")
        violations += invariants.versionChanged(node: nodes[position].name, from: old, to: nodes[position].running)
        guard nodes[position].agentUp, let operation = nodes[position].operation else { return }
        let id = operation.request.operationID
        switch operation.request.command {
        case .install(_, let healthSeconds, let watchdogSeconds):
            if operation.reverting {
                finishOperation(position, .installReverted(version: nodes[position].running, healthy: healthy,
                                                           message: "probes failed on the new version"))
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
        default:
            break
        }
    }

    /// A restarted agent finishing an interrupted swap restarts k3s before it answers anyone.
    private mutating func restartDuringStart(_ position: Int) {
        nodes[position].restartGeneration += 1
        nodes[position].restartingUntil = nil
        let old = nodes[position].running
        nodes[position].running = nodes[position].binary
        nodes[position].k3sHealthy = isHealthy(nodes[position], version: nodes[position].binary)
        if old != nodes[position].running {
            log("\(nodes[position].name): k3s \(old) → \(nodes[position].running) (agent recovery)")
            violations += invariants.versionChanged(node: nodes[position].name, from: old, to: nodes[position].running)
        }
    }

    private mutating func revertInstall(_ position: Int) {
        guard let previous = nodes[position].previous else { return }
        nodes[position].operation?.reverting = true
        nodes[position].binary = previous
        restartK3s(position)
    }

    mutating func watchdog(_ name: String, _ install: String) {
        guard let position = index[name], let watch = nodes[position].watch, watch.install == install, nodes[position].agentUp else { return }
        nodes[position].watch = nil
        if nodes[position].ready(at: now) {
            log("\(name): watchdog deadline, healthy: keeps \(nodes[position].running)")
        } else if let previous = nodes[position].previous {
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
        if let operation = nodes[position].operation {
            let id = operation.request.operationID
            var reply = AgentReply.refused(code: "interrupted", message: "the agent restarted during this operation")
            switch operation.request.command {
            case .install where operation.swapped:
                if let previous = nodes[position].previous { nodes[position].binary = previous }
                nodes[position].watch = nil
                restartDuringStart(position)
                reply = .installReverted(version: nodes[position].running, healthy: nodes[position].k3sHealthy,
                                         message: "interrupted; previous binary restored")
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
}
