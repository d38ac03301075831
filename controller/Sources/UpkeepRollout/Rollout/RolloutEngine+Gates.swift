import UpkeepCore

/// The configured gates before every forward wave (docs/planning.md, "Gates"), and the canary
/// soak. The engine asks for a read (`checkGates`), takes the answer as an event (`gatesRead`)
/// and decides from it alone; a wave the gates hold waits up to `gates.holdTimeout`, saying why
/// when the reason changes and every few minutes, then blocks with the reason.
extension RolloutEngine {
    /// Called by the current wave's gate. Nil when the gates let the wave go (or none are
    /// configured, or the wave is a way back: a rollback is never held, its alerts are likely
    /// its cause); otherwise whether anything changed while they hold it or are being read.
    mutating func gatesHold(_ now: Instant, _ out: inout [Action]) -> Bool? {
        guard let gates = policy.gates, !gates.kinds.isEmpty, direction == .forward else { return nil }
        guard let report = gateReport, (gateReads ?? 0) > (waves[cursor].gateReadSince ?? 0) else { return false }
        let pending = pendingInSpan
        let retried = Set(pending.filter { moves[$0].attempt > 1 }.map { moves[$0].node })
        let holds = GateVerdict.holds(report, policy: gates, going: pending.map { moves[$0].node }, retried: retried)
        var wave = waves[cursor]
        guard !holds.isEmpty else {
            guard let since = wave.heldSince else { return nil }
            out.append(.notice(Notice(.info, "\(wave.label): the gates no longer hold it (held \(now.milliseconds(since: since) / 1000) s)")))
            wave.heldSince = nil
            wave.holds = nil
            wave.holdNoticeAt = nil
            waves[cursor] = wave
            return nil
        }
        let changed = wave.holds != holds
        let since = wave.heldSince ?? now
        let blocksAt = since.adding(seconds: gates.holdTimeoutSeconds)
        wave.heldSince = since
        wave.holds = holds
        let text = holds.map(\.text).joined(separator: "; ")
        if now >= blocksAt {
            waves[cursor] = wave
            stop(.blocked("\(wave.label): held by the gates for \(gates.holdTimeoutSeconds) s (gates.holdTimeout): \(text); "
                          + "`upkeep resume` once \(holds.count == 1 ? "it clears" : "they clear")"), &out)
            return true
        }
        let reminder = wave.holdNoticeAt.map { now >= $0.adding(seconds: GatePolicy.holdNoticeIntervalSeconds) } ?? true
        if changed || reminder {
            out.append(.notice(Notice(.warning, "\(wave.label): held by the gates: \(text); waiting until "
                                          + "\(MaintenanceWindowClock.text(blocksAt)) (gates.holdTimeout), then the rollout blocks")))
            wave.holdNoticeAt = now
        }
        // The wave's own conditions (nodes Ready, volumes healthy) get their whole bound once the gates let go.
        let deadline = now.adding(seconds: policy.gateTimeoutSeconds)
        if wave.gateDeadline.map({ $0 < deadline }) ?? true { wave.gateDeadline = deadline }
        let progressed = changed || reminder
        waves[cursor] = wave
        return progressed
    }

    /// The soak after the last canary wave: nil once it is over (or there is none), else
    /// whether anything changed. When it ends the gate opens afresh, so everything it looks at
    /// (the gates included) is read after the soak.
    mutating func soaking(_ now: Instant, _ out: inout [Action]) -> Bool? {
        guard let until = waves[cursor].notBefore else { return nil }
        guard now >= until else { return false }
        waves[cursor].notBefore = nil
        out.append(.notice(Notice(.info, "\(waves[cursor].label): the canary soak is over; checking the gates for the rest")))
        openGate(cursor, now)
        return true
    }

