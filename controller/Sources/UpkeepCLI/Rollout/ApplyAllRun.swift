import Foundation
import Synchronization
import UpkeepCore
import UpkeepPOSIX
import UpkeepRollout
import UpkeepRuntime
import UpkeepStore
import UpkeepUpdates

/// What a stage of `upkeep apply --all` hands the command it runs as (`Apply.applyPlanned`,
/// `Update.perform`).
struct SetStageHooks: Sendable {
    /// The set's lock, held around every stage: a stage neither takes nor gives it back.
    var lock: OperationLock
    /// Told the id of the rollout or update the stage runs as, once it exists and before it
    /// changes anything.
    var started: @Sendable (String) throws -> Void
}

/// The set's record as it is written after every change (the stage's id included), so a kill
/// at any moment leaves the stage it was in named.
final class SetLedger: Sendable {
    private let store: StateStore
    private let record: Mutex<UpdateSetRecord>

    init(_ record: UpdateSetRecord, store: StateStore) {
        self.store = store
        self.record = Mutex(record)
    }

    var current: UpdateSetRecord { record.withLock { $0 } }

    func update(_ change: (inout UpdateSetRecord) -> Void) throws {
        let changed = record.withLock { record in
            change(&record)
            return record
        }
        try storeCall { try store.saveUpdateSet(changed) }
    }
}

/// `upkeep apply --all`: one plan over k3s, Longhorn and Flux in the order the compatibility
/// table allows (`UpdateSetOrder`), run stage by stage under one lock as one set in the state
/// database; it stops at the first stage that does not succeed, which is undone as its own
/// command undoes it (k3s's rollback, Flux's revert, Longhorn's fail-forward), and the stages
/// after it are recorded as not run. An interrupted set is carried on by the next run.
struct ApplyAllRun {
    let session: ClusterSession
    let store: StateStore
    let target: TargetOptions
    let change: ChangeOptions
    let compatibility: CompatibilityChoice
    var initiator = Initiator.current()

    func say(_ line: String) {
        fflush(nil)
        FileHandle.standardOutput.write(Data("\(ProgressBoard.timestamp(Date())) \(line)\n".utf8))
    }

    func run() async throws -> Int32 {
        if let unfinished = try storeCall({ try store.unfinishedUpdateSet() }) {
            print("set \(unfinished.id) (upkeep apply --all) has not finished: \(unfinished.stageSummary)")
            print(Self.stagesText(unfinished))
            if change.dryRun {
                print("dry run: a run carries set \(unfinished.id) on with the stages not done; nothing was changed")
                return RolloutExitCode.done
            }
            return try await underLock(unfinished.id) { lock in try await stages(of: unfinished.id, lock: lock) }
        }
        if let rollout = try storeCall({ try store.unfinishedRollout() }) {
            throw CommandFailure(code: RolloutExitCode.refused,
                                 message: "refused: rollout \(rollout.id) to \(rollout.target) has not finished (\(rollout.outcomeText)); "
                                     + "`upkeep resume` carries it on, then run `upkeep apply --all`; nothing was changed")
        }
        if let update = try storeCall({ try store.unfinishedComponentUpdates() }).first {
            throw CommandFailure(code: RolloutExitCode.refused,
                                 message: "refused: update \(update.id) (\(update.component) \(update.from) → \(update.to)) has not finished; "
                                     + "`upkeep update --component \(update.component) --to \(update.to)` carries it on; nothing was changed")
        }
        if !change.forceTakeover { try await session.refuseIfLeaseHeld(store: store) }
        guard let set = try await plan() else { return RolloutExitCode.done }
        _ = try WindowCheck(command: "apply --all", ignoredMeans: ", and every stage goes on outside them",
                            closingMeans: "; a stage not started by then is refused, a rollout's wave waits for the next opening")
            .beforeStart(session.config.rollout.maintenanceWindows, ignoreWindow: change.ignoreWindow, dryRun: change.dryRun, now: .wallClockNow())
        if change.dryRun {
            print("dry run: the order holds; each stage runs its own checks at its turn (`upkeep apply --dry-run`, "
                  + "`upkeep update --dry-run` show them); nothing was changed")
            return RolloutExitCode.done
        }
        if !change.yes { try Apply.confirm("y") }
        return try await underLock(set.id) { lock in
            // Recorded under the lock: a start refused by another holder leaves no set behind.
            try storeCall { try store.saveUpdateSet(set) }
            return try await stages(of: set.id, lock: lock)
        }
    }

