import UpkeepCore

/// Agents' answers: each moves its node to the next phase, or stops the rollout.
extension RolloutEngine {
    mutating func replied(_ request: PendingRequest, _ operationID: String, _ reply: AgentReply, _ now: Instant, _ out: inout [Action]) {
        switch request.owner {
        case .stage(let id):
            if let index = stageIndex.position(operationID: id, in: stages) { stageReplied(index, reply, &out) }
        case .move(let index):
            moves[index].interruptions = nil
            moveReplied(index, operationID, reply, now, &out)
        case .snapshot(let hop): snapshotReplied(hop, reply, now, &out)
        case .restore(let key): restoreReplied(key, operationID, reply, now, &out)
        }
    }

    /// The agent restarted while it ran this request and recorded it as not done (PROTOCOL.md,
    /// error `interrupted`): that is no verdict on the node or the version. The step is sent again
    /// under the next attempt id (the old id would answer `interrupted` again), at most
    /// `requestTriesMax` times in a row; then the rollout blocks for a look at the agent.
    mutating func redoInterrupted(_ request: PendingRequest, _ message: String, _ now: Instant, _ out: inout [Action]) {
        let node = request.request.node
        let what = request.request.command.name
        switch request.owner {
        case .stage(let id):
            guard let index = stageIndex.position(operationID: id, in: stages) else { return }
            let count = (stages[index].interruptions ?? 0) + 1
            guard count < policy.requestTriesMax else {
                return stageReplied(index, .refused(code: AgentReply.interruptedCode, message: "the agent restarted \(count) times during staging: \(message)"), &out)
            }
            out.append(.notice(Notice(.warning, node: node, "the agent restarted during \(what); staging again")))
            // Stage ids are `<rollout>:<move key>:stage:<n>` (the rollout id has no colon).
            let newID = nextStageOperationID(key: id.split(separator: ":")[1])
            stages[index].operationID = newID
            stageIndex.renamed(id, at: index, in: stages)
            stages[index].interruptions = count
            for member in restore?.members.indices ?? 0..<0 where restore?.members[member].stageOperationID == id {
                restore?.members[member].stageOperationID = newID
            }
            var again = request.request
            again.operationID = newID
            queue(again, owner: .stage(newID), now)
        case .move(let index):
            let count = (moves[index].interruptions ?? 0) + 1
            let phase = moves[index].phase
            guard phase.awaitsReply else { return }
            if phase == .installing && !mayGoForward(index) {
                // Nothing was installed; the rollout is winding down, so do not start it again.
                out.append(.notice(Notice(.info, node: node, "the agent restarted during the install, which did not happen; not sending it again while stopping")))
                moves[index].interruptions = nil
                return enter(index, .verifyingRevert, now, &out)
            }
            guard count < policy.requestTriesMax else {
                let text = "the agent on \(node) restarted \(count) times in a row during \(what) (last: \(message)); "
                    + "check the agent (journalctl -u upkeep-agent) and run `upkeep resume`"
                out.append(.notice(Notice(.error, node: node, text)))
                moves[index].interruptions = nil
                return stop(.blocked(text), &out)
            }
            moves[index].interruptions = count
            moves[index].attempt += 1
            out.append(.notice(Notice(.warning, node: node, "the agent restarted during \(what), which it did not finish: "
                                      + "sending it again as attempt \(moves[index].attempt) (no verdict on \(moves[index].to))")))
            enter(index, phase, now, &out)
        case .snapshot(let hop):
            snapshotInterrupted(hop, message, now, &out)
        case .restore(let key):
            // The restore counts its own redos (restore and rejoin are finished by the agent, never interrupted).
            restoreReplied(key, request.request.operationID, .refused(code: AgentReply.interruptedCode, message: message), now, &out)
        }
    }

    mutating func stageReplied(_ index: Int, _ reply: AgentReply, _ out: inout [Action]) {
        switch reply {
        case .staged:
            stages[index].state = .staged
        case .refused(let code, let message):
            stages[index].state = .failed
            stages[index].message = "\(code): \(message)"
        default:
            stages[index].state = .failed
            stages[index].message = "unexpected answer \(reply)"
        }
    }

