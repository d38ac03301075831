import UpkeepCore

/// Carries out a `Plan` as a pure state machine: events in (agent answers, cluster
/// observations, clock ticks, start and resume), actions out (requests to agents, a look at the
/// cluster, when to wake, notices, the outcome). It never reads a clock, the network or the disk.
///
/// The runtime persists the whole engine (it is Codable) after every `handle` and before
/// performing the actions it returned, so a crash at any moment resumes from a state whose
/// requests may or may not have been sent: `resume` sends them again with the same operation
/// ids, and agents answer a repeated id from their journal.
///
/// Per node: gate → cordon → drain → stage (unless prefetched) → install → the API shows the
/// node Ready at the new version → uncordon → Longhorn healthy again → commit the agent's watch.
/// A failing node is reverted by its agent; the engine then stops starting nodes and (with
/// auto-rollback) returns the finished nodes to their earlier versions in reverse order.
/// It never uncordons a node it did not cordon, and leaves a node it cordoned cordoned only when
/// that node is unhealthy or its agent cannot be reached, and says so.
public struct RolloutEngine: Codable, Equatable, Sendable {
    public enum Event: Equatable, Sendable {
        /// Begin. Only once.
        case start
        /// After loading persisted state (a restarted controller), or `upkeep resume` on a blocked
        /// rollout: send every unanswered request again and retry what was blocked.
        case resume
        /// Time passed; deadlines and retries are checked against `now`.
        case tick
        case replied(operationID: String, AgentReply)
        /// No answer came (connection lost, timeout, agent restarting): the request may or may
        /// not have run. It is sent again with the same id, a bounded number of times.
        case requestFailed(operationID: String, message: String)
        case observed(ClusterObservation)
        /// The operator gives the rollout up (`upkeep abandon`): it finishes as `abandoned` at
        /// once, sends nothing more and forgets its unanswered requests; what it leaves behind
        /// (nodes it cordoned, installs not committed, requests that may still run) is reported.
        /// Only for a rollout no controller is driving (the caller holds the lease).
        case abandon(reason: String)
    }

    public enum Action: Equatable, Sendable {
        case send(AgentRequest)
        /// Read nodes, Longhorn volumes and etcd health, and answer with `.observed`.
        case observeCluster
        /// Call `handle(.tick)` at this moment at the latest.
        case wake(at: Instant)
        case notice(Notice)
        case finished(RolloutOutcome)
    }

    public enum Status: Codable, Equatable, Sendable {
        case notStarted
        case running
        /// Finishing what is in flight before rolling back, failing or blocking.
        case stopping
        /// Waiting for `resume`; nothing new starts. Every node Upkeep cordoned is uncordoned,
        /// except those named as unhealthy or unreachable.
        case blocked(reason: String)
        case finished(RolloutOutcome)
    }

    public enum Direction: Codable, Equatable, Sendable {
        case forward
        case reverting(cause: String)
    }

    public let rolloutID: String
    public let plan: Plan
    public let policy: RolloutPolicy
    public private(set) var status = Status.notStarted
    public private(set) var direction = Direction.forward
    var stopReason: StopReason?
    var moves: [Move] = []
    var waves: [WaveRun] = []
    /// The wave being worked on (or gated).
    var cursor = 0
    /// Moves outside the current wave that still have something to finish (a node recovering
    /// after `resume`, an answer arriving late).
    var stragglers: [Int] = []
    var stages: [StageRun] = []
    /// Stage requests issued so far; numbers each one so a restage never replays a recorded failure.
    var stagesIssued = 0
    var pending: [String: PendingRequest] = [:]
    /// Send order of pending requests, so resends are deterministic.
    var pendingOrder: [String] = []
    var observation: ClusterObservation?
    var observationSerial = 0
    var observedAt: Instant?
    var observeRequestedAt: Instant?

