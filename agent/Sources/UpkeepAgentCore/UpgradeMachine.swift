import UpkeepCore

/// The agent's upgrade sequence as a pure state machine: install (keep the live binary, place the
/// staged one, restart, wait for health, else revert), the watchdog after a healthy install,
/// commit, rollback, the steps of a datastore restore (stop k3s; restore or rejoin with a staged
/// binary), the operation-id ledger, and recovery from the journal at start.
///
/// A verdict on a k3s version (an install `reverted`) comes only from a failed probe of that
/// version; an agent restart is never one. Recovery probes an install whose new binary is live
/// again, with a fresh deadline, and records anything it cannot finish as `interrupted`.
///
/// It takes events and returns actions; it never reads the clock, the disk or the network. The
/// shell persists each `persist` record durably before performing anything after it, performs at
/// most one effect at a time, and feeds the effect's result back. Everything recovery needs is in
/// the journal records the machine emits, so a shell killed at any point restarts, folds the
/// journal into a `JournalState`, and sends `.recover`.
///
/// Times are `Instant`s on the shell's wall clock (Unix milliseconds), so a watchdog deadline
/// recorded before a restart still means the same moment after it.
public struct UpgradeMachine: Sendable {
    public private(set) var journal: JournalState
    private let settings: Settings
    private var recovered = false
    /// What the live path holds, as far as the machine knows (from events and its own placements).
    private var live: LiveBinary?
    private var run: Run?
    private var lastToken: UInt64 = 0
    private var now = Instant(milliseconds: 0)
    private var output: [Action] = []

    public init(journal: JournalState, settings: Settings = Settings()) {
        self.journal = journal
        self.settings = settings
    }

    /// When the shell must send `.tick` (the watchdog deadline), if anything waits for time.
    public var nextWake: Instant? {
        guard recovered, run == nil, let watch = journal.watch, !watch.reverting else { return nil }
        return watch.deadline
    }

    /// True while an install, rollback or watchdog check runs.
    public var isBusy: Bool { run != nil }

    public mutating func handle(_ event: Event, now: Instant) -> [Action] {
        self.now = now
        output = []
        switch event {
        case .recover(let live): recover(live: live)
        case .install(let command, let live): install(command, live: live)
        case .rollback(let command, let live): rollback(command, live: live)
        case .commit(let command): commit(command)
        case .stopK3s(let id): stopK3s(id)
        case .restore(let command, let live):
            changeDatastore(command.operationID, .restore, fingerprint: command.fingerprint, target: command.target,
                            change: .restore(sha256: command.backupSHA256, format: command.format), images: command.images,
                            healthTimeoutMs: command.healthTimeoutMs, live: live)
        case .rejoin(let command, let live):
            changeDatastore(command.operationID, .rejoin, fingerprint: command.fingerprint, target: command.target,
                            change: .clear, images: command.images, healthTimeoutMs: command.healthTimeoutMs, live: live)
        case .begin(let id, let kind, let fingerprint): beginShellOperation(id, kind: kind, fingerprint: fingerprint)
        case .finish(let id, let outcome): finishShellOperation(id, outcome)
        case .completed(let token, let result): completed(token: token, result)
        case .noteCordon(let wasUnschedulable):
            if journal.cordonWasUnschedulable == nil { persist(.cordonNoted(wasUnschedulable: wasUnschedulable)) }
        case .clearCordon:
            if journal.cordonWasUnschedulable != nil { persist(.cordonCleared) }
        case .tick: break
        }
        startWatchCheckIfDue()
        return output
    }

    // MARK: - Requests

    private mutating func install(_ command: InstallCommand, live: LiveBinary?) {
        let id = command.operationID
        guard admit(id, kind: .install, fingerprint: command.fingerprint) else { return }
        if let watch = journal.watch {
            return reject(.conflict, "install \(watch.installID) of \(watch.installed) waits for commit; commit it or roll back before installing again")
        }
        guard let live else {
            return reject(.conflict, "the live k3s binary cannot be read, so it cannot be kept for a revert; check the node by hand")
        }
        self.live = live
        if live.sha256 == command.target.sha256 {
            let plan = SwapPlan(target: command.target, replaced: live, restore: nil,
                                healthTimeoutMs: command.healthTimeoutMs, watchdogTimeoutMs: nil)
            persist(.began(OperationEntry(id: id, kind: .install, fingerprint: command.fingerprint, startedAt: now, plan: plan)))
            start(Run(purpose: .alreadyLive(id), steps: [.probe], target: command.target, healthTimeoutMs: command.healthTimeoutMs))
            return
        }
        let restore = BinaryRef(sha256: live.sha256, k3sVersion: live.k3sVersion, store: .previous)
        let plan = SwapPlan(target: command.target, replaced: live, restore: restore,
                            healthTimeoutMs: command.healthTimeoutMs, watchdogTimeoutMs: command.watchdogTimeoutMs, images: command.images)
        persist(.began(OperationEntry(id: id, kind: .install, fingerprint: command.fingerprint, startedAt: now, plan: plan)))
        // An air-gapped node's images go in before the binary, so a live new binary always has its images.
        let images: [Run.Step] = command.images == nil ? [] : [.keepImages, .placeImages]
        start(Run(purpose: .install(id), steps: [.keepPrevious] + images + [.place, .restart, .probe], target: command.target,
                  healthTimeoutMs: command.healthTimeoutMs))
    }

