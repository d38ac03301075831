import UpkeepCore

/// Moving nodes forward: the wave gate, each move's next step, the cluster checks that end a
/// wait, and entering a phase (which queues its request).
extension RolloutEngine {
    mutating func openGate(_ wave: Int, _ now: Instant) {
        waves[wave].gatePassed = false
        waves[wave].opened = nil
        waves[wave].gateDeadline = now.adding(seconds: policy.gateTimeoutSeconds)
        waves[wave].gateSinceSerial = observationSerial
        waves[wave].gateReadSince = gateReads
        // A hold counts its bound afresh (after `resume`, after a backup); the soak stands.
        waves[wave].heldSince = nil
        waves[wave].holds = nil
        waves[wave].holdNoticeAt = nil
    }

    /// The span's moves not started yet, in plan order.
    var pendingInSpan: [Int] { movesInSpan.filter { moves[$0].phase == .pending } }

    /// The span's moves under way: cordoned, down, or back with Longhorn rebuilding.
    var inFlightInSpan: [Int] { movesInSpan.filter { !moves[$0].phase.isFinal } }

    /// Nodes of the current wave's role that may be cordoned or down at once. A way back's
    /// wave keeps its own size (it was safe as a forward wave).
    var slotLimit: Int {
        guard cursor < plan.waveCount else { return max(1, waves[cursor].moves.count) }
        return Admission.slots(waves[cursor].role, policy: plan.policy)
    }

    /// Whether a node could take a slot now (else the gate has nothing to look at the cluster for).
    var hasFreeSlot: Bool { inFlightInSpan.filter { moves[$0].phase.takesASlot }.count < slotLimit }

    /// The gate of the cursor's wave, then admission rounds until every node of the span has
    /// started. Each round looks at a fresh observation and starts what `Admission` allows.
    mutating func checkGate(_ now: Instant, _ out: inout [Action]) -> Bool {
        let wave = waves[cursor]
        let pending = pendingInSpan
        guard !pending.isEmpty else {
            waves[cursor].gatePassed = true
            return true
        }
        let inFlight = inFlightInSpan
        if let windows = policy.maintenanceWindows, !windows.isOpen(at: now) {
            // Nothing new starts; what is in flight finishes first (the gate waits for it), so
            // blocking then leaves every node as it should be.
            guard inFlight.isEmpty else { return false }
            stop(.blocked("\(wave.label): outside the maintenance windows (\(windows.listed)); "
                          + "the next opens at \(windows.nextOpenText(atOrAfter: now)); `upkeep resume` then, "
                          + "or `upkeep resume --ignore-window` now"), &out)
            return true
        }
        if wave.opened != true {
            if let waiting = soaking(now, &out) { return waiting }
            // The gates first: nothing (not even the hop's backup) is asked of a cluster they hold.
            if let holding = gatesHold(now, &out) { return holding }
            if let waiting = snapshotBeforeHop(now, &out) { return waiting }
            waves[cursor].opened = true
        }
        guard let observation, observationSerial > wave.gateSinceSerial else { return false }
        var verdict = GateCheck.evaluate(role: wave.role, moves: moves, pending: pending, inFlight: inFlight, slots: slotLimit,
                                         observation: observation, index: observationIndex)
        let elsewhere = moves.indices.filter { !inSpan(moves[$0].wave) && (moves[$0].cordonedByUs || !moves[$0].phase.isFinal) }
        if !elsewhere.isEmpty {
            verdict.problems.append("still in progress from an earlier wave: \(GateCheck.listed(elsewhere.map { moves[$0].node }))")
        }
        if verdict.problems.isEmpty {
            // The next round looks at the cluster again, after these nodes have started.
            waves[cursor].gateSinceSerial = observationSerial
            waves[cursor].gateDeadline = now.adding(seconds: policy.gateTimeoutSeconds)
            var line = "\(wave.label): gate passed, starting \(verdict.start.map { moves[$0].node }.joined(separator: ", "))"
            if let held = verdict.held { line += "; \(held)" }
            out.append(.notice(Notice(.info, line)))
            for index in verdict.start { enter(index, .cordoning, now, &out) }
            if pendingInSpan.isEmpty { waves[cursor].gatePassed = true }
            prefetch(now, &out)
            return true
        }
        if !inFlight.isEmpty {
            // Waiting for the rollout's own nodes (a slot, a rebuild), each under its own deadline.
            waves[cursor].gateDeadline = now.adding(seconds: policy.gateTimeoutSeconds)
            return false
        }
        if let deadline = wave.gateDeadline, now >= deadline {
            let problems = verdict.problems
            let shown = problems.prefix(5).joined(separator: "; ") + (problems.count > 5 ? "; and \(problems.count - 5) more" : "")
            stop(.blocked("\(wave.label): the gate did not pass within \(policy.gateTimeoutSeconds) s: \(shown)"), &out)
            return true
        }
        return false
    }

