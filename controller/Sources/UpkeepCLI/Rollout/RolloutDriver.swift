import Foundation
import Synchronization
import UpkeepRollout
import UpkeepCore
import UpkeepFleet
import UpkeepPOSIX
import UpkeepRuntime
import UpkeepStore

/// Runs a rollout (new or resumed) with the real agents, the Kubernetes API and the state
/// database, shows its progress, and turns how it ended into an exit code.
struct RolloutDriver {
    let session: ClusterSession
    let store: StateStore
    let forceTakeover: Bool
    /// The cache the preflight already filled, if there was one; else one is opened.
    var artifacts: ArtifactCache? = nil
    /// Who started it, recorded with its operations (`upkeep serve`: the service and its policy).
    var initiator = Initiator.current()
    /// The lock of the set this rollout is a stage of (`upkeep apply --all`), held by the caller
    /// around every stage; nil: the rollout takes and gives back its own.
    var heldLock: OperationLock? = nil
    /// Whether a completed rollout runs the post-update validation (a set validates once, at its end).
    var validates = true

    enum Start {
        /// A new rollout made by `kind`: apply, rollback (a downgrade) or recover.
        case new(RolloutEngine, OperationKind)
        /// Carry a rollout on with the maintenance windows of this configuration (none with
        /// `ignoreWindow`), whatever it was started with.
        case resume(String?, ignoreWindow: Bool)
        /// `rollback --restore`: undo the newest hop of this rollout not undone yet.
        case restore(String)
    }

    /// Runs the rollout, reaching the agents `reading` names. A reading of the live cluster
    /// (`live`) is kept as the last known agent inventory first (best effort), so `upkeep
    /// recover` can reach the agents once the API is down; through the store this run holds
    /// (a second connection in this process could break SQLite's locks).
    func run(_ start: Start, reading: FleetReading, live: Bool = true) async throws -> Int32 {
        if live {
            let seen = Instant.wallClockNow()
            try? store.recordAgentInventory(reading.nodes.map { node in
                AgentInventoryRecord(node: node.node.name, role: node.node.role, etcd: node.node.etcd, arch: node.node.arch,
                                     k3sVersion: node.node.version, endpoint: node.agent?.description, seenAt: seen)
            })
        }
        let artifacts = try self.artifacts ?? session.artifactCache()
        if case .resume(let id, _) = start { try await verifyAhead(id, artifacts: artifacts) }
        let clusterLock = try session.clusterLease(store: store)
        let fleet = try await session.fleet(for: reading)
        let transport = ProtocolAgentTransport(fleet: fleet, artifacts: artifacts,
                                               backups: StoreBackupCatalog(store: store, config: session.config,
                                                                           stateDirectory: session.stateDirectory))
        let view = ProgressPrinter(mode: isatty(STDOUT_FILENO) == 1 ? .terminal : .lines)
        let gates = try GateSession(session: session, fleet: fleet)
        // With `maintenance.suspendFlux`, maintenance mode is switched on and off by the runtime
        // under the rollout's lock; it needs the API, so a recovery (the API down) goes without.
        let maintenance = session.config.maintenance.suspendFlux && live
            ? RolloutMaintenance(session.maintenanceMode(store: store, say: { view.say($0) }), by: OperatorIdentity.name(initiator),
                                 say: { view.say($0) })
            : nil
        let runtime = RolloutRuntime(store: store, transport: transport, observer: session.observer, lock: clusterLock, heldLock: heldLock,
                                     gates: gates.reader,
                                     bracket: maintenance,
                                     configuration: RuntimeConfiguration(initiator: initiator, forceTakeover: forceTakeover),
                                     updates: { view.show($0) })
        // The rollout the post-update validation is recorded on.
        let subject: String? = switch start {
        case .new(let engine, _): engine.rolloutID
        case .resume(let id, _): id ?? (try? store.unfinishedRollout())?.id
        case .restore(let id): id
        }
        let result: RunResult
        do {
            switch start {
            case .new(let engine, let kind):
                view.say("\(engine.restoreSummary == nil ? "rollout" : "recovery") \(engine.rolloutID) starts: \(engine.headline)")
                result = try await runtime.start(engine, as: kind)
            case .resume(let id, let ignoreWindow):
                view.say("resuming \(id ?? "the unfinished rollout")" + (ignoreWindow ? " outside the maintenance windows (--ignore-window)" : ""))
                let windows = ignoreWindow ? nil : session.config.rollout.maintenanceWindows
                result = try await runtime.resume(rolloutID: id, windows: .some(windows))
            case .restore(let id):
                view.say("rolling back rollout \(id) by restoring its datastore snapshot")
                result = try await runtime.restore(rolloutID: id)
            }
        } catch {
            await gates.close()
            switch error {
            case .notOpened(_, let reason): throw maintenance?.failure ?? CommandFailure(code: RolloutExitCode.state, message: reason)
            case .store(.leaseHeld), .store(.leaseLost), .lock(.held), .lockLost:
                throw CommandFailure(code: RolloutExitCode.leaseHeld, message: error.description)
            case .lock(.unreachable), .lock(.refused): throw CommandFailure(code: RolloutExitCode.unreachable, message: error.description)
            case .store(.nothingToResume), .store(.rolloutFinished), .store(.unknownRollout):
                throw CommandFailure(code: RolloutExitCode.usage, message: error.description)
            case .store(.restoreRefused), .store(.unfinishedRollout):
                throw CommandFailure(code: RolloutExitCode.refused, message: error.description)
            case .store: throw CommandFailure(code: RolloutExitCode.state, message: error.description)
            case .alreadyRunning, .stalled, .cancelled: throw CommandFailure(code: RolloutExitCode.blocked, message: error.description)
            }
        }
        await gates.close()
        if let failure = maintenance?.failure { throw failure }
        switch result {
        case .finished(.completed):
            view.say("done: every node runs its target version")
            // A recovery ran with the API down: its checks would only find it down.
            guard live, validates else { return RolloutExitCode.done }
            return await PostUpdateValidation.run(session: session, store: store, what: "the rollout", subject: subject, by: initiator) { view.say($0) }
        case .restored(let cause):
            view.say("done: \(cause)")
            return RolloutExitCode.done
        case .finished(.rolledBack(let cause)):
            view.say("failed and rolled back: \(cause)")
            return RolloutExitCode.failedRolledBack
        case .finished(.failed(let cause)):
            view.say("failed, not rolled back: \(cause); `upkeep status` shows where each node is")
            return RolloutExitCode.failedNotRolledBack
        case .finished(.abandoned(let reason)):
            // Another command gave it up while this one was starting (it holds the lease now).
            view.say("abandoned: \(reason)")
            return RolloutExitCode.failedNotRolledBack
        case .blocked(let reason):
            view.say("blocked: \(reason); fix it, then run `upkeep resume`")
            return RolloutExitCode.blocked
        }
    }