    /// A rollout id is 1...40 characters from `a-z 0-9 -`; it prefixes every operation id.
    public init(rolloutID: String, plan: Plan, policy: RolloutPolicy) throws(RolloutSetupError) {
        guard (1...40).contains(rolloutID.utf8.count),
              rolloutID.utf8.allSatisfy({ ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 45 }) else {
            throw RolloutSetupError.badRolloutID(rolloutID)
        }
        let problems = policy.problems()
        guard problems.isEmpty else { throw RolloutSetupError.badPolicy(problems) }
        self.rolloutID = rolloutID
        self.plan = plan
        self.policy = policy
        for wave in plan.waves {
            var run = WaveRun(label: "hop \(wave.hop) \(wave.label)", role: wave.role, moves: [])
            for step in wave.steps {
                run.moves.append(moves.count)
                var move = Move(key: "f\(moves.count)", node: step.node, role: step.role, arch: step.arch, from: step.from, to: step.to)
                move.wave = waves.count
                moves.append(move)
            }
            waves.append(run)
        }
    }

    // MARK: - Queries for the runtime, the CLI and tests

    /// Nodes Upkeep cordoned and has not uncordoned.
    public var cordonedByUpkeep: [String] {
        var seen = Set<String>()
        return moves.filter { $0.cordonedByUs && !seen.contains($0.node) }.compactMap { seen.insert($0.node).inserted ? $0.node : nil }
    }

    /// Operation ids of installs whose watch was not committed or ended by a rollback.
    public var openWatches: [String] {
        moves.filter { $0.installOperationID != nil && ($0.phase == .verifying || $0.phase == .uncordoning && $0.afterUncordon == .settling
                                                         || $0.phase == .settling || $0.phase == .committing) }
            .compactMap(\.installOperationID)
    }

    /// Requests sent or waiting to be sent, oldest first.
    public var unansweredRequests: [AgentRequest] { pendingOrder.compactMap { pending[$0]?.request } }

    // MARK: - Events

    public mutating func handle(_ event: Event, now: Instant) -> [Action] {
        var out: [Action] = []
        switch event {
        case .start:
            guard status == .notStarted else { return [] }
            status = .running
            out.append(.notice(Notice(.info, "rollout \(rolloutID): \(plan.headline())")))
            if !waves.isEmpty { openGate(cursor, now) }
        case .resume:
            resume(now, &out)
        case .tick:
            break
        case .replied(let operationID, let reply):
            guard let request = pending.removeValue(forKey: operationID) else { return [] }  // late or duplicate
            pendingOrder.removeAll { $0 == operationID }
            switch request.owner {
            case .stage(let id):
                if let index = stages.firstIndex(where: { $0.operationID == id }) { stageReplied(index, reply, &out) }
            case .move(let index): moveReplied(index, operationID, reply, now, &out)
            }
        case .requestFailed(let operationID, let message):
            guard var request = pending[operationID], request.sendAt == nil, !request.exhausted else { return [] }
            if request.tries >= policy.requestTriesMax {
                request.exhausted = true
                let what = "the agent on \(request.request.node) did not answer \(request.request.command.name) "
                    + "(\(request.tries) tries, last: \(message))"
                out.append(.notice(Notice(.error, node: request.request.node, what)))
                stop(.blocked(what + "; check the agent and run `upkeep resume`"), &out)
            } else {
                request.sendAt = now.adding(milliseconds: policy.retryDelay(afterTries: request.tries))
            }
            pending[operationID] = request
        case .observed(let observation):
            self.observation = observation
            observationSerial += 1
            observedAt = now
            observeRequestedAt = nil
        case .abandon(let reason):
            if case .finished = status { return [] }
            abandon(reason, &out)
            return out
        }
        advance(now, &out)
        if let wake = nextWake(now) { out.append(.wake(at: wake)) }
        return out
    }

    // MARK: - Progress

    private mutating func advance(_ now: Instant, _ out: inout [Action]) {
        // Each pass makes progress or stops: a move goes through a bounded number of phases and
        // a wave has a bounded number of moves, so running out of passes is a bug, not a state.
        let passesMax = moves.count * 16 + 64
        var passes = 0
        while makeProgress(now, &out) {
            passes += 1
            if passes == passesMax { preconditionFailure("rollout \(rolloutID): still progressing after \(passesMax) passes (\(status))") }
        }
        stragglers.removeAll { moves[$0].phase.isFinal || moves[$0].wave == cursor }
        sendDue(now, &out)
        requestObservationIfNeeded(now, &out)
    }

