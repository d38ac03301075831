import UpkeepCore

/// Stopping, rolling back, blocking, resuming and finishing: what happens when a node fails,
/// an agent stops answering, the cluster does not allow going on, or the last wave is done.
extension RolloutEngine {
    /// Running, but everything unfinished waits on agents that stopped answering (a failure's
    /// rollback took precedence over their block): block, so `resume` asks them again.
    mutating func blockIfStuck(_ out: inout [Action]) -> Bool {
        guard status == .running else { return false }
        let live = movesInPlay.filter { !moves[$0].phase.isSettled }
        guard !live.isEmpty, live.allSatisfy({ pendingRequest(for: $0)?.exhausted == true }) else { return false }
        block("the agents on \(GateCheck.listed(live.map { moves[$0].node })) do not answer; check them and run `upkeep resume`", &out)
        return true
    }

    /// Past the last wave: finish once nothing is left to tend. A node left unhealthy blocks
    /// instead, so the rollout never reports success (or a clean rollback) over a broken node.
    /// Blocked past the last wave (nothing new can start), it finishes as soon as the unhealthy
    /// nodes recover: the only thing the block was waiting for.
    mutating func finishIfAllDone(_ out: inout [Action]) -> Bool {
        if case .restoring(let cause) = direction {
            guard status == .running, let run = restore, run.stage == .done else { return false }
            finish(.rolledBack(cause: cause), &out)
            return true
        }
        let blockedAtEnd = if case .blocked = status { true } else { false }
        guard status == .running || blockedAtEnd, cursor >= waves.count, movesInPlay.allSatisfy({ moves[$0].phase.isSettled }) else {
            return false
        }
        let unhealthy = moves.filter { $0.phase == .unhealthy }.map(\.node)
        if !unhealthy.isEmpty {
            if blockedAtEnd { return false }
            block("\(GateCheck.listed(unhealthy)) not healthy; Upkeep finishes once \(unhealthy.count == 1 ? "it recovers" : "they recover")", &out)
            return true
        }
        switch direction {
        case .forward: finish(.completed, &out)
        case .reverting(let cause), .restoring(let cause): finish(.rolledBack(cause: cause), &out)
        }
        return true
    }

    mutating func finish(_ outcome: RolloutOutcome, _ out: inout [Action]) {
        stopReason = nil
        status = .finished(outcome)
        switch outcome {
        case .completed: out.append(.notice(Notice(.info, "rollout \(rolloutID): every node runs \(plan.target)")))
        case .rolledBack(let cause): out.append(.notice(Notice(.warning, "rollout \(rolloutID) rolled back: \(cause)")))
        case .failed(let cause): out.append(.notice(Notice(.error, "rollout \(rolloutID) failed: \(cause)")))
        case .abandoned(let reason): out.append(.notice(Notice(.warning, "rollout \(rolloutID) abandoned: \(reason)")))
        }
        out.append(.finished(outcome))
    }

    /// Gives the rollout up where it stands; says what is left on which node, so the operator
    /// knows what to look at (nothing is undone: a node's state is what the operator now owns).
    mutating func abandon(_ reason: String, _ out: inout [Action]) {
        let watches = Set(openWatches)
        for move in moves where move.installOperationID.map(watches.contains) == true {
            out.append(.notice(Notice(.warning, node: move.node, "install to \(move.to) not committed: the agent's watchdog keeps it "
                                          + "if k3s is healthy at its deadline and puts \(move.from) back otherwise")))
        }
        for request in unansweredRequests {
            out.append(.notice(Notice(.warning, node: request.node, "\(request.command.name) was sent and not answered: it may still "
                                          + "run on the agent (\(request.operationID))")))
        }
        for node in cordonedByUpkeep {
            out.append(.notice(Notice(.warning, node: node, "left cordoned by Upkeep: `kubectl uncordon \(node)` once it is healthy")))
        }
        pending.removeAll()
        pendingOrder.removeAll()
        finish(.abandoned(reason: reason), &out)
    }

    /// Stops starting nodes. A failure outranks a block: it decides what happens next.
    mutating func stop(_ reason: StopReason, _ out: inout [Action]) {
        switch status {
        case .running:
            status = .stopping
            stopReason = reason
        case .stopping:
            if case .blocked = stopReason, case .failure = reason { stopReason = reason }
        case .blocked:
            if case .failure = reason {
                status = .stopping
                stopReason = reason
            }
        case .notStarted, .finished:
            break
        }
    }