    /// The set's lock (the state directory's lease and the cluster Lease), held from before the
    /// first stage to after the last: no other operation of any controller runs between stages.
    private func underLock(_ id: String, _ body: (OperationLock) async throws -> Int32) async throws -> Int32 {
        let lock = OperationLock(store: store, cluster: try session.clusterLease(store: store),
                                 configuration: RuntimeConfiguration(initiator: initiator, forceTakeover: change.forceTakeover))
        return try await lock.holding("apply --all \(id)", untouched: "nothing was changed", say: say) { try await body(lock) }
    }

    // MARK: - Running

    /// Runs the stages of set `id` not done yet, in order, under `lock`; stops at the first that
    /// does not succeed. Returns the exit code: that stage's, or the validation's at the end.
    private func stages(of id: String, lock: OperationLock) async throws -> Int32 {
        // Another process may have finished it before this one took the lock.
        guard let record = try storeCall({ try store.updateSet(id: id) }), record.outcome == .running else {
            say("set \(id) has finished meanwhile (`upkeep history \(id)`)")
            return RolloutExitCode.done
        }
        let ledger = SetLedger(record, store: store)
        for index in record.stages.indices {
            let stage = ledger.current.stages[index]
            let title = "stage \(index + 1) of \(record.stages.count), \(Component(rawValue: stage.component)?.title ?? stage.component) "
                + "\(stage.from) → \(stage.to)"
            switch stage.state {
            case .done:
                continue
            case .failed, .notRun:
                // Recorded failed but the set not closed (a kill in between): close it now.
                return try stop(ledger, at: index, code: stage.exitCode ?? RolloutExitCode.failedNotRolledBack, message: stage.message)
            case .running:
                switch try interrupted(stage, set: id) {
                case .rerun:
                    say("\(title) was interrupted; carrying it on")
                case .ended(let code, let message):
                    say("\(title) was interrupted and has ended meanwhile: \(message)")
                    guard code == RolloutExitCode.done else { return try stop(ledger, at: index, code: code, message: message) }
                    try ledger.update { $0.stages[index].state = .done; $0.stages[index].finishedAt = .wallClockNow(); $0.stages[index].exitCode = code }
                    continue
                }
            case .pending:
                say("\(title) starts: \(stage.why)")
            }
            // Lost between stages (its renewal failed, another controller took it): nothing more is
            // started; the set stays unfinished and the next `apply --all` carries it on.
            if let lost = lock.loss() {
                throw CommandFailure(code: RolloutExitCode.leaseHeld, message: "\(lost); set \(id) stopped before its stage \(index + 1), "
                                         + "which did not start; `upkeep apply --all` carries the set on")
            }
            try ledger.update { set in
                set.stages[index].state = .running
                if set.stages[index].startedAt == nil { set.stages[index].startedAt = .wallClockNow() }
            }
            let hooks = SetStageHooks(lock: lock) { ref in try ledger.update { $0.stages[index].ref = ref } }
            let (code, message) = await run(stage, hooks: hooks)
            guard code == RolloutExitCode.done else { return try stop(ledger, at: index, code: code, message: message) }
            try ledger.update { set in
                set.stages[index].state = .done
                set.stages[index].finishedAt = .wallClockNow()
                set.stages[index].exitCode = code
            }
            say("\(title): done")
        }
        try ledger.update { set in
            set.outcome = .completed
            set.finishedAt = .wallClockNow()
            set.message = "every stage done"
        }
        say("set \(id) done: " + ledger.current.stages.map { "\(Component(rawValue: $0.component)?.title ?? $0.component) \($0.to)" }
            .joined(separator: ", "))
        return await PostUpdateValidation.run(session: session, store: store, what: "set \(id)", subject: id, by: initiator) { say($0) }
    }

    /// Runs one stage as `upkeep apply` or `upkeep update` would, under the set's lock; its exit
    /// code and, when it did not succeed, why.
    private func run(_ stage: UpdateSetRecord.Stage, hooks: SetStageHooks) async -> (Int32, String) {
        do {
            let to = try K3sVersion(stage.to)
            var options = change
            options.yes = true  // the set was confirmed as a whole
            let code: Int32
            if stage.component == Component.k3s.rawValue {
                code = try await Apply.applyPlanned(session: session, store: store, change: options, target: to, initiator: initiator,
                                                    compatibility: compatibility, stage: hooks) {
                    try await session.plan(target, target: to, compatibilityFile: compatibility.file)
                }
            } else {
                var request = GitOpsRequest(component: stage.component, to: stage.to, longhornTarget: LonghornVersion(stage.to),
                                            confirmed: true, ignoreWindow: change.ignoreWindow, forceTakeover: change.forceTakeover,
                                            longhorn: session.config.longhorn, compatibility: compatibility)
                if stage.component != Component.longhorn.rawValue { request.longhornTarget = nil }
                request.initiator = initiator
                code = try await Update.perform(request, session: session, store: store, windows: session.config.rollout.maintenanceWindows,
                                                stage: hooks)
            }
            return (code, code == RolloutExitCode.done ? "" : "exit \(code) (`upkeep history` shows the stage's own record)")
        } catch let failure as CommandFailure {
            say("error: \(failure.message)")
            return (failure.code, failure.message)
        } catch {
            say("error: \(error)")
            return (RolloutExitCode.failedNotRolledBack, "\(error)")
        }
    }