    private mutating func rollback(_ command: RollbackCommand, live: LiveBinary?) {
        let id = command.operationID
        guard admit(id, kind: .rollback, fingerprint: command.fingerprint, interruptingWatchCheck: true) else { return }
        guard let target = command.target ?? journal.previous else {
            return reject(.notFound, "no previous k3s binary is kept on this node (no install has replaced one); name a staged binary to roll back to")
        }
        if let refusal = minorRollbackRefusal(from: live, to: target) { return reject(.conflict, refusal) }
        if let watch = journal.watch {
            if case .watchCheck = run?.purpose { run = nil }
            persist(.watchEnded(installID: watch.installID, .rolledBack(operationID: id)))
        }
        self.live = live
        let plan = SwapPlan(target: target, replaced: live, restore: nil, healthTimeoutMs: command.healthTimeoutMs, watchdogTimeoutMs: nil)
        persist(.began(OperationEntry(id: id, kind: .rollback, fingerprint: command.fingerprint, startedAt: now, plan: plan)))
        start(Run(purpose: .rollback(id, interrupted: false), steps: target.store == .previous ? putBackSteps : [.place, .restart, .probe],
                  target: target, healthTimeoutMs: command.healthTimeoutMs))
    }

    private mutating func commit(_ command: CommitCommand) {
        let id = command.operationID
        let installID = command.installOperationID
        guard admit(id, kind: .commit, fingerprint: command.fingerprint, interruptingWatchCheck: true, exclusive: false) else { return }
        if let install = journal.operation(installID), install.kind == .install, install.isRunning {
            return reject(.busy, "install \(installID) is still running; commit it after it answered")
        }
        persist(.began(OperationEntry(id: id, kind: .commit, fingerprint: command.fingerprint, startedAt: now, plan: nil)))
        if let watch = journal.watch, watch.installID == installID {
            if watch.reverting {
                return finish(id, .failed(.conflict, "the watchdog found install \(installID) unhealthy at its deadline and is reverting it"))
            }
            if case .watchCheck = run?.purpose { run = nil }
            persist(.watchEnded(installID: installID, .committed(operationID: id)))
            return finish(id, OperationOutcome(state: .succeeded, message: "committed \(watch.installed)",
                                               body: .commit(CommitReport(k3sVersion: watch.installed.k3sVersion))))
        }
        guard let install = journal.operation(installID), install.kind == .install, let installOutcome = install.outcome else {
            return finish(id, .failed(.notFound, "no install with operation id \(installID) is known on this node (the journal keeps the last \(JournalState.finishedOperationsMax) operations)"))
        }
        let version = install.plan?.target.k3sVersion
        switch install.watchEnd {
        case .committed(let by)?:
            finish(id, OperationOutcome(state: .succeeded, message: "install \(installID) was already committed by \(by)",
                                        body: .commit(CommitReport(k3sVersion: version))))
        case .keptHealthy?:
            finish(id, OperationOutcome(state: .succeeded, message: "the watchdog kept install \(installID): the node was healthy at the deadline",
                                        body: .commit(CommitReport(k3sVersion: version))))
        case .reverted(_, _, let message)?:
            finish(id, .failed(.conflict, "the watchdog reverted install \(installID) at its deadline: \(message)"))
        case .keptUnhealthy(_, let message)?:
            finish(id, .failed(.conflict, message))
        case .rolledBack(let by)?:
            finish(id, .failed(.conflict, "install \(installID) was rolled back by \(by)"))
        case .superseded(let by, let kind)?:
            finish(id, .failed(.conflict, "install \(installID) was ended by \(kind.rawValue) \(by)"))
        case nil:
            if installOutcome.state == .succeeded {
                finish(id, OperationOutcome(state: .succeeded, message: "install \(installID) needed no watch (the binary was already live)",
                                            body: .commit(CommitReport(k3sVersion: version))))
            } else {
                finish(id, .failed(.conflict, "install \(installID) did not install: \(installOutcome.message)"))
            }
        }
    }

    /// Why a server may not go from `live` to `target` by binaries (nil: it may): an older
    /// Kubernetes minor, once the live one has been healthy, needs the datastore of that minor
    /// restored with it (https://docs.k3s.io/upgrades/roll-back).
    private func minorRollbackRefusal(from live: LiveBinary?, to target: BinaryRef) -> String? {
        guard settings.role == .server, let live, let from = Self.minor(live.k3sVersion), let to = Self.minor(target.k3sVersion),
              to < from, journal.wasHealthy(live.sha256) else { return nil }
        return "rolling this server back from \(live.k3sVersion ?? from.description) to \(target.k3sVersion ?? to.description) crosses "
            + "a Kubernetes minor after \(from) has been healthy, so the datastore may already be at \(from); the old binary needs "
            + "the datastore snapshot taken on \(to) restored with it (https://docs.k3s.io/upgrades/roll-back). "
            + "Run `upkeep rollback --restore`, or fix forward"
    }

