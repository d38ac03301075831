import UpkeepCore

/// Requests to agents (queued, sent when due, resent after a failure), looks at the cluster,
/// and when to wake next.
extension RolloutEngine {
    /// Requests the engine will still send (or is waiting on) without a `resume`: neither
    /// answered nor out of tries. A blocked rollout with none has nothing left to do on its own.
    public var liveRequestCount: Int { pending.values.filter { !$0.exhausted }.count }

    mutating func queue(_ request: AgentRequest, owner: PendingRequest.Owner, _ now: Instant) {
        precondition(pending[request.operationID] == nil, "operation id \(request.operationID) issued twice")
        pending[request.operationID] = PendingRequest(request: request, owner: owner, sendAt: now)
        pendingOrder.append(request.operationID)
    }

    func pendingRequest(for move: Int) -> PendingRequest? {
        for id in pendingOrder {
            if let request = pending[id], case .move(let owner) = request.owner, owner == move { return request }
        }
        return nil
    }

    mutating func sendDue(_ now: Instant, _ out: inout [Action]) {
        for id in pendingOrder {
            guard var request = pending[id], !request.exhausted, let at = request.sendAt, at <= now else { continue }
            request.sendAt = nil
            request.tries += 1
            pending[id] = request
            out.append(.send(request.request))
        }
    }

    private func waitsOnCluster(_ now: Instant) -> Bool {
        guard isInProgress else { return false }
        if restoreWaitsOnCluster.waits { return true }
        // Not while a canary soak runs: the gate opens afresh when it ends.
        if admissionWaits && waves[cursor].notBefore.map({ now >= $0 }) ?? true { return true }
        return movesInPlay.contains { moves[$0].phase.awaitsCluster || moves[$0].phase == .unhealthy }
    }

    /// The current wave's gate or its admission waits on the cluster: not while every slot is
    /// taken (the moves in flight look at the cluster for themselves).
    private var admissionWaits: Bool {
        status == .running && cursor < waves.count && !waves[cursor].gatePassed && (waves[cursor].opened != true || hasFreeSlot)
    }

    /// True when some wait began after the newest observation, so a fresh one is needed now.
    private var needsFreshObservation: Bool {
        if restoreWaitsOnCluster.fresh { return true }
        if admissionWaits && waves[cursor].gateSinceSerial >= observationSerial { return true }
        return movesInPlay.contains { moves[$0].phase.awaitsCluster && moves[$0].sinceSerial >= observationSerial }
    }

    mutating func requestObservationIfNeeded(_ now: Instant, _ out: inout [Action]) {
        guard waitsOnCluster(now) else { return }
        let poll = policy.pollIntervalMilliseconds
        if let requested = observeRequestedAt, now < requested.adding(milliseconds: poll) { return }
        let due = needsFreshObservation || observedAt.map { now >= $0.adding(milliseconds: poll) } ?? true
        guard due else { return }
        observeRequestedAt = now
        out.append(.observeCluster)
    }

    func nextWake(_ now: Instant) -> Instant? {
        var candidates: [Instant] = pending.values.compactMap { $0.exhausted ? nil : $0.sendAt }
        if isInProgress {
            if status == .running, cursor < waves.count, !waves[cursor].gatePassed, let deadline = waves[cursor].gateDeadline {
                candidates.append(deadline)
                if let soakEnds = waves[cursor].notBefore { candidates.append(soakEnds) }
            }
            candidates += gateWakes(now)
            for index in movesInPlay where moves[index].phase.awaitsCluster {
                if let deadline = moves[index].deadline { candidates.append(deadline) }
            }
            if let deadline = restoreWaitsOnCluster.deadline { candidates.append(deadline) }
        }
        if waitsOnCluster(now) {
            let poll = policy.pollIntervalMilliseconds
            candidates.append((observeRequestedAt ?? observedAt ?? now).adding(milliseconds: poll))
        }
        // Anything due now was handled by `advance`; only later moments need a wake-up.
        return candidates.filter { $0 > now }.min()
    }
}