    /// After the last canary wave of a hop is done: the next wave waits `canarySoakSeconds`.
    mutating func startSoakIfCanariesDone(finished: Int, _ now: Instant, _ out: inout [Action]) {
        guard direction == .forward, waves[finished].canary == true, cursor < waves.count, waves[cursor].canary != true else { return }
        let canaries = waves.indices.filter { waves[$0].canary == true && $0 <= finished }.flatMap { waves[$0].moves.map { moves[$0].node } }
        let soak = plan.policy.canarySoakSeconds
        guard soak > 0 else {
            out.append(.notice(Notice(.info, "canaries done (\(GateCheck.listed(canaries))); no soak (--canary-soak 0): the gates, then the rest")))
            return
        }
        let until = now.adding(seconds: soak)
        waves[cursor].notBefore = until
        waves[cursor].gateDeadline = until.adding(seconds: policy.gateTimeoutSeconds)
        out.append(.notice(Notice(.info, "canaries done (\(GateCheck.listed(canaries))): soaking \(soak) s until "
                                      + "\(MaintenanceWindowClock.text(until)), then the gates, then the rest")))
    }

    /// Whether the gates are to be read now for the current wave.
    private func waitsOnGates(_ now: Instant) -> Bool {
        guard let gates = policy.gates, !gates.kinds.isEmpty, direction == .forward, status == .running,
              cursor < waves.count, !waves[cursor].gatePassed, waves[cursor].opened != true else { return false }
        return waves[cursor].notBefore.map { now >= $0 } ?? true
    }

    mutating func requestGatesIfNeeded(_ now: Instant, _ out: inout [Action]) {
        guard waitsOnGates(now), let gates = policy.gates else { return }
        let poll = policy.pollIntervalMilliseconds
        if let requested = gatesRequestedAt, now < requested.adding(milliseconds: poll) { return }
        let stale = (gateReads ?? 0) <= (waves[cursor].gateReadSince ?? 0)
        guard stale || gateReadAt.map({ now >= $0.adding(milliseconds: poll) }) ?? true else { return }
        gatesRequestedAt = now
        out.append(.checkGates(GateQuestion(kinds: gates.kinds, etcdNodes: etcdNodes)))
    }

    /// The moments the gates need a wake-up for: the next read, the next reminder, the block.
    func gateWakes(_ now: Instant) -> [Instant] {
        guard waitsOnGates(now), let gates = policy.gates else { return [] }
        let poll = policy.pollIntervalMilliseconds
        var wakes = [(gatesRequestedAt ?? gateReadAt ?? now).adding(milliseconds: poll)]
        if let since = waves[cursor].heldSince { wakes.append(since.adding(seconds: gates.holdTimeoutSeconds)) }
        if let said = waves[cursor].holdNoticeAt { wakes.append(said.adding(seconds: GatePolicy.holdNoticeIntervalSeconds)) }
        return wakes
    }

    /// Servers with embedded etcd, as the newest observation (else the plan) names them.
    private var etcdNodes: [String] {
        if let observation {
            return observation.inventory.nodes.filter { $0.role == .server && $0.etcd }.map(\.name)
        }
        var seen = Set<String>()
        return plan.waves.flatMap(\.steps).filter { $0.role == .server && $0.etcd }.map(\.node).filter { seen.insert($0).inserted }
    }

    /// Where the gates hold the current wave (waiting, or blocked on them); nil when they do not.
    public var gateHold: GateHoldState? {
        guard let gates = policy.gates, cursor < waves.count, let holds = waves[cursor].holds, let since = waves[cursor].heldSince,
              !holds.isEmpty else { return nil }
        let blocked = if case .blocked = status { true } else { false }
        return GateHoldState(wave: waves[cursor].label, holds: holds, since: since,
                             blocksAt: since.adding(seconds: gates.holdTimeoutSeconds), blocked: blocked)
    }

    /// The newest read of the gates, for `status`.
    public var lastGateReport: (report: GateReport, at: Instant)? {
        guard let gateReport, let gateReadAt else { return nil }
        return (gateReport, gateReadAt)
    }
}