    static func minor(_ version: String?) -> MinorLine? {
        guard let version, let parsed = try? K3sVersion(version) else { return nil }
        return parsed.minorLine
    }

    /// A server whose watch ends unhealthy stays at the new version when going back would cross
    /// a minor: the message says so and what to do.
    private func keepsAcrossMinor(_ watch: WatchRecord) -> Bool {
        guard settings.role == .server, let from = Self.minor(watch.installed.k3sVersion), let to = Self.minor(watch.restore.k3sVersion) else {
            return false
        }
        return to < from
    }

    // MARK: - Stop, restore, rejoin

    private mutating func stopK3s(_ id: String) {
        guard admit(id, kind: .stopK3s, fingerprint: "stopK3s", interruptingWatchCheck: true) else { return }
        persist(.began(OperationEntry(id: id, kind: .stopK3s, fingerprint: "stopK3s", startedAt: now, plan: nil)))
        endWatch(by: id, .stopK3s)
        start(Run(purpose: .stop(id), steps: [.stop], target: nil, healthTimeoutMs: 0))
    }

    /// `restore` and `rejoin`: stop k3s, place `images` (an air-gapped node), make `target` live,
    /// change the datastore, start k3s and probe it. Nothing is reverted: a restored datastore
    /// cannot be undone by the agent. The images directory is not kept aside first: what an
    /// install kept there stays paired with the binary that install kept.
    private mutating func changeDatastore(_ id: String, _ kind: OperationKind, fingerprint: String, target: BinaryRef,
                                          change: DatastoreChange, images: ImagesRef?, healthTimeoutMs: Int64, live: LiveBinary?) {
        guard admit(id, kind: kind, fingerprint: fingerprint, interruptingWatchCheck: true) else { return }
        guard settings.role == .server else {
            return reject(.conflict, "\(kind.rawValue) is for servers, which hold the datastore; this node is an agent, roll it back with `rollback`")
        }
        self.live = live
        let plan = SwapPlan(target: target, replaced: live, restore: nil, healthTimeoutMs: healthTimeoutMs, watchdogTimeoutMs: nil,
                            datastore: change, images: images)
        persist(.began(OperationEntry(id: id, kind: kind, fingerprint: fingerprint, startedAt: now, plan: plan)))
        endWatch(by: id, kind)
        start(Run(purpose: .datastore(id, kind), steps: Self.datastoreSteps(plan, changed: false), target: target,
                  healthTimeoutMs: healthTimeoutMs))
    }

    /// What is left of a restore or rejoin: everything until the datastore changed (doing it again
    /// is safe, k3s is stopped first; placing the images again too), afterwards only starting and
    /// probing k3s.
    private static func datastoreSteps(_ plan: SwapPlan, changed: Bool) -> [Run.Step] {
        guard let change = plan.datastore else { preconditionFailure("a datastore change without its plan") }
        var steps: [Run.Step] = changed ? [] : [.stop] + (plan.images == nil ? [] : [.placeImages]) + [.place, .changeDatastore]
        if case .restore = change { steps.append(.removeRestoreFile) }
        return steps + [.restart, .probe]
    }

    /// An operation that stops k3s or changes its binary or datastore ends the watch of an install
    /// (and any check of it that runs): what it watched is no longer what runs.
    private mutating func endWatch(by id: String, _ kind: OperationKind) {
        guard let watch = journal.watch else { return }
        if case .watchCheck = run?.purpose { run = nil }
        persist(.watchEnded(installID: watch.installID, .superseded(operationID: id, kind: kind)))
    }

    /// Records a shell operation (stage, cordon, drain, uncordon, backup) as begun: the shell does
    /// its work and reports the outcome with `.finish`; the machine only keeps the ledger.
    private mutating func beginShellOperation(_ id: String, kind: OperationKind, fingerprint: String) {
        precondition(![.install, .rollback, .commit, .stopK3s, .restore, .rejoin].contains(kind), "\(kind) has its own event")
        guard admit(id, kind: kind, fingerprint: fingerprint, exclusive: false) else { return }
        persist(.began(OperationEntry(id: id, kind: kind, fingerprint: fingerprint, startedAt: now, plan: nil)))
        output.append(.proceed(operationID: id))
    }

    private mutating func finishShellOperation(_ id: String, _ outcome: OperationOutcome) {
        guard let entry = journal.operation(id), entry.isRunning, entry.plan == nil, entry.kind != .commit else {
            preconditionFailure("finish for \(id), which is not a running shell operation")
        }
        finish(id, outcome)
    }