    /// Once nothing in the current wave is in flight, decide: roll back, fail or block.
    mutating func quiesceIfStopped(_ now: Instant, _ out: inout [Action]) -> Bool {
        guard status == .stopping, let reason = stopReason else { return false }
        do {
            for index in movesInPlay {
                let move = moves[index]
                if move.phase.awaitsCluster { return false }
                if move.phase == .staging { return false }
                if move.phase.awaitsReply, let request = pendingRequest(for: index), !request.exhausted { return false }
            }
        }
        // A restore or a backup waits for its answers in flight, so a block never leaves one running.
        let inFlight = pending.values.contains { request in
            switch request.owner {
            case .snapshot, .restore: !request.exhausted
            case .move, .stage: false
            }
        }
        if inFlight { return false }
        stopReason = nil
        switch (reason, direction) {
        case (.failure(let cause), .forward):
            afterFailure(cause: cause, now, &out)
        case (.failure(let cause), .reverting):
            block("rolling back stopped: \(cause)", &out)
        case (.failure(let cause), .restoring):
            block("the restore stopped: \(cause); fix it and run `upkeep resume` to carry the restore on", &out)
        case (.blocked(let cause), _):
            block(cause, &out)
        }
        return true
    }

    /// What a failure in the forward direction leads to (docs/planning.md, "Rollback kinds"):
    /// nothing without auto-rollback; the failed hop's binaries back where that is safe; where
    /// the hop needs a restore, the restore (`autoRollback: restore`) or a block naming both ways out.
    private mutating func afterFailure(cause: String, _ now: Instant, _ out: inout [Action]) {
        let hop = failedHop
        guard policy.autoRollback != .off else {
            status = .running  // so finish() can record the outcome
            reportLeftCordoned(&out)
            finish(.failed(cause: cause), &out)
            return
        }
        let written = serversWrittenAtNewMinor(hop: hop)
        guard !written.isEmpty else {
            beginRollback(hop: hop, cause: cause, now, &out)
            return
        }
        let snapshot = snapshots?.first { $0.hop == hop }?.restorable
        if policy.autoRollback == .restore, let snapshot {
            beginRestore(hop: hop, snapshot: snapshot, cause: "hop \(hop) failed: \(cause)", now, &out)
            return
        }
        block(restoreNeededMessage(hop: hop, written: written, snapshot: snapshot, cause: cause), &out)
    }

    /// The hop of the wave being worked on (the last hop once every wave is done).
    var failedHop: Int {
        let count = plan.waveCount
        guard count > 0 else { return 1 }
        return plan.wave(min(cursor, count - 1)).hop
    }

    /// The hop a forward move belongs to.
    func hop(ofMove index: Int) -> Int? {
        let wave = moves[index].wave
        return wave < plan.waveCount ? plan.wave(wave).hop : nil
    }

    /// Servers of `hop` that may have run healthy at a minor the datastore had not seen: their
    /// agent answered `installed` (or may have, with the answer lost), or put the old binary back
    /// and it does not come up (an agent killed while the new k3s started may have let it write
    /// the datastore first). Once one has, only a restore takes the hop back.
    func serversWrittenAtNewMinor(hop: Int) -> [String] {
        guard hop >= 1, hop <= plan.hops.count, plan.hops[hop - 1].rollbackKind == .restore else { return [] }
        return moves.indices.filter { index in
            let move = moves[index]
            guard self.hop(ofMove: index) == hop, move.role == .server, move.to.minorLine > move.from.minorLine else { return false }
            return move.installOperationID != nil || [.installing, .unverified, .unhealthy].contains(move.phase)
        }.map { moves[$0].node }
    }

    /// The block that names both ways out of a failed hop that needs a restore.
    func restoreNeededMessage(hop: Int, written: [String], snapshot: RestoreSnapshot?, cause: String) -> String {
        let minor = plan.hops[hop - 1].version.minorLine
        var text = "hop \(hop) failed: \(cause). Going back needs the datastore restored: \(GateCheck.listed(written)) "
            + "ran \(minor) healthy, so the datastore is written at that minor (https://docs.k3s.io/upgrades/roll-back). Either "
        if let snapshot {
            text += "run `upkeep rollback --restore` to restore backup \(snapshot.backupID), taken \(MaintenanceWindowClock.text(snapshot.takenAt)) "
                + "on \(snapshot.node) at \(snapshot.version) (every object written to the cluster since then is lost), "
        } else {
            text += "restore a datastore backup taken before hop \(hop) with `upkeep recover --from-backup ID` (this rollout took "
                + "none: backups were skipped; every object written since that backup is lost), "
        }
        return text + "or fix the cause and run `upkeep resume` to carry the upgrade forward"
    }

    mutating func block(_ reason: String, _ out: inout [Action]) {
        status = .blocked(reason: reason)
        out.append(.notice(Notice(.error, "rollout \(rolloutID) blocked: \(reason)")))
        reportLeftCordoned(&out)
    }

    private func reportLeftCordoned(_ out: inout [Action]) {
        for (index, move) in moves.enumerated() where move.cordonedByUs {
            let why = move.note ?? (pendingRequest(for: index)?.exhausted == true ? "its agent does not answer" : "still in progress")
            out.append(.notice(Notice(.warning, node: move.node, "left cordoned by Upkeep: \(why)")))
        }
    }