    mutating func moveReplied(_ index: Int, _ operationID: String, _ reply: AgentReply, _ now: Instant, _ out: inout [Action]) {
        let move = moves[index]
        switch (move.phase, reply) {
        case (.cordoning, .cordoned(let wasUnschedulable)):
            // A retried node Upkeep left cordoned is still Upkeep's to uncordon.
            moves[index].cordonedByUs = move.cordonedByUs || !wasUnschedulable
            out.append(.notice(Notice(.info, node: move.node, wasUnschedulable ? "already cordoned (stays cordoned)" : "cordoned")))
            if mayGoForward(index) { enter(index, .draining, now, &out) } else { _ = uncordonThen(index, .cancelled, now, &out) }
        case (.cordoning, .refused(let code, let message)):
            moves[index].phase = .cancelled
            refuse("cordon", move, code, message, .blocked, &out)
        case (.draining, .drained):
            out.append(.notice(Notice(.info, node: move.node, "drained")))
            if mayGoForward(index) { enter(index, .staging, now, &out) } else { _ = uncordonThen(index, .cancelled, now, &out) }
        case (.draining, .refused(let code, let message)):
            refuse("drain", move, code, message, .blocked, &out)
            _ = uncordonThen(index, .cancelled, now, &out)
        case (.installing, .installed(let version)):
            moves[index].installOperationID = operationID
            if !inSpan(move.wave) && needsRestoreToGoBack(index) {
                // Answered after the rollout moved on; a binary swap back would cross a minor.
                moves[index].phase = .unverified
                moves[index].note = "installed \(move.to) after the rollout stopped; its way back needs the datastore restored"
                out.append(.notice(Notice(.error, node: move.node, moves[index].note!)))
                stop(.blocked(restoreNeededMessage(hop: hop(ofMove: index) ?? failedHop, written: [move.node],
                                                   snapshot: snapshots?.first { $0.hop == hop(ofMove: index) }?.restorable,
                                                   cause: "\(move.node) answered its install late")), &out)
            } else if !inSpan(move.wave) {
                // Answered after the rollout moved on (rolling back): undo it right away.
                out.append(.notice(Notice(.warning, node: move.node, "installed \(move.to) after the rollback began; putting \(move.from) back")))
                enter(index, .rollingBack, now, &out)
            } else {
                out.append(.notice(Notice(.info, node: move.node, "installed \(version?.description ?? move.to.description); waiting for the API")))
                enter(index, .verifying, now, &out)
            }
        case (.installing, .installReverted(_, let healthy, let message)):
            let text = "\(move.to) did not become healthy on \(move.node); its agent put \(move.from) back: \(message)"
            out.append(.notice(Notice(.error, node: move.node, text)))
            stop(.failure(text), &out)
            if healthy { enter(index, .verifyingRevert, now, &out) } else { markUnhealthy(index, "unhealthy after its agent reverted it: \(message)", &out) }
        case (.installing, .refused(let code, let message)):
            // The staged binary may be gone (agents keep a few): stage it again next time.
            stages.removeAll { $0.node == move.node && $0.version == move.to && $0.state == .staged }
            stageIndex.removed()
            refuse("install", move, code, message, .failure, &out)
            enter(index, .verifyingRevert, now, &out)
        case (.rollingBack, .rolledBack(_, let healthy, let message)):
            if healthy { enter(index, .verifyingRevert, now, &out) } else { markUnhealthy(index, "unhealthy after rollback: \(message)", &out) }
        case (.rollingBack, .refused(let code, let message)):
            markUnhealthy(index, "rollback refused (\(code)): \(message)", &out)
        case (.uncordoning, .uncordoned):
            moves[index].cordonedByUs = false
            out.append(.notice(Notice(.info, node: move.node, "uncordoned")))
            enter(index, move.afterUncordon ?? .cancelled, now, &out)
        case (.uncordoning, .refused(let code, let message)):
            refuse("uncordon", move, code, message, .blocked, &out)  // stays uncordoning; resume asks again
        case (.committing, .committed(let version)):
            if let version, version != move.to {
                let text = "\(move.node)'s agent had already put \(version) back before the commit"
                out.append(.notice(Notice(.error, node: move.node, text)))
                moves[index].phase = .reverted
                stop(.failure(text), &out)
            } else {
                moves[index].phase = .done
                out.append(.notice(Notice(.info, node: move.node, "committed at \(move.to)")))
            }
        case (.committing, .refused(let code, let message)):
            refuse("commit", move, code, message, .blocked, &out)  // stays committing; resume asks again
        default:
            out.append(.notice(Notice(.warning, node: move.node, "ignored an unexpected answer to \(operationID): \(reply)")))
        }
    }

    private enum RefusalKind { case failure, blocked }

    private mutating func refuse(_ what: String, _ move: Move, _ code: String, _ message: String, _ kind: RefusalKind, _ out: inout [Action]) {
        let text = "\(what) on \(move.node) refused (\(code)): \(message)"
        out.append(.notice(Notice(.error, node: move.node, text)))
        stop(kind == .failure ? .failure(text) : .blocked(text), &out)
    }

    mutating func markUnhealthy(_ index: Int, _ reason: String, _ out: inout [Action]) {
        moves[index].phase = .unhealthy
        moves[index].deadline = nil
        moves[index].sinceSerial = observationSerial
        moves[index].note = reason
        if moves[index].wave != cursor && !stragglers.contains(index) { stragglers.append(index) }
        let left = moves[index].cordonedByUs ? "; left cordoned" : ""
        out.append(.notice(Notice(.error, node: moves[index].node, reason + left)))
        stop(.failure("\(moves[index].node) \(reason)"), &out)
    }
}