    /// The ledger and exclusion rules every mutating request passes. Returns false when the
    /// request was answered (replay, refusal) or joins a running operation of the same id.
    private mutating func admit(_ id: String, kind: OperationKind, fingerprint: String,
                                interruptingWatchCheck: Bool = false, exclusive: Bool = true) -> Bool {
        guard recovered else {
            reject(.busy, "the agent is starting and resolving its journal; retry shortly")
            return false
        }
        if let entry = journal.operation(id) {
            if entry.kind != kind || entry.fingerprint != fingerprint {
                reject(.conflict, "operation id \(id) was already used for another request (\(entry.fingerprint)); use a new id")
            } else if let outcome = entry.outcome {
                output.append(.reply(operationID: id, outcome))
            }
            return false
        }
        guard exclusive, let run else { return true }
        if interruptingWatchCheck, case .watchCheck = run.purpose { return true }
        reject(.busy, "\(run.purpose) is running; retry when it has finished")
        return false
    }

    // MARK: - Recovery

    private mutating func recover(live: LiveBinary?) {
        precondition(!recovered, "recover is the first event, sent once")
        recovered = true
        self.live = live
        for entry in journal.running {
            switch entry.kind {
            case .install: recoverInstall(entry, live: live)
            case .rollback:
                guard let plan = entry.plan else { preconditionFailure("rollback \(entry.id) without a plan") }
                let toPrevious = plan.target.store == .previous
                start(Run(purpose: .rollback(entry.id, interrupted: true), steps: toPrevious ? putBackSteps : [.place, .restart, .probe],
                          target: plan.target, healthTimeoutMs: plan.healthTimeoutMs))
            case .commit:
                // A commit has no effects: its records either all landed or the watch is unchanged.
                finish(entry.id, .failed(.interrupted, "the agent restarted during this commit; send it again with a new operation id"))
            case .stopK3s:
                // Stopping again is harmless and gives the answer.
                start(Run(purpose: .stop(entry.id), steps: [.stop], target: nil, healthTimeoutMs: 0))
            case .restore, .rejoin:
                guard let plan = entry.plan, plan.datastore != nil else { preconditionFailure("\(entry.kind) \(entry.id) without a plan") }
                start(Run(purpose: .datastore(entry.id, entry.kind), steps: Self.datastoreSteps(plan, changed: entry.datastoreChanged),
                          target: plan.target, healthTimeoutMs: plan.healthTimeoutMs))
            case .stage, .cordon, .drain, .uncordon, .backup, .restoreBackup:
                finish(entry.id, .failed(.interrupted, interruptedMessage(entry.kind)))
            }
        }
        if run == nil, let watch = journal.watch, watch.reverting {
            let failed = ProbeReport(checks: [ProbeReport.Check(name: "agent", ok: false, latencyMs: 0, message: "the agent restarted while the watchdog reverted")])
            start(Run(purpose: .watchRevert(watch.installID, failed: failed), steps: putBackSteps, target: watch.restore,
                      healthTimeoutMs: watch.healthTimeoutMs))
        }
    }

    /// Putting the kept previous binary back: with its images first on an air-gapped node.
    private var putBackSteps: [Run.Step] {
        (journal.previousImagesKept == true ? [.restoreImages] : []) + [.place, .restart, .probe]
    }

    private mutating func recoverInstall(_ entry: OperationEntry, live: LiveBinary?) {
        guard let plan = entry.plan else { preconditionFailure("install \(entry.id) without a plan") }
        if let watch = journal.watch, watch.installID == entry.id {
            // The probes had passed and the watch began; only the answer was not recorded.
            return finish(entry.id, OperationOutcome(state: .succeeded, message: "installed \(watch.installed) (recorded after an agent restart); commit before the watchdog deadline",
                                                     body: .install(InstallReport(outcome: .installed, previousK3sVersion: watch.restore.k3sVersion,
                                                                                  k3sVersion: watch.installed.k3sVersion, probe: ProbeReport(checks: []),
                                                                                  watchdogDeadline: watch.deadline))))
        }
        guard let restore = plan.restore else {
            // Only an install of the binary that was already live has no restore, and it changes nothing.
            return finish(entry.id, .failed(.interrupted, "the agent restarted while checking the already-live binary; nothing was changed; install again with a new operation id"))
        }
        if entry.reverting {
            // The new binary had failed its probes: that verdict stands; finish putting the old one back.
            let failed = entry.failedProbe ?? ProbeReport(checks: [ProbeReport.Check(
                name: "probe", ok: false, latencyMs: 0, message: "the new binary failed its probes (the report was lost with an agent restart)")])
            return start(Run(purpose: .revertInstall(entry.id, failed: failed, interrupted: false), steps: putBackSteps,
                             target: restore, healthTimeoutMs: plan.healthTimeoutMs))
        }
        if live?.sha256 == plan.target.sha256 {
            // The new binary is live: whether it is healthy is still the question. Restart k3s on it
            // (the restart may never have reached systemd) and probe with a fresh deadline.
            return start(Run(purpose: .install(entry.id), steps: [.restart, .probe], target: plan.target, healthTimeoutMs: plan.healthTimeoutMs))
        }
        let unchanged = live != nil && live?.sha256 == plan.replaced?.sha256
        if unchanged && !entry.restartIssued {
            let outcome = OperationOutcome.failed(.interrupted, "the agent restarted during this install before k3s was restarted; the live binary is unchanged (\(live?.k3sVersion ?? "unknown version")); install again with a new operation id")
            // The new images may be in place already: the kept ones go back first.
            if entry.imagesKept { return start(Run(purpose: .undoImages(entry.id, outcome), steps: [.restoreImages], target: nil, healthTimeoutMs: 0)) }
            return finish(entry.id, outcome)
        }
        // The live binary is neither the new one nor an untouched old one: put the old one back and
        // run it, but say nothing about the new version.
        start(Run(purpose: .revertInstall(entry.id, failed: ProbeReport(checks: []), interrupted: true),
                  steps: entry.imagesKept ? [.restoreImages, .place, .restart, .probe] : [.place, .restart, .probe],
                  target: restore, healthTimeoutMs: plan.healthTimeoutMs))
    }