    /// How a stage the set's process left running stands, from its own record.
    enum Interrupted: Equatable {
        /// Not started, or its update is carried on by running the stage again.
        case rerun
        case ended(code: Int32, message: String)
    }

    private func interrupted(_ stage: UpdateSetRecord.Stage, set id: String) throws -> Interrupted {
        guard let ref = stage.ref else { return .rerun }
        if stage.component == Component.k3s.rawValue {
            let record: RolloutRecord
            do { record = try store.rollout(id: ref).record } catch { return .rerun }
            switch record.outcome {
            case nil:
                throw CommandFailure(code: RolloutExitCode.refused,
                                     message: "refused: set \(id) stopped in its k3s stage: rollout \(ref) has not finished (\(record.outcomeText)); "
                                         + "`upkeep resume` carries it on, then `upkeep apply --all` carries the set on; nothing was changed")
            case .completed?: return .ended(code: RolloutExitCode.done, message: "rollout \(ref) completed")
            case .rolledBack?: return .ended(code: RolloutExitCode.failedRolledBack, message: "rollout \(ref): \(record.outcomeText)")
            case .failed?, .abandoned?: return .ended(code: RolloutExitCode.failedNotRolledBack, message: "rollout \(ref): \(record.outcomeText)")
            }
        }
        guard let update = try storeCall({ try store.componentUpdates(limit: 50) }).first(where: { $0.id == ref }) else { return .rerun }
        let text = "update \(ref): \(update.outcome.rawValue)" + (update.message.isEmpty ? "" : " (\(update.message))")
        switch update.outcome {
        case .running: return .rerun
        case .completed: return .ended(code: RolloutExitCode.done, message: text)
        case .reverted: return .ended(code: RolloutExitCode.failedRolledBack, message: text)
        case .failed, .failedForward: return .ended(code: RolloutExitCode.failedNotRolledBack, message: text)
        }
    }

    /// Records stage `index` failed with `code`, every later stage not run and the set failed;
    /// says what stays and what to do. Returns `code`.
    private func stop(_ ledger: SetLedger, at index: Int, code: Int32, message: String) throws -> Int32 {
        try ledger.update { set in
            set.stages[index].state = .failed
            set.stages[index].exitCode = code
            set.stages[index].finishedAt = set.stages[index].finishedAt ?? .wallClockNow()
            if set.stages[index].message.isEmpty { set.stages[index].message = message }
            for later in set.stages.indices where later > index { set.stages[later].state = .notRun }
            set.outcome = .failed
            set.finishedAt = .wallClockNow()
            set.message = "stopped at stage \(index + 1) (\(set.stages[index].component)), exit \(code)"
        }
        let set = ledger.current
        let stage = set.stages[index]
        let undone = switch (stage.component, code) {
        case (_, RolloutExitCode.failedRolledBack):
            stage.component == Component.k3s.rawValue ? "it was rolled back" : "its commit was reverted"
        case (_, RolloutExitCode.refused), (_, RolloutExitCode.usage), (_, RolloutExitCode.leaseHeld), (_, RolloutExitCode.artifact):
            "it changed nothing"
        case (_, RolloutExitCode.blocked):
            "it is blocked: fix it, then `upkeep resume`; `upkeep apply --all` then runs a new set for what is left"
        default:
            stage.component == Component.longhorn.rawValue
                ? "it was not undone (Longhorn supports no downgrade once its manager moved, or the revert did not finish): `upkeep history --updates`"
                : "it was not fully undone: `upkeep status` and `upkeep history --updates` show where it stands"
        }
        say("set \(set.id) stopped at stage \(index + 1) (\(stage.component) \(stage.from) → \(stage.to)): \(undone)")
        let earlier = set.stages.prefix(index).filter { $0.state == .done }
        if !earlier.isEmpty {
            say("earlier stages stay: " + earlier.map { "\($0.component) \($0.to)" }.joined(separator: ", ")
                + " (each is a release the compatibility table allows with what runs)")
        }
        let notRun = set.stages.suffix(from: index + 1)
        if !notRun.isEmpty {
            say("not run: " + notRun.map { "\($0.component) \($0.to)" }.joined(separator: ", ")
                + "; once the cause is fixed, `upkeep apply --all` plans them again")
        }
        return code
    }

    // MARK: - Planning