    /// Moves one node as far as it can go now; true when anything changed.
    mutating func stepMove(_ index: Int, _ now: Instant, _ out: inout [Action]) -> Bool {
        let move = moves[index]
        switch move.phase {
        case .staging:
            if !mayGoForward(index) { return uncordonThen(index, .cancelled, now, &out) }
            guard let stage = stageIndex.position(node: move.node, version: move.to, in: stages) else {
                startStage(node: move.node, version: move.to, arch: move.arch, key: move.key, now)
                return true
            }
            switch stages[stage].state {
            case .sending:
                return false
            case .staged:
                enter(index, .installing, now, &out)
                return true
            case .failed:
                let text = "staging \(move.to) on \(move.node) failed: \(stages[stage].message ?? "no reason given")"
                out.append(.notice(Notice(.error, node: move.node, text)))
                stop(.blocked(text), &out)
                return uncordonThen(index, .cancelled, now, &out)
            }
        case .verifying, .verifyingRevert, .settling:
            return checkCluster(index, now, &out)
        case .unhealthy:
            guard let observation, observationSerial > move.sinceSerial,
                  GateCheck.nodeReady(move.node, at: move.from, in: observation, index: observationIndex) else { return false }
            out.append(.notice(Notice(.info, node: move.node, "recovered: Ready at \(move.from)")))
            moves[index].note = nil
            return uncordonThen(index, .reverted, now, &out)
        default:
            return false
        }
    }

    private mutating func checkCluster(_ index: Int, _ now: Instant, _ out: inout [Action]) -> Bool {
        let move = moves[index]
        let fresh = observation.flatMap { observationSerial > move.sinceSerial ? $0 : nil }
        let expired = move.deadline.map { now >= $0 } ?? false
        switch move.phase {
        case .verifying:
            if let fresh, GateCheck.nodeReady(move.node, at: move.to, in: fresh, index: observationIndex) {
                out.append(.notice(Notice(.info, node: move.node, "Ready at \(move.to)")))
                return uncordonThen(index, .settling, now, &out)
            }
            guard expired else { return false }
            let text = "\(move.node) was not Ready at \(move.to) within \(policy.verifyTimeoutSeconds) s"
            if needsRestoreToGoBack(index) {
                // Healthy at a new minor by its agent: the datastore is written at it, and a
                // binary swap back is what k3s does not support. Left as it is for the decision.
                moves[index].phase = .unverified
                moves[index].deadline = nil
                moves[index].note = "not Ready at \(move.to) in time; its way back needs the datastore restored"
                out.append(.notice(Notice(.error, node: move.node, text + "; left at \(move.to): going back a minor needs the datastore restored")))
                stop(.failure(text), &out)
                return true
            }
            out.append(.notice(Notice(.error, node: move.node, text + "; asking its agent to put \(move.from) back")))
            stop(.failure(text), &out)
            enter(index, .rollingBack, now, &out)
            return true
        case .verifyingRevert:
            if let fresh, GateCheck.nodeReady(move.node, at: move.from, in: fresh, index: observationIndex) {
                out.append(.notice(Notice(.info, node: move.node, "back at \(move.from) and Ready")))
                return uncordonThen(index, .reverted, now, &out)
            }
            guard expired else { return false }
            markUnhealthy(index, "not Ready at \(move.from) within \(policy.verifyTimeoutSeconds) s after going back", &out)
            return true
        case .settling:
            // Final once what this move degraded is healthy again. A volume degraded only by
            // replicas on nodes of other moves in flight is their concern: each settles on its
            // own, and `Admission` counts those nodes busy until then. Anything else (a replica
            // failed elsewhere, a faulted volume) still waits.
            if let fresh, GateCheck.longhornProblems(fresh, index: observationIndex, sparing: nodesInFlight(besides: move.node)).isEmpty {
                enter(index, .committing, now, &out)
                return true
            }
            guard expired else { return false }
            let text = "Longhorn volumes were not all healthy within \(policy.rebuildTimeoutSeconds) s after \(move.node) came back"
            out.append(.notice(Notice(.warning, node: move.node, text)))
            stop(.blocked(text), &out)
            enter(index, .committing, now, &out)
            return true
        default:
            return false
        }
    }