    private func interruptedMessage(_ kind: OperationKind) -> String {
        switch kind {
        case .stage: "the agent restarted during this upload; the partial file was removed. Stage again with a new operation id"
        case .drain: "the agent restarted during this drain; the node stays cordoned. Drain again with a new operation id"
        case .cordon, .uncordon: "the agent restarted during this \(kind.rawValue); read the node's state and send it again with a new operation id"
        case .backup: "the agent restarted during this backup; take it again with a new operation id"
        case .restoreBackup: "the agent restarted during this upload; the partial file was removed. Send the backup again with a new operation id"
        case .install, .rollback, .commit, .stopK3s, .restore, .rejoin: "the agent restarted during this \(kind.rawValue)"
        }
    }

    // MARK: - Watchdog

    private mutating func startWatchCheckIfDue() {
        guard recovered, run == nil, let watch = journal.watch, !watch.reverting, now >= watch.deadline else { return }
        start(Run(purpose: .watchCheck(watch.installID), steps: [.probe], target: watch.installed, healthTimeoutMs: watch.healthTimeoutMs))
    }

    // MARK: - Running effects

    private mutating func start(_ newRun: Run) {
        precondition(run == nil, "\(newRun.purpose) started while \(run!.purpose) runs")
        var newRun = newRun
        newRun.probeDeadline = now.adding(milliseconds: newRun.healthTimeoutMs)
        run = newRun
        advance()
    }

    /// Performs the current step of the run, or concludes it when no step is left.
    private mutating func advance() {
        guard var current = run else { return }
        guard let step = current.steps.first else { preconditionFailure("advance with no step left") }
        let plan = current.purpose.operationID.flatMap { journal.operation($0)?.plan }
        let effect: Effect
        switch step {
        case .stop:
            effect = .stopUnit
        case .changeDatastore:
            guard let change = plan?.datastore else { preconditionFailure("a datastore change without its plan") }
            effect = .changeDatastore(change)
        case .removeRestoreFile:
            guard case .restore(let sha, _)? = plan?.datastore else { preconditionFailure("removing a restore file without a restore plan") }
            effect = .removeRestoreFile(sha256: sha)
        case .keepPrevious:
            guard let live else { preconditionFailure("keepPrevious without a live binary") }
            effect = .keepPrevious(live)
        case .keepImages:
            effect = .keepImages
        case .placeImages:
            guard let images = plan?.images else { preconditionFailure("placing images without a plan naming them") }
            effect = .placeImages(images)
        case .restoreImages:
            effect = .restoreImages
        case .place:
            guard let target = current.target else { preconditionFailure("place without a target") }
            if live?.sha256 == target.sha256 {
                current.steps.removeFirst()
                run = current
                return advance()
            }
            effect = .place(target)
        case .restart:
            if let id = current.purpose.operationID { persist(.step(operationID: id, .restarting)) }
            effect = .restartUnit
        case .probe:
            effect = .probe(expectedK3sVersion: current.target?.k3sVersion, notBefore: current.nextProbe ?? now)
        case .gate:
            effect = .gate(notBefore: current.nextProbe ?? now)
        }
        lastToken += 1
        current.token = lastToken
        run = current
        output.append(.perform(effect, token: lastToken))
    }