    /// Every component's change and its place; nil (having said so) when everything is current.
    /// Throws the refusal when the table allows no order and the operator did not override it.
    func plan() async throws -> UpdateSetRecord? {
        let installed = try await CompatibilityGate.installed(session)
        let version = try await session.resolveTarget(to: target.to, channel: target.channel)
        let planned = try await session.plan(target, target: version, compatibilityFile: compatibility.file)
        var k3s: SetChange?
        if planned.plan.waves.isEmpty {
            print("k3s: every node already runs \(version); no stage")
        } else {
            guard planned.blockingAgents.isEmpty else {
                print(planned.table(), terminator: "")
                throw CommandFailure(code: RolloutExitCode.refused, message: "refused: the agents of "
                                         + "\(planned.blockingAgents.map(\.node).joined(separator: ", ")) are not fit (see above); nothing was changed")
            }
            let oldest = installed.k3s.oldest ?? version
            k3s = SetChange(component: .k3s, from: oldest, to: version, hops: planned.plan.hops.map(\.version))
        }
        var changes: [SetChange] = []
        var running: [Component: K3sVersion] = [:]
        for (component, state) in [(Component.longhorn, installed.longhorn), (.flux, installed.flux)] {
            guard let state, state.state == .installed, let from = state.version else {
                print("\(component.title): not installed (or its version unreadable); no stage")
                continue
            }
            running[component] = from
            let releases = try await session.availableVersions(of: component, includePreReleases: false, oldestInstalled: from)
            if let to = Self.nextVersion(component, installed: from, releases: releases) {
                changes.append(SetChange(component: component, from: from, to: to))
            } else {
                print("\(component.title): \(from) is current; no stage")
            }
        }
        let changed = Set(planned.plan.waves.flatMap(\.nodes))
        let nodesNow = installed.k3s.nodes.compactMap { node in node.version.map { (name: node.name, kubernetes: $0.minorLine) } }
        let nodesAfter = installed.k3s.nodes.compactMap { node in
            node.version.map { (name: node.name, kubernetes: k3s != nil && changed.contains(node.name) ? version.minorLine : $0.minorLine) }
        }
        let table = try await CompatibilityGate.table(session, file: compatibility.file)
        let ordering = UpdateSetOrder.order(k3s: k3s, changes: changes, installed: running, nodesNow: nodesNow, nodesAfter: nodesAfter, table: table)
        guard !ordering.stages.isEmpty else {
            print("nothing to do: k3s, Longhorn and Flux are current")
            return nil
        }
        let id = RolloutDriver.newRolloutID().replacingOccurrences(of: "r", with: "s", options: .anchored)
        let set = UpdateSetRecord(id: id, createdAt: .wallClockNow(), stages: ordering.stages.map { stage in
            UpdateSetRecord.Stage(component: stage.change.component.rawValue, from: stage.change.from.description, to: stage.change.to.description,
                                  why: stage.why)
        }, by: initiator)
        print("apply --all: \(set.stages.count) stage\(set.stages.count == 1 ? "" : "s"), in this order (set \(id)):")
        print(Self.stagesText(set))
        for refusal in ordering.refusals {
            guard compatibility.ignore else {
                throw CommandFailure(code: RolloutExitCode.refused, message: "refused: \(refusal); nothing was changed")
            }
            print("warning: \(refusal) (--ignore-compatibility: each refused stage asks its target typed at its turn)")
        }
        return set
    }

    /// Longhorn: the next step, one minor at a time (https://longhorn.io/docs/latest/deploy/upgrade/),
    /// as `serve` takes it; Flux: the newest v2 release, as `upkeep check` shows it. Pre-releases
    /// never; nil when the installed one is current.
    static func nextVersion(_ component: Component, installed: K3sVersion, releases: [K3sVersion]) -> K3sVersion? {
        switch component {
        case .longhorn:
            if case .step(let version) = AutomationDecider.gitOpsTarget(installed: installed, releases: releases, pinned: nil, scope: .minor) {
                return version
            }
            return nil
        case .flux:
            return releases.filter { !$0.isPreRelease && $0.major == 2 && $0 > installed }.max()
        case .k3s:
            return nil
        }
    }

    /// One line a stage: `  1. longhorn v1.7.2 → v1.8.0: done (u…): why`.
    static func stagesText(_ set: UpdateSetRecord) -> String {
        set.stages.enumerated().map { index, stage in
            let title = Component(rawValue: stage.component)?.title ?? stage.component
            var line = "  \(index + 1). \(title) \(stage.from) → \(stage.to)"
            if stage.state != .pending { line += ": \(stage.state.rawValue)" + (stage.ref.map { " (\($0))" } ?? "") }
            line += " — \(stage.why)"
            if !stage.message.isEmpty { line += "\n     \(stage.message)" }
            return line
        }.joined(separator: "\n")
    }
}