    /// The nodes of moves in flight (every one is in play) other than `node`'s.
    func nodesInFlight(besides node: String) -> Set<String> {
        Set(movesInPlay.lazy.filter { !self.moves[$0].phase.isFinal && self.moves[$0].node != node }.map { self.moves[$0].node })
    }

    /// A server move of a `restore` hop that raises its minor: once healthy there, its binary
    /// never goes back on its own (https://docs.k3s.io/upgrades/roll-back).
    func needsRestoreToGoBack(_ index: Int) -> Bool {
        let move = moves[index]
        guard move.role == .server, move.to.minorLine > move.from.minorLine, let hop = hop(ofMove: index),
              hop <= plan.hops.count else { return false }
        return plan.hops[hop - 1].rollbackKind == .restore
    }

    /// Says which waves are done, oldest first; opens the next wave once every node of the
    /// cursor's has started, where `Admission.mayOverlap` allows; else moves on once the whole
    /// span is done (and starts the soak after the canaries).
    mutating func finishWaveIfDone(_ now: Instant, _ out: inout [Action]) -> Bool {
        guard status == .running, cursor < waves.count else { return false }
        var progressed = false
        if let first = openFrom {
            var front = first
            while front < cursor && waves[front].moves.allSatisfy({ moves[$0].phase == .done }) {
                out.append(.notice(Notice(.info, "\(waves[front].label): done")))
                front += 1
            }
            openFrom = front < cursor ? front : nil
            progressed = front != first
        }
        guard waves[cursor].gatePassed else { return progressed }
        let next = cursor + 1
        if direction == .forward, next < plan.waveCount, Admission.mayOverlap(plan.wave(cursor), plan.wave(next)) {
            moveCursor(to: next, overlapping: true, now)
            return true
        }
        guard openFrom == nil, waves[cursor].moves.allSatisfy({ moves[$0].phase == .done }) else { return progressed }
        out.append(.notice(Notice(.info, "\(waves[cursor].label): done")))
        let finished = cursor
        moveCursor(to: cursor + 1, now)
        startSoakIfCanariesDone(finished: finished, now, &out)
        return true
    }

    /// Anything of the wave left behind that may still change becomes a straggler. Overlapping,
    /// the wave stays in the span (its moves go on forward); otherwise the span is the new wave.
    mutating func moveCursor(to wave: Int, overlapping: Bool = false, _ now: Instant) {
        if cursor < waves.count {
            for index in waves[cursor].moves where !moves[index].phase.isFinal && !stragglers.contains(index) { stragglers.append(index) }
        }
        openFrom = overlapping ? (openFrom ?? cursor) : nil
        cursor = wave
        if cursor < waves.count { openGate(cursor, now) }
    }