    /// Before a resume lets the engine cordon another node: every binary it will still install,
    /// fetched and verified, as `apply` does before a new rollout. A failure leaves the rollout
    /// as it was (exit 7).
    private func verifyAhead(_ id: String?, artifacts: ArtifactCache) async throws {
        guard let id = try id ?? storeCall({ try store.unfinishedRollout()?.id }),
              let engine = try? store.engine(rolloutID: id) else { return } // the runtime says what is wrong with the id
        let keys = engine.artifactsAhead.map { ArtifactCache.Key(version: $0.version, arch: $0.arch) }
        do { try await artifacts.prefetch(keys) } catch {
            throw CommandFailure(code: RolloutExitCode.artifact, message: "\(error); rollout \(id) was not resumed and no node was touched")
        }
    }

    /// A rollout id from the wall clock that `store` does not hold yet: `r20261128-174501`, or
    /// `r20261128-174501-2`, `-3`, … for rollouts created within one second (an apply right
    /// after a refused one and `upkeep abandon`), which otherwise collided with "already exists".
    static func newRolloutID(unusedIn store: StateStore, now: Date = Date()) -> String {
        let base = newRolloutID(now: now)
        var id = base
        var suffix = 1
        while suffix < 1000, (try? store.rollout(id: id)) != nil {
            suffix += 1
            id = "\(base)-\(suffix)"
        }
        return id
    }

    /// A rollout id from the wall clock: `r20261128-174501`.
    static func newRolloutID(now: Date = Date()) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? calendar.timeZone
        let parts = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: now)
        return String(format: "r%04d%02d%02d-%02d%02d%02d", parts.year ?? 0, parts.month ?? 0, parts.day ?? 0,
                      parts.hour ?? 0, parts.minute ?? 0, parts.second ?? 0)
    }
}

/// Writes the progress board to stdout as runtime updates arrive (from any task).
final class ProgressPrinter: Sendable {
    private let board: Mutex<(board: ProgressBoard, moves: [MoveProgress])>

    init(mode: ProgressBoard.Mode) {
        board = Mutex((ProgressBoard(mode: mode, started: Date()), []))
    }

    func show(_ update: RuntimeUpdate) {
        let text: String = board.withLock { state in
            switch update {
            case .moves(let moves, _):
                state.moves = moves
                return state.board.update(moves, at: Date())
            case .notice(let notice, _):
                return state.board.notice(notice, at: Date(), moves: state.moves)
            case .agentProgress(let node, _, let line):
                // On a terminal the table shows each node's phase; per-pod lines would only scroll it away.
                guard state.board.mode == .lines else { return "" }
                return state.board.notice(Notice(.info, node: node, line), at: Date(), moves: state.moves)
            case .warning(let message):
                return state.board.notice(Notice(.warning, message), at: Date(), moves: state.moves)
            }
        }
        write(text)
    }

    func say(_ line: String) {
        write("\(ProgressBoard.timestamp(Date())) \(line)\n")
    }

    private func write(_ text: String) {
        guard !text.isEmpty else { return }
        fflush(nil)  // what `print` buffered (the plan) comes first
        FileHandle.standardOutput.write(Data(text.utf8))
    }
}