    private mutating func completed(token: UInt64, _ result: EffectResult) {
        guard var current = run, current.token == token else { return }  // an abandoned effect
        let step = current.steps.removeFirst()
        switch (step, result) {
        case (.keepPrevious, .done):
            guard let live else { preconditionFailure("keepPrevious without a live binary") }
            let kept = BinaryRef(sha256: live.sha256, k3sVersion: live.k3sVersion, store: .previous)
            persist(.previousKept(kept))
            if let id = current.purpose.operationID { persist(.step(operationID: id, .previousKept)) }
        case (.place, .done):
            guard let target = current.target else { preconditionFailure("place without a target") }
            live = LiveBinary(sha256: target.sha256, k3sVersion: target.k3sVersion)
            if let id = current.purpose.operationID { persist(.step(operationID: id, .placed(sha256: target.sha256))) }
        case (.stop, .stopped(let wasActive)):
            if case .stop(let id) = current.purpose {
                run = nil
                return finish(id, OperationOutcome(state: .succeeded, message: wasActive ? "stopped k3s" : "k3s was not running",
                                                   body: .stopK3s(StopReport(wasActive: wasActive))))
            }
        case (.stop, .failed(let message)):
            if case .stop(let id) = current.purpose {
                run = nil
                return finish(id, .failed(.conflict, "k3s did not stop: \(message); look at the unit (systemctl status) and send stopK3s again with a new operation id"))
            }
            return conclude(current, .failed("k3s did not stop: \(message)", .conflict))
        case (.changeDatastore, .done):
            if let id = current.purpose.operationID { persist(.step(operationID: id, .datastoreChanged)) }
        case (.changeDatastore, .failed(let message)):
            return conclude(current, .failed(message, .io))
        case (.removeRestoreFile, _):
            break  // a file left behind is removed by the retention sweep
        case (.restart, .done):
            current.probeDeadline = now.adding(milliseconds: current.healthTimeoutMs)
            // Full probe rounds only once k3s shows a sign of life.
            current.steps.insert(.gate, at: 0)
            current.nextProbe = nil
        case (.restart, .failed(let message)):
            let report = ProbeReport(checks: [ProbeReport.Check(name: "restart", ok: false, latencyMs: 0, message: message)])
            return conclude(current, .unhealthy(report))
        case (.gate, .probed(let report)):
            let next = now.adding(milliseconds: settings.gateIntervalMs)
            if report.healthy || next > current.probeDeadline {
                current.nextProbe = nil  // the full round (at the deadline: the report of what failed)
            } else {
                current.steps.insert(.gate, at: 0)
                current.nextProbe = next
            }
        case (.probe, .probed(let report)):
            if report.healthy { return conclude(current, .healthy(report)) }
            let next = now.adding(milliseconds: settings.probeIntervalMs)
            if next > current.probeDeadline { return conclude(current, .unhealthy(report)) }
            current.steps.insert(.probe, at: 0)
            current.nextProbe = next
        case (.keepImages, .done):
            if let id = current.purpose.operationID { persist(.step(operationID: id, .imagesKept)) }
        case (.placeImages, .done):
            break
        case (.restoreImages, .done):
            if case .undoImages(let id, let outcome) = current.purpose {
                run = nil
                return finish(id, outcome.adding(" The images directory holds the kept images tarballs again."))
            }
        case (.restoreImages, .failed(let message)):
            if case .undoImages(let id, let outcome) = current.purpose {
                run = nil
                return finish(id, outcome.adding(" Putting the kept images tarballs back failed (\(message)): copy them from the agent's previous-images/ directory into k3s's agent/images/ by hand."))
            }
            return conclude(current, .failed("putting the kept images tarballs back failed: \(message)", .io))
        case (.keepPrevious, .failed(let message)), (.place, .failed(let message)), (.keepImages, .failed(let message)),
             (.placeImages, .failed(let message)):
            return conclude(current, .failed(message, .io))
        default:
            preconditionFailure("\(result) does not answer \(step)")
        }
        if current.steps.isEmpty { preconditionFailure("run \(current.purpose) ended without probing") }
        run = current
        advance()
    }

    private enum Ending {
        case healthy(ProbeReport)
        case unhealthy(ProbeReport)
        /// Keeping or placing a binary, stopping k3s or changing the datastore failed; nothing was
        /// restarted by this step.
        case failed(String, FailureCode)
    }