    /// One pass over everything that may change now; true when anything did.
    private mutating func makeProgress(_ now: Instant, _ out: inout [Action]) -> Bool {
        var progressed = false
        if case .running = status, cursor < waves.count, !waves[cursor].gatePassed {
            progressed = checkGate(now, &out) || progressed
        }
        if isInProgress {
            for index in movesInPlay { progressed = stepMove(index, now, &out) || progressed }
        }
        progressed = finishWaveIfDone(now, &out) || progressed
        progressed = finishIfAllDone(&out) || progressed
        progressed = blockIfStuck(&out) || progressed
        progressed = quiesceIfStopped(now, &out) || progressed
        return progressed
    }

    /// Started and not finished (running, stopping or blocked): moves in flight keep going.
    private var isInProgress: Bool {
        switch status {
        case .running, .stopping, .blocked: true
        case .notStarted, .finished: false
        }
    }

    /// Whether a move may take its next forward step: only while the rollout runs and the move
    /// belongs to the current wave. Otherwise (stopping, blocked, or a forward step of a wave
    /// left behind still answering during a rollback) it winds down instead.
    private func mayGoForward(_ index: Int) -> Bool { status == .running && moves[index].wave == cursor }

    /// The current wave's moves and the stragglers: every move that may still change.
    private var movesInPlay: [Int] {
        guard cursor < waves.count else { return stragglers }
        return waves[cursor].moves + stragglers.filter { moves[$0].wave != cursor }
    }

    private mutating func openGate(_ wave: Int, _ now: Instant) {
        waves[wave].gatePassed = false
        waves[wave].gateDeadline = now.adding(seconds: policy.gateTimeoutSeconds)
        waves[wave].gateSinceSerial = observationSerial
    }

    private mutating func checkGate(_ now: Instant, _ out: inout [Action]) -> Bool {
        let wave = waves[cursor]
        let pending = wave.moves.filter { moves[$0].phase == .pending }
        guard !pending.isEmpty else {
            waves[cursor].gatePassed = true
            return true
        }
        if let windows = policy.maintenanceWindows, !windows.isOpen(at: now) {
            // Nothing of this wave has started; what earlier waves left in flight has finished
            // (the gate waits for it), so blocking here leaves every node as it should be.
            stop(.blocked("\(wave.label): outside the maintenance windows (\(windows.listed), UTC); "
                          + "the next opens at \(MaintenanceWindowClock.text(windows.nextOpen(atOrAfter: now)))"), &out)
            return true
        }
        if let observation, observationSerial > wave.gateSinceSerial {
            var verdict = GateCheck.evaluate(wave: wave, moves: moves, pending: pending, observation: observation)
            let elsewhere = moves.filter { $0.wave != cursor && ($0.cordonedByUs || !$0.phase.isFinal) }.map(\.node)
            if !elsewhere.isEmpty { verdict.problems.append("still in progress from an earlier wave: \(GateCheck.listed(elsewhere))") }
            if verdict.problems.isEmpty {
                waves[cursor].gatePassed = true
                var line = "\(wave.label): gate passed, starting \(verdict.start.map { moves[$0].node }.joined(separator: ", "))"
                if let held = verdict.held { line += "; \(held)" }
                out.append(.notice(Notice(.info, line)))
                for index in verdict.start { enter(index, .cordoning, now, &out) }
                prefetch(now, &out)
                return true
            }
            if let deadline = wave.gateDeadline, now >= deadline {
                let problems = verdict.problems
                let shown = problems.prefix(5).joined(separator: "; ") + (problems.count > 5 ? "; and \(problems.count - 5) more" : "")
                stop(.blocked("\(wave.label): the gate did not pass within \(policy.gateTimeoutSeconds) s: \(shown)"), &out)
                return true
            }
        }
        return false
    }