    // MARK: - Entering phases

    func timeout(for phase: Move.Phase) -> Int {
        switch phase {
        case .settling: policy.rebuildTimeoutSeconds
        default: policy.verifyTimeoutSeconds
        }
    }

    /// Uncordons the node if Upkeep cordoned it, then goes to `next`; true when anything changed.
    @discardableResult
    mutating func uncordonThen(_ index: Int, _ next: Move.Phase, _ now: Instant, _ out: inout [Action]) -> Bool {
        if moves[index].cordonedByUs {
            moves[index].afterUncordon = next
            enter(index, .uncordoning, now, &out)
        } else {
            enter(index, next, now, &out)
        }
        return true
    }

    mutating func enter(_ index: Int, _ phase: Move.Phase, _ now: Instant, _ out: inout [Action]) {
        moves[index].phase = phase
        moves[index].deadline = nil
        if !phase.isFinal && moves[index].wave != cursor && !stragglers.contains(index) { stragglers.append(index) }
        let move = moves[index]
        let command: AgentCommand?
        switch phase {
        case .cordoning: command = .cordon
        case .draining: command = .drain(timeoutSeconds: policy.drainTimeoutSeconds, options: policy.drain)
        case .installing:
            command = .install(version: move.to, healthTimeoutSeconds: policy.healthTimeoutSeconds,
                               watchdogTimeoutSeconds: policy.watchdogTimeoutSeconds)
        case .rollingBack: command = .rollback(healthTimeoutSeconds: policy.healthTimeoutSeconds)
        case .uncordoning: command = .uncordon
        case .committing:
            guard let install = move.installOperationID else { preconditionFailure("commit without an install") }
            command = .commit(installOperationID: install)
        case .verifying, .verifyingRevert, .settling:
            moves[index].deadline = now.adding(seconds: timeout(for: phase))
            moves[index].sinceSerial = observationSerial
            command = nil
        case .cancelled, .reverted:
            moves[index].afterUncordon = nil
            command = nil
            if status == .running && inSpan(move.wave) {
                // Only a node recovering after `resume` ends here while running: try it again.
                moves[index].phase = .pending
                moves[index].attempt += 1
                moves[index].cordonedByUs = false
                moves[index].note = nil
                openGate(cursor, now)
            }
        default:
            command = nil
        }
        if let command {
            let request = AgentRequest(operationID: move.operationID(rolloutID, command), node: move.node, command: command)
            queue(request, owner: .move(index), now)
        }
    }

    /// `<rollout>:<move key>:stage:<n>`: numbered across the rollout, so a restage never replays a
    /// recorded answer.
    mutating func nextStageOperationID(key: some StringProtocol) -> String {
        stagesIssued += 1
        return "\(rolloutID):\(key):stage:\(stagesIssued)"
    }

    /// Returns the stage's operation id.
    @discardableResult
    mutating func startStage(node: String, version: K3sVersion, arch: Arch, key: String, _ now: Instant) -> String {
        let id = nextStageOperationID(key: key)
        stages.append(StageRun(node: node, version: version, operationID: id))
        stageIndex.appended(stages)
        queue(AgentRequest(operationID: id, node: node, command: .stage(version: version, arch: arch)), owner: .stage(id), now)
        return id
    }

    /// Stages the binaries of the current wave and the next `prefetchWaves` ahead of their turn.
    private mutating func prefetch(_ now: Instant, _ out: inout [Action]) {
        let last = min(waves.count - 1, cursor + policy.prefetchWaves)
        guard cursor <= last else { return }
        for wave in waves[cursor...last] {
            for index in wave.moves where moves[index].phase != .done {
                let move = moves[index]
                if stageIndex.position(node: move.node, version: move.to, in: stages) == nil {
                    startStage(node: move.node, version: move.to, arch: move.arch, key: move.key, now)
                }
            }
        }
    }
}
