import UpkeepCore

/// Carries out a `Plan` as a pure state machine: events in (agent answers, cluster
/// observations, clock ticks, start and resume), actions out (requests to agents, a look at the
/// cluster, when to wake, notices, the outcome). It never reads a clock, the network or the disk.
///
/// The runtime persists every `handle` (the event, Codable, and what changed; the whole engine,
/// Codable, now and then) before performing the actions it returned; the store rebuilds the
/// engine by replaying the events, so `handle` must stay deterministic (no clock, no randomness,
/// no order of a hashed collection reaching an action). A crash at any moment resumes from a state whose
/// requests may or may not have been sent: `resume` sends them again with the same operation
/// ids, and agents answer a repeated id from their journal.
///
/// Per node: gate → cordon → drain → stage (unless prefetched) → install → the API shows the
/// node Ready at the new version → uncordon → Longhorn healthy again → commit the agent's watch.
/// A failing node is reverted by its agent; the engine then stops starting nodes and (with
/// auto-rollback) returns the finished nodes to their earlier versions in reverse order.
/// It never uncordons a node it did not cordon, and leaves a node it cordoned cordoned only when
/// that node is unhealthy or its agent cannot be reached, and says so.
///
/// This file holds the events and the progress loop; `RolloutEngine+Progress` the gates and the
/// phases of a move, `+Replies` the agents' answers, `+Stopping` stopping, rolling back,
/// resuming and finishing, `+Requests` requests, looks at the cluster and wake-ups.
public struct RolloutEngine: Codable, Equatable, Sendable {
    public enum Event: Codable, Equatable, Sendable {
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
        /// The operator undoes the newest hop not yet undone by restoring the datastore snapshot
        /// taken before it (`upkeep rollback --restore`), on a blocked or finished rollout.
        /// `restoreChoice` says beforehand what it would do; a refusal changes nothing.
        case restore
        /// The maintenance windows from now on: those of the configuration the rollout is resumed
        /// with, or nil (none, `--ignore-window`). A change is said in a notice.
        case setMaintenanceWindows([MaintenanceWindow]?)
        /// The controller can no longer count on the cluster lock (its Lease was taken over, or
        /// not renewed in time): another controller may be driving the nodes now. It blocks at
        /// once and sends nothing, not even to wind a node down; unanswered requests stay, so
        /// a `resume` sends them again with their ids.
        case lockLost(reason: String)
        /// What the runtime read of the configured gates, answering `.checkGates`.
        case gatesRead(GateReport)
    }

    public enum Action: Equatable, Sendable {
        case send(AgentRequest)
        /// Read nodes, Longhorn volumes and etcd health, and answer with `.observed`.
        case observeCluster
        /// Read the configured gates (Prometheus alerts, blocking pods, etcd health through the
        /// server agents), and answer with `.gatesRead`.
        case checkGates(GateQuestion)
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
        /// Binaries back, in reverse order, for the failed hop's finished nodes.
        case reverting(cause: String)
        /// A hop's datastore snapshot restored (`restore` holds the procedure).
        case restoring(cause: String)
    }

    public let rolloutID: String
    public let plan: Plan
    /// Fixed when the rollout is made, except its maintenance windows (`setMaintenanceWindows`).
    public internal(set) var policy: RolloutPolicy
    public internal(set) var status = Status.notStarted
    public internal(set) var direction = Direction.forward
    var stopReason: StopReason?
    var moves = ChunkedArray<Move>()
    var waves = ChunkedArray<WaveRun>()
    /// The newest wave being worked on (or gated).
    var cursor = 0
    /// The oldest wave still running beside the cursor's (`Admission.mayOverlap`): the waves
    /// from it to the cursor are the span whose moves go forward; nil: the cursor's alone.
    var openFrom: Int?
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
    /// The newest read of the gates, how many were read (numbering them as observations are),
    /// when, and when one was last asked for. Nil until the first.
    var gateReport: GateReport?
    var gateReads: Int?
    var gateReadAt: Instant?
    var gatesRequestedAt: Instant?
    /// Datastore backups asked for before each hop's first server; nil in rollouts persisted
    /// before hop snapshots existed.
    var snapshots: [HopSnapshot]?
    /// The restore under way, or the last one done; nil until one begins.
    var restore: RestoreRun?
    /// Hops undone (by binaries or a restore), so a further `rollback --restore` goes one hop
    /// further back; nil until one is.
    var undoneHops: [Int]?
    /// Where things are in `observation`; derived, so neither coded nor compared, and refreshed
    /// before every step forward (`advance`).
    var observationIndex = ObservationIndex()
    /// Where each of `stages` is; derived, so neither coded nor compared.
    var stageIndex = StageIndex()