    /// Moves one node as far as it can go now; true when anything changed.
    private mutating func stepMove(_ index: Int, _ now: Instant, _ out: inout [Action]) -> Bool {
        let move = moves[index]
        switch move.phase {
        case .staging:
            if !mayGoForward(index) { return uncordonThen(index, .cancelled, now, &out) }
            guard let stage = stages.firstIndex(where: { $0.node == move.node && $0.version == move.to }) else {
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
                  GateCheck.nodeReady(move.node, at: move.from, in: observation) else { return false }
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
            if let fresh, GateCheck.nodeReady(move.node, at: move.to, in: fresh) {
                out.append(.notice(Notice(.info, node: move.node, "Ready at \(move.to)")))
                return uncordonThen(index, .settling, now, &out)
            }
            guard expired else { return false }
            let text = "\(move.node) was not Ready at \(move.to) within \(policy.verifyTimeoutSeconds) s"
            out.append(.notice(Notice(.error, node: move.node, text + "; asking its agent to put \(move.from) back")))
            stop(.failure(text), &out)
            enter(index, .rollingBack, now, &out)
            return true
        case .verifyingRevert:
            if let fresh, GateCheck.nodeReady(move.node, at: move.from, in: fresh) {
                out.append(.notice(Notice(.info, node: move.node, "back at \(move.from) and Ready")))
                return uncordonThen(index, .reverted, now, &out)
            }
            guard expired else { return false }
            markUnhealthy(index, "not Ready at \(move.from) within \(policy.verifyTimeoutSeconds) s after going back", &out)
            return true
        case .settling:
            if let fresh, GateCheck.longhornProblems(fresh).isEmpty {
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

    private mutating func finishWaveIfDone(_ now: Instant, _ out: inout [Action]) -> Bool {
        guard status == .running, cursor < waves.count, waves[cursor].gatePassed else { return false }
        let phases = waves[cursor].moves.map { moves[$0].phase }
        if phases.contains(.pending) && phases.allSatisfy({ $0 == .done || $0 == .pending }) {
            // Part of the wave was held back for Longhorn (replicas moved since planning): gate the rest.
            openGate(cursor, now)
            return true
        }
        guard phases.allSatisfy({ $0 == .done }) else { return false }
        out.append(.notice(Notice(.info, "\(waves[cursor].label): done")))
        moveCursor(to: cursor + 1, now)
        return true
    }

    /// Anything of the wave left behind that may still change becomes a straggler.
    private mutating func moveCursor(to wave: Int, _ now: Instant) {
        if cursor < waves.count {
            for index in waves[cursor].moves where !moves[index].phase.isFinal && !stragglers.contains(index) { stragglers.append(index) }
        }
        cursor = wave
        if cursor < waves.count { openGate(cursor, now) }
    }

    /// Running, but everything unfinished waits on agents that stopped answering (a failure's
    /// rollback took precedence over their block): block, so `resume` asks them again.
    private mutating func blockIfStuck(_ out: inout [Action]) -> Bool {
        guard status == .running, cursor >= waves.count || waves[cursor].gatePassed else { return false }
        let live = movesInPlay.filter { !moves[$0].phase.isSettled }
        guard !live.isEmpty, live.allSatisfy({ pendingRequest(for: $0)?.exhausted == true }) else { return false }
        block("the agents on \(GateCheck.listed(live.map { moves[$0].node })) do not answer; check them and run `upkeep resume`", &out)
        return true
    }

    /// Past the last wave: finish once nothing is left to tend. A node left unhealthy blocks
    /// instead, so the rollout never reports success (or a clean rollback) over a broken node.
    /// Blocked past the last wave (nothing new can start), it finishes as soon as the unhealthy
    /// nodes recover: the only thing the block was waiting for.
    private mutating func finishIfAllDone(_ out: inout [Action]) -> Bool {
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
        case .reverting(let cause): finish(.rolledBack(cause: cause), &out)
        }
        return true
    }

    private mutating func finish(_ outcome: RolloutOutcome, _ out: inout [Action]) {
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
    private mutating func abandon(_ reason: String, _ out: inout [Action]) {
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

    // MARK: - Stopping, rolling back, resuming

    /// Stops starting nodes. A failure outranks a block: it decides what happens next.
    private mutating func stop(_ reason: StopReason, _ out: inout [Action]) {
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
    private mutating func quiesceIfStopped(_ now: Instant, _ out: inout [Action]) -> Bool {
        guard status == .stopping, let reason = stopReason else { return false }
        do {
            for index in movesInPlay {
                let move = moves[index]
                if move.phase.awaitsCluster { return false }
                if move.phase == .staging { return false }
                if move.phase.awaitsReply, let request = pendingRequest(for: index), !request.exhausted { return false }
            }
        }
        stopReason = nil
        switch (reason, direction) {
        case (.failure(let cause), .forward) where policy.autoRollback:
            beginRollback(cause: cause, now, &out)
        case (.failure(let cause), .forward):
            status = .running  // so finish() can record the outcome
            reportLeftCordoned(&out)
            finish(.failed(cause: cause), &out)
        case (.failure(let cause), .reverting):
            block("rolling back stopped: \(cause)", &out)
        case (.blocked(let cause), _):
            block(cause, &out)
        }
        return true
    }

    private mutating func block(_ reason: String, _ out: inout [Action]) {
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

    /// Reverse order: the last finished step goes back first. Agents of a wave go back together
    /// (their wave was safe for Longhorn; the gate checks it again against the current replicas).
    private mutating func beginRollback(cause: String, _ now: Instant, _ out: inout [Action]) {
        direction = .reverting(cause: cause)
        status = .running
        out.append(.notice(Notice(.warning, "rolling back: \(cause)")))
        let forward = waves.count
        for wave in waves[0..<min(cursor + 1, forward)].reversed() {
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

    private mutating func resume(_ now: Instant, _ out: inout [Action]) {
        // A crash may have struck after the outcome was persisted and before it was reported.
        if case .finished(let outcome) = status { out.append(.finished(outcome)) }
        guard isInProgress else { return }
        if case .blocked = status { status = .running }
        out.append(.notice(Notice(.info, "rollout \(rolloutID) resumed")))
        for id in pendingOrder {
            pending[id]?.tries = 0
            pending[id]?.exhausted = false
            pending[id]?.sendAt = now
        }
        stages.removeAll { $0.state == .failed }
        observeRequestedAt = nil
        for index in stragglers where pendingRequest(for: index) == nil && moves[index].phase.awaitsReply {
            moves[index].attempt += 1
            enter(index, moves[index].phase, now, &out)
        }
        guard cursor < waves.count else { return }
        var reopen = false
        for index in waves[cursor].moves {
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

    // MARK: - Replies

    private mutating func stageReplied(_ index: Int, _ reply: AgentReply, _ out: inout [Action]) {
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

    private mutating func moveReplied(_ index: Int, _ operationID: String, _ reply: AgentReply, _ now: Instant, _ out: inout [Action]) {
        let move = moves[index]
        switch (move.phase, reply) {
        case (.cordoning, .cordoned(let wasUnschedulable)):
            moves[index].cordonedByUs = !wasUnschedulable
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
            if move.wave != cursor {
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

    private mutating func markUnhealthy(_ index: Int, _ reason: String, _ out: inout [Action]) {
        moves[index].phase = .unhealthy
        moves[index].deadline = nil
        moves[index].sinceSerial = observationSerial
        moves[index].note = reason
        if moves[index].wave != cursor && !stragglers.contains(index) { stragglers.append(index) }
        let left = moves[index].cordonedByUs ? "; left cordoned" : ""
        out.append(.notice(Notice(.error, node: moves[index].node, reason + left)))
        stop(.failure("\(moves[index].node) \(reason)"), &out)
    }

    // MARK: - Entering phases

    private func timeout(for phase: Move.Phase) -> Int {
        switch phase {
        case .settling: policy.rebuildTimeoutSeconds
        default: policy.verifyTimeoutSeconds
        }
    }

    /// Uncordons the node if Upkeep cordoned it, then goes to `next`; true when anything changed.
    @discardableResult
    private mutating func uncordonThen(_ index: Int, _ next: Move.Phase, _ now: Instant, _ out: inout [Action]) -> Bool {
        if moves[index].cordonedByUs {
            moves[index].afterUncordon = next
            enter(index, .uncordoning, now, &out)
        } else {
            enter(index, next, now, &out)
        }
        return true
    }

    private mutating func enter(_ index: Int, _ phase: Move.Phase, _ now: Instant, _ out: inout [Action]) {
        moves[index].phase = phase
        moves[index].deadline = nil
        if !phase.isFinal && moves[index].wave != cursor && !stragglers.contains(index) { stragglers.append(index) }
        let move = moves[index]
        let command: AgentCommand?
        switch phase {
        case .cordoning: command = .cordon
        case .draining: command = .drain(timeoutSeconds: policy.drainTimeoutSeconds)
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
            if status == .running && move.wave == cursor {
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

    private mutating func startStage(node: String, version: K3sVersion, arch: Arch, key: String, _ now: Instant) {
        stagesIssued += 1
        let id = "\(rolloutID):\(key):stage:\(stagesIssued)"
        stages.append(StageRun(node: node, version: version, operationID: id))
        queue(AgentRequest(operationID: id, node: node, command: .stage(version: version, arch: arch)), owner: .stage(id), now)
    }

    /// Stages the binaries of the current wave and the next `prefetchWaves` ahead of their turn.
    private mutating func prefetch(_ now: Instant, _ out: inout [Action]) {
        let last = min(waves.count - 1, cursor + policy.prefetchWaves)
        guard cursor <= last else { return }
        for wave in waves[cursor...last] {
            for index in wave.moves where moves[index].phase != .done {
                let move = moves[index]
                if !stages.contains(where: { $0.node == move.node && $0.version == move.to }) {
                    startStage(node: move.node, version: move.to, arch: move.arch, key: move.key, now)
                }
            }
        }
    }

    // MARK: - Requests, observations, wake-ups

    private mutating func queue(_ request: AgentRequest, owner: PendingRequest.Owner, _ now: Instant) {
        precondition(pending[request.operationID] == nil, "operation id \(request.operationID) issued twice")
        pending[request.operationID] = PendingRequest(request: request, owner: owner, sendAt: now)
        pendingOrder.append(request.operationID)
    }

    private func pendingRequest(for move: Int) -> PendingRequest? {
        for id in pendingOrder {
            if let request = pending[id], case .move(let owner) = request.owner, owner == move { return request }
        }
        return nil
    }

    private mutating func sendDue(_ now: Instant, _ out: inout [Action]) {
        for id in pendingOrder {
            guard var request = pending[id], !request.exhausted, let at = request.sendAt, at <= now else { continue }
            request.sendAt = nil
            request.tries += 1
            pending[id] = request
            out.append(.send(request.request))
        }
    }

    private var waitsOnCluster: Bool {
        guard isInProgress else { return false }
        if status == .running && cursor < waves.count && !waves[cursor].gatePassed { return true }
        return movesInPlay.contains { moves[$0].phase.awaitsCluster || moves[$0].phase == .unhealthy }
    }

    /// True when some wait began after the newest observation, so a fresh one is needed now.
    private var needsFreshObservation: Bool {
        if status == .running && cursor < waves.count && !waves[cursor].gatePassed
            && waves[cursor].gateSinceSerial >= observationSerial { return true }
        return movesInPlay.contains { moves[$0].phase.awaitsCluster && moves[$0].sinceSerial >= observationSerial }
    }

    private mutating func requestObservationIfNeeded(_ now: Instant, _ out: inout [Action]) {
        guard waitsOnCluster else { return }
        let poll = policy.pollIntervalMilliseconds
        if let requested = observeRequestedAt, now < requested.adding(milliseconds: poll) { return }
        let due = needsFreshObservation || observedAt.map { now >= $0.adding(milliseconds: poll) } ?? true
        guard due else { return }
        observeRequestedAt = now
        out.append(.observeCluster)
    }

    private func nextWake(_ now: Instant) -> Instant? {
        var candidates: [Instant] = pending.values.compactMap { $0.exhausted ? nil : $0.sendAt }
        if isInProgress {
            if status == .running, cursor < waves.count, !waves[cursor].gatePassed, let deadline = waves[cursor].gateDeadline {
                candidates.append(deadline)
            }
            for index in movesInPlay where moves[index].phase.awaitsCluster {
                if let deadline = moves[index].deadline { candidates.append(deadline) }
            }
        }
        if waitsOnCluster {
            let poll = policy.pollIntervalMilliseconds
            candidates.append((observeRequestedAt ?? observedAt ?? now).adding(milliseconds: poll))
        }
        // Anything due now was handled by `advance`; only later moments need a wake-up.
        return candidates.filter { $0 > now }.min()
    }
}

/// Why a rollout could not be set up.
public enum RolloutSetupError: Error, Equatable, Sendable, CustomStringConvertible {
    case badRolloutID(String)
    case badPolicy([String])

    public var description: String {
        switch self {
        case .badRolloutID(let id): "rollout id \"\(id.prefix(60))\" must be 1...40 characters from a-z, 0-9 and -"
        case .badPolicy(let problems): "rollout policy: " + problems.joined(separator: "; ")
        }
    }
}