    private mutating func conclude(_ finished: Run, _ ending: Ending) {
        run = nil
        guard let target = finished.target else { preconditionFailure("\(finished.purpose) concluded without a target") }
        switch finished.purpose {
        case .install(let id):
            concludeInstall(id, target, ending)
        case .revertInstall(let id, let failedProbe, let interrupted):
            concludeRevert(id, failedProbe: failedProbe, interrupted: interrupted, restored: target, ending)
        case .stop:
            preconditionFailure("a stop concludes when it stopped")
        case .undoImages:
            preconditionFailure("an undo of images concludes when they are back")
        case .datastore(let id, let kind):
            concludeDatastore(id, kind, target, ending)
        case .rollback(let id, let interrupted):
            let prefix = interrupted ? "finished after an agent restart: " : ""
            switch ending {
            case .healthy(let report):
                finish(id, OperationOutcome(state: .succeeded, message: "\(prefix)rolled back to \(target)",
                                            body: .rollback(RollbackReport(k3sVersion: target.k3sVersion, probe: report))))
            case .unhealthy(let report):
                finish(id, .failed(.unhealthy, "\(prefix)rolled back to \(target) but it is not healthy: \(report)",
                                   body: .rollback(RollbackReport(k3sVersion: target.k3sVersion, probe: report))))
            case .failed(let message, _):
                finish(id, .failed(.io, "could not put \(target) in place: \(message); the live binary is \(live.map(describe) ?? "unknown")"))
            }
        case .alreadyLive(let id):
            switch ending {
            case .healthy(let report):
                finish(id, OperationOutcome(state: .succeeded, message: "\(target) was already live and is healthy; nothing was changed",
                                            body: .install(InstallReport(outcome: .installed, previousK3sVersion: target.k3sVersion,
                                                                         k3sVersion: target.k3sVersion, probe: report, watchdogDeadline: nil))))
            case .unhealthy(let report):
                finish(id, .failed(.unhealthy, "\(target) is already live but not healthy: \(report); nothing was changed"))
            case .failed(let message, _):
                preconditionFailure("an already-live install changes no file (\(message))")
            }
        case .watchCheck(let installID):
            guard let watch = journal.watch, watch.installID == installID else { return }
            switch ending {
            case .healthy(let report):
                persist(.watchEnded(installID: installID, .keptHealthy(report)))
            case .unhealthy(let report) where keepsAcrossMinor(watch):
                let message = "the watchdog found install \(installID) of \(watch.installed) unhealthy at its deadline (\(report)) and left it: "
                    + "going back to \(watch.restore) by binaries would cross a Kubernetes minor on a server whose datastore the new "
                    + "version has used (https://docs.k3s.io/upgrades/roll-back). Fix forward, or restore the datastore snapshot taken "
                    + "before the upgrade with `upkeep rollback --restore`"
                persist(.watchEnded(installID: installID, .keptUnhealthy(failed: report, message: message)))
            case .unhealthy(let report):
                persist(.watchReverting(installID: installID))
                start(Run(purpose: .watchRevert(installID, failed: report), steps: putBackSteps, target: watch.restore,
                          healthTimeoutMs: watch.healthTimeoutMs))
            case .failed(let message, _):
                preconditionFailure("a watchdog check changes no file (\(message))")
            }
        case .watchRevert(let installID, let failedProbe):
            switch ending {
            case .healthy(let report):
                persist(.watchEnded(installID: installID, .reverted(failed: failedProbe, restored: report,
                                                                   message: "unhealthy at the watchdog deadline (\(failedProbe)); \(target) restored and healthy")))
            case .unhealthy(let report):
                persist(.watchEnded(installID: installID, .reverted(failed: failedProbe, restored: report,
                                                                   message: "unhealthy at the watchdog deadline (\(failedProbe)); \(target) restored but not healthy either: \(report)")))
            case .failed(let message, _):
                persist(.watchEnded(installID: installID, .reverted(failed: failedProbe, restored: nil,
                                                                   message: "unhealthy at the watchdog deadline (\(failedProbe)); could not restore \(target): \(message)")))
            }
        }
    }

    private mutating func concludeInstall(_ id: String, _ target: BinaryRef, _ ending: Ending) {
        guard let plan = journal.operation(id)?.plan, let restore = plan.restore else { preconditionFailure("install \(id) without a restore plan") }
        switch ending {
        case .healthy(let report):
            let deadline = now.adding(milliseconds: plan.watchdogTimeoutMs ?? 0)
            persist(.watchStarted(WatchRecord(installID: id, installed: target, restore: restore,
                                              deadline: deadline, healthTimeoutMs: plan.healthTimeoutMs)))
            finish(id, OperationOutcome(state: .succeeded, message: "installed \(target); commit before the watchdog deadline",
                                        body: .install(InstallReport(outcome: .installed, previousK3sVersion: restore.k3sVersion,
                                                                     k3sVersion: target.k3sVersion, probe: report,
                                                                     watchdogDeadline: deadline))))
        case .unhealthy(let report):
            // The verdict is recorded before anything is undone, so a revert finished after an
            // agent restart reports the same probe.
            persist(.step(operationID: id, .probeFailed(report)))
            persist(.step(operationID: id, .reverting))
            start(Run(purpose: .revertInstall(id, failed: report, interrupted: false), steps: putBackSteps, target: restore,
                      healthTimeoutMs: plan.healthTimeoutMs))
        case .failed(let message, _):
            let outcome = OperationOutcome.failed(.io, "\(message); the live binary was not changed (\(plan.replaced.map(describe) ?? "unknown"))")
            if journal.operation(id)?.imagesKept == true {
                return start(Run(purpose: .undoImages(id, outcome), steps: [.restoreImages], target: nil, healthTimeoutMs: 0))
            }
            finish(id, outcome)
        }
    }

    /// Ends an install's revert. Only a revert that followed a failed probe of the new binary is a
    /// verdict (`reverted`); one an agent restart forced is `interrupted`, whatever ran after it.
    private mutating func concludeRevert(_ id: String, failedProbe: ProbeReport, interrupted: Bool, restored: BinaryRef, _ ending: Ending) {
        let target = journal.operation(id)?.plan?.target
        if interrupted {
            let how = switch ending {
            case .healthy: "restored \(restored), which is healthy"
            case .unhealthy(let probe): "restored \(restored), which is not healthy: \(probe)"
            case .failed(let message, _): "could not restore \(restored) (\(message)); the live binary is \(live.map(describe) ?? "unknown"), restore it by hand from the agent's previous/ directory"
            }
            return finish(id, .failed(.interrupted, "the agent restarted during this install and found neither the new binary nor the untouched previous one live; "
                                      + "\(how). Nothing is known about \(target.map { "\($0)" } ?? "the new binary"): install again with a new operation id"))
        }
        let why = "\(target.map { "\($0)" } ?? "the new binary") did not become healthy (\(failedProbe))"
        func report(_ probe: ProbeReport?) -> OperationOutcome.Body {
            .install(InstallReport(outcome: .reverted, previousK3sVersion: restored.k3sVersion, k3sVersion: restored.k3sVersion,
                                   probe: failedProbe, revertProbe: probe, watchdogDeadline: nil))
        }
        switch ending {
        case .healthy(let probe):
            finish(id, OperationOutcome(state: .reverted, message: "\(why); restored \(restored), which is healthy", body: report(probe)))
        case .unhealthy(let probe):
            finish(id, OperationOutcome(state: .reverted, message: "\(why); restored \(restored), but it is not healthy either: \(probe)", body: report(probe)))
        case .failed(let message, _):
            finish(id, .failed(.io, "\(why); restoring \(restored) failed: \(message). The live binary is \(live.map(describe) ?? "unknown"); restore it by hand from the agent's previous/ directory"))
        }
    }