    /// Reverse order: the last finished step of the failed hop goes back first; earlier hops stay
    /// (a rollback goes back one hop at most). Agents of a wave go back together (their wave was
    /// safe for Longhorn; the gate checks it again against the current replicas).
    private mutating func beginRollback(hop: Int, cause: String, _ now: Instant, _ out: inout [Action]) {
        let found = Set(moves.indices.filter { self.hop(ofMove: $0) == hop }.map { moves[$0].from.description }).sorted()
        let outcome = "\(cause); hop \(hop) undone: its nodes are back where it found them (\(found.joined(separator: ", ")))"
        direction = .reverting(cause: outcome)
        status = .running
        undoneHops = (undoneHops ?? []) + [hop]
        out.append(.notice(Notice(.warning, "rolling back hop \(hop) by binaries: \(cause)")))
        let forward = waves.count
        let hopWaves = plan.waves.indices.filter { plan.waves[$0].hop == hop && $0 <= cursor && $0 < forward }
        for wave in hopWaves.map({ waves[$0] }).reversed() {
            // Done, or past its install with only the uncordon or commit unanswered (it runs
            // `to`; the gate waits for it to finish before its way back starts).
            let finished = wave.moves.filter { index in
                let move = moves[index]
                return move.phase == .done || move.phase == .committing || move.phase == .settling
                    || (move.phase == .uncordoning && move.afterUncordon == .settling)
            }.reversed()
            guard !finished.isEmpty else { continue }
            var run = WaveRun(label: "rollback of \(wave.label)", role: wave.role, moves: [])
            for index in finished {
                let original = moves[index]
                run.moves.append(moves.count)
                var back = Move(key: "r" + original.key.dropFirst(), node: original.node, role: original.role, arch: original.arch,
                                from: original.to, to: original.from)
                back.wave = waves.count
                moves.append(back)
            }
            waves.append(run)
        }
        moveCursor(to: forward, now)
    }

    mutating func resume(_ now: Instant, _ out: inout [Action]) {
        // A crash may have struck after the outcome was persisted and before it was reported.
        if case .finished(let outcome) = status { out.append(.finished(outcome)) }
        guard isInProgress else { return }
        // Blocked while stopping (the cluster lock was lost then): it goes on stopping.
        if case .blocked = status { status = stopReason == nil ? .running : .stopping }
        out.append(.notice(Notice(.info, "rollout \(rolloutID) resumed")))
        for index in moves.indices { moves[index].interruptions = nil }
        for id in pendingOrder {
            pending[id]?.tries = 0
            pending[id]?.exhausted = false
            pending[id]?.sendAt = now
        }
        stages.removeAll { $0.state == .failed }
        stageIndex.removed()
        observeRequestedAt = nil
        resumeSnapshots(now, &out)
        resumeRestore(now, &out)
        for index in stragglers where pendingRequest(for: index) == nil && moves[index].phase.awaitsReply {
            moves[index].attempt += 1
            enter(index, moves[index].phase, now, &out)
        }
        // Fixing forward a node left unhealthy in a wave the rollout has gone past (a revert
        // whose answer came late, a watch that ended badly): its wave again, where only it starts.
        var reopen = false
        if direction == .forward {
            let behind = moves.indices.filter { moves[$0].phase == .unhealthy && moves[$0].wave < (openFrom ?? cursor) }
            for index in behind {
                moves[index].phase = .pending
                moves[index].attempt += 1
                moves[index].deadline = nil
                moves[index].note = nil
            }
            if let earliest = behind.map({ moves[$0].wave }).min() {
                cursor = earliest
                openFrom = nil
                stragglers.removeAll { behind.contains($0) }
                reopen = true
            }
        }
        guard cursor < waves.count else { return }
        for index in movesInSpan {
            switch moves[index].phase {
            case .cancelled, .reverted:
                moves[index].phase = .pending
                moves[index].attempt += 1
                moves[index].cordonedByUs = false
                moves[index].note = nil
                reopen = true
            case .verifying, .verifyingRevert, .settling:
                moves[index].deadline = now.adding(seconds: timeout(for: moves[index].phase))
                moves[index].sinceSerial = observationSerial
            case .unverified:
                // Fixing forward: wait for the API to show it Ready at its new version again.
                moves[index].note = nil
                enter(index, .verifying, now, &out)
            case .unhealthy where direction == .forward:
                // Fixing forward: the node's step again (it may not start at its old version
                // once a peer wrote the datastore at the new one). Upkeep's cordon stays Upkeep's.
                moves[index].phase = .pending
                moves[index].attempt += 1
                moves[index].deadline = nil
                moves[index].note = nil
                reopen = true
            case .cordoning, .draining, .installing, .rollingBack, .uncordoning, .committing:
                // Refused earlier (no request left): do it again, under a new attempt.
                if pendingRequest(for: index) == nil {
                    moves[index].attempt += 1
                    enter(index, moves[index].phase, now, &out)
                }
            default:
                break
            }
        }
        if reopen || !waves[cursor].gatePassed { openGate(cursor, now) }
    }
}