    /// Everything but `observationIndex` and `stageIndex`.
    enum CodingKeys: String, CodingKey {
        case rolloutID, plan, policy, status, direction, stopReason, moves, waves, cursor, openFrom, stragglers, stages, stagesIssued
        case pending, pendingOrder, observation, observationSerial, observedAt, observeRequestedAt, gateReport, gateReads, gateReadAt
        case gatesRequestedAt, snapshots, restore, undoneHops
    }

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
            if wave.isCanary { run.canary = true }
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
        let nodes = moves.filter(\.cordonedByUs).map(\.node) + (restore?.members.filter(\.cordonedByUs).map(\.node) ?? [])
        return nodes.filter { seen.insert($0).inserted }
    }

    /// The binaries that forward moves not yet past their stage will install: what a resume
    /// fetches and verifies before it lets the engine cordon another node.
    public var artifactsAhead: [Artifact] {
        let ahead: Set<Move.Phase> = [.pending, .cordoning, .draining, .staging, .cancelled]
        return Set(moves.filter { $0.key.hasPrefix("f") && ahead.contains($0.phase) }.map { Artifact(version: $0.to, arch: $0.arch) }).sorted()
    }

    /// Operation ids of installs whose watch was not committed or ended by a rollback.
    public var openWatches: [String] {
        moves.filter { $0.installOperationID != nil && ($0.phase == .verifying || $0.phase == .uncordoning && $0.afterUncordon == .settling
                                                         || $0.phase == .settling || $0.phase == .committing || $0.phase == .unverified) }
            .compactMap(\.installOperationID)
    }

    /// Whether this rollout itself keeps the Kubernetes API from answering now, so nobody can
    /// write the cluster Lease meanwhile: a restore between stopping every server and the last
    /// one rejoining, a recovery (begun with the API down) until it is done, or the only server
    /// of the cluster restarting k3s.
    public var takesTheAPIDown: Bool {
        if case .finished = status { return false }
        if case .restoring = direction, let run = restore, run.stage != .done {
            return !run.apiAvailable || [.stopping, .restoring, .rejoining].contains(run.stage)
        }
        guard isInProgress else { return false }
        let servers = observation.map { $0.inventory.nodes.filter { $0.role == .server }.count }
            ?? Set(moves.filter { $0.role == .server }.map(\.node)).count
        guard servers == 1 else { return false }
        return moves.contains { $0.role == .server && [.installing, .verifying, .rollingBack, .verifyingRevert].contains($0.phase) }
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
            if let run = restore {
                out.append(.notice(Notice(.warning, "recovery \(rolloutID): restoring datastore backup \(run.snapshot.backupID) (taken "
                                              + "\(MaintenanceWindowClock.text(run.snapshot.takenAt)) at \(run.snapshot.version)) "
                                              + "through the agents; every object written since then is lost")))
            } else {
                out.append(.notice(Notice(.info, "rollout \(rolloutID): \(plan.headline())")))
            }
            if cursor < waves.count { openGate(cursor, now) }
        case .resume:
            resume(now, &out)
        case .tick:
            break
        case .replied(let operationID, let reply):
            guard let request = pending.removeValue(forKey: operationID) else { return [] }  // late or duplicate
            pendingOrder.removeAll { $0 == operationID }
            if case .refused(let code, let message) = reply, code == AgentReply.interruptedCode {
                // The agent restarted and left the step undone: no verdict, send it again.
                redoInterrupted(request, message, now, &out)
            } else {
                replied(request, operationID, reply, now, &out)
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
        case .gatesRead(let report):
            gateReport = report
            gateReads = (gateReads ?? 0) + 1
            gateReadAt = now
            gatesRequestedAt = nil
        case .abandon(let reason):
            if case .finished = status { return [] }
            abandon(reason, &out)
            return out
        case .restore:
            operatorRestore(now, &out)
        case .lockLost(let reason):
            switch status {
            case .running, .stopping, .blocked:
                // A stop under way (a failure to roll back from) is kept: `resume` goes on stopping.
                block("this controller lost the cluster lock (\(reason)); another controller may be driving the nodes. "
                      + "`upkeep status` shows who holds it; once it is free, `upkeep resume` carries this rollout on "
                      + "(or `upkeep abandon` it if the cluster was changed meanwhile)", &out)
            case .notStarted, .finished:
                break
            }
            return out
        case .setMaintenanceWindows(let windows):
            let given = windows?.isEmpty == true ? nil : windows
            // Compared as written: the zones' rules come fresh from the tzdata at every resume.
            if given?.listed != policy.maintenanceWindows?.listed {
                let now = given.map(\.listed) ?? "none: nodes may start at any time"
                let before = policy.maintenanceWindows.map(\.listed) ?? "none"
                out.append(.notice(Notice(.info, "maintenance windows from now on: \(now) (were: \(before))")))
            }
            policy.maintenanceWindows = given
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
        if let observation { observationIndex.refresh(observation) }
        while makeProgress(now, &out) {
            passes += 1
            if passes == passesMax { preconditionFailure("rollout \(rolloutID): still progressing after \(passesMax) passes (\(status))") }
        }
        stragglers.removeAll { moves[$0].phase.isFinal || moves[$0].wave == cursor }
        sendDue(now, &out)
        requestObservationIfNeeded(now, &out)
        requestGatesIfNeeded(now, &out)
    }

    /// One pass over everything that may change now; true when anything did.
    private mutating func makeProgress(_ now: Instant, _ out: inout [Action]) -> Bool {
        var progressed = false
        if case .running = status, cursor < waves.count, !waves[cursor].gatePassed {
            progressed = checkGate(now, &out) || progressed
        }
        if isInProgress {
            for index in movesInPlay { progressed = stepMove(index, now, &out) || progressed }
            progressed = stepRestore(now, &out) || progressed
        }
        progressed = finishWaveIfDone(now, &out) || progressed
        progressed = finishIfAllDone(&out) || progressed
        progressed = blockIfStuck(&out) || progressed
        progressed = quiesceIfStopped(now, &out) || progressed
        return progressed
    }

    /// Started and not finished (running, stopping or blocked): moves in flight keep going.
    var isInProgress: Bool {
        switch status {
        case .running, .stopping, .blocked: true
        case .notStarted, .finished: false
        }
    }

    /// Whether a move may take its next forward step: only while the rollout runs and the move
    /// belongs to the span of current waves. Otherwise (stopping, blocked, or a forward step of
    /// a wave left behind still answering during a rollback) it winds down instead.
    func mayGoForward(_ index: Int) -> Bool { status == .running && inSpan(moves[index].wave) }

    /// Whether `wave` is the cursor's or one still running beside it.
    func inSpan(_ wave: Int) -> Bool { (openFrom ?? cursor) <= wave && wave <= cursor }

    /// The moves of the span's waves, in plan order.
    var movesInSpan: [Int] {
        guard cursor < waves.count else { return [] }
        return ((openFrom ?? cursor)...cursor).flatMap { waves[$0].moves }
    }

    /// The current wave's moves and the stragglers (the span's earlier waves among them): every
    /// move that may still change.
    var movesInPlay: [Int] {
        guard cursor < waves.count else { return stragglers }
        return waves[cursor].moves + stragglers.filter { moves[$0].wave != cursor }
    }
}

/// Why a rollout could not be set up.
public enum RolloutSetupError: Error, Equatable, Sendable, CustomStringConvertible {
    case badRolloutID(String)
    case badPolicy([String])
    case badRecovery(String)

    public var description: String {
        switch self {
        case .badRolloutID(let id): "rollout id \"\(id.prefix(60))\" must be 1...40 characters from a-z, 0-9 and -"
        case .badPolicy(let problems): "rollout policy: " + problems.joined(separator: "; ")
        case .badRecovery(let problem): "recovery: \(problem)"
        }
    }
}