    /// Ends a restore or rejoin. Nothing is undone: once the datastore changed, only going forward
    /// (k3s healthy on it) makes sense, and the message says what to look at.
    private mutating func concludeDatastore(_ id: String, _ kind: OperationKind, _ target: BinaryRef, _ ending: Ending) {
        let changed = journal.operation(id)?.datastoreChanged ?? false
        let what = kind == .restore ? "restored the datastore" : "cleared server/db to rejoin"
        switch ending {
        case .healthy(let report):
            finish(id, OperationOutcome(state: .succeeded, message: "\(what); k3s \(target) is healthy",
                                        body: .restore(RestoreReport(k3sVersion: target.k3sVersion, probe: report))))
        case .unhealthy(let report):
            finish(id, .failed(.unhealthy, "\(what) and started k3s \(target), but it did not become healthy within the deadline: \(report). "
                               + "Look at the k3s unit's log on this node; the datastore is not changed back",
                               body: .restore(RestoreReport(k3sVersion: target.k3sVersion, probe: report))))
        case .failed(let message, let code):
            let state = changed ? "the datastore was changed" : "the datastore was not changed"
            finish(id, .failed(code, "\(kind.rawValue) stopped: \(message); \(state), k3s stays stopped. Fix the cause and send \(kind.rawValue) again with a new operation id"))
        }
    }

    // MARK: - Output

    private mutating func persist(_ record: JournalRecord) {
        journal.apply(record)
        output.append(.persist(record))
    }

    private mutating func finish(_ id: String, _ outcome: OperationOutcome) {
        persist(.finished(operationID: id, outcome, at: now))
        output.append(.reply(operationID: id, outcome))
    }

    private mutating func reject(_ code: Rejection.Code, _ message: String) {
        output.append(.reject(Rejection(code, message)))
    }

    private func describe(_ live: LiveBinary) -> String { "\(live.k3sVersion ?? "unknown version") (\(live.sha256.prefix(12)))" }
}

/// An install, revert, rollback, stop, restore, rejoin or watchdog check in progress: its
/// remaining steps.
private struct Run: Sendable {
    enum Purpose: Sendable, CustomStringConvertible {
        case install(String)
        case revertInstall(String, failed: ProbeReport, interrupted: Bool)
        case rollback(String, interrupted: Bool)
        case alreadyLive(String)
        case watchCheck(String)
        case watchRevert(String, failed: ProbeReport)
        case stop(String)
        /// A restore or a rejoin.
        case datastore(String, OperationKind)
        /// An install that ends without its new binary (interrupted before the restart, or a file
        /// step failed) after the images were kept: the kept images go back, then `outcome`.
        case undoImages(String, OperationOutcome)

        /// The journal operation whose steps this run records; nil for the watchdog.
        var operationID: String? {
            switch self {
            case .install(let id), .revertInstall(let id, _, _), .rollback(let id, _), .alreadyLive(let id), .stop(let id),
                 .datastore(let id, _), .undoImages(let id, _): id
            case .watchCheck, .watchRevert: nil
            }
        }

        var description: String {
            switch self {
            case .install(let id), .alreadyLive(let id): "install \(id)"
            case .revertInstall(let id, _, _): "the revert of install \(id)"
            case .rollback(let id, _): "rollback \(id)"
            case .watchCheck(let id): "the watchdog check of install \(id)"
            case .watchRevert(let id, _): "the watchdog revert of install \(id)"
            case .stop(let id): "stopK3s \(id)"
            case .datastore(let id, let kind): "\(kind.rawValue) \(id)"
            case .undoImages(let id, _): "putting the images of install \(id) back"
            }
        }
    }

    /// `gate` comes in after a restart: quick looks until k3s shows a sign of life, then `probe`.
    enum Step: Sendable { case keepPrevious, keepImages, placeImages, place, restoreImages, restart, gate, probe, stop, changeDatastore, removeRestoreFile }

    var purpose: Purpose
    var steps: [Step]
    /// The binary this run makes live, whose version the probes expect; nil for a stop.
    var target: BinaryRef?
    var healthTimeoutMs: Int64
    var probeDeadline = Instant(milliseconds: 0)
    /// When the next gate look or probe round may run.
    var nextProbe: Instant?
    var token: UInt64 = 0
}
