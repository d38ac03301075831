import ArgumentParser
import Foundation
import UpkeepRollout
import UpkeepCore
import UpkeepFleet
import UpkeepRuntime
import UpkeepStore
import UpkeepPOSIX

/// Options of every command that changes the cluster.
struct ChangeOptions: ParsableArguments {
    @Flag(name: .long, help: "Do not ask for confirmation.")
    var yes = false

    @Flag(name: .customLong("dry-run"), help: "Plan, check every agent and fetch and verify the binaries, then stop.")
    var dryRun = false

    @Flag(name: .customLong("force-takeover"), help: "Take the controller lease even if another controller holds it (only when that one is gone).")
    var forceTakeover = false

    @Flag(name: .customLong("skip-backup"), help: "Do not take the datastore backup this rollout would take first (backups.beforeApply).")
    var skipBackup = false

    @Flag(name: .customLong("ignore-window"), help: "Start (and run) this rollout outside the maintenance windows.")
    var ignoreWindow = false
}

/// `upkeep apply`: plan, preflight (agents, binaries), confirm, then roll out.
struct Apply: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Upgrade the cluster's k3s as a health-gated rolling upgrade, with automatic rollback.",
        discussion: """
            Exit codes: 0 done (or nothing to do), 1 a node failed and the cluster was rolled back, 2 usage, \
            3 blocked (fix, then `upkeep resume`), 4 failed without a full rollback, 5 refused before touching \
            anything (also: the compatibility table refuses the target; --ignore-compatibility with the target typed, \
            or --confirm-ignore-compatibility=V, goes on and is recorded in history), 6 another controller holds the \
            lease, 7 a binary could not be fetched or verified, 8 the cluster or release source could not be read, \
            9 the state database failed, 10 done but the post-update validation found the cluster unhealthy.

            --all: one set over k3s (this command's target), Longhorn (its next minor) and Flux (its newest v2 \
            release), ordered by the compatibility table, one id in `upkeep history`; it stops at the first stage \
            that fails, which exits as its own command would (`upkeep update`'s codes for Longhorn and Flux). \
            docs/controller.md, "upkeep apply --all".
            """
    )

    @Flag(name: .long, help: "Upgrade k3s, Longhorn and Flux as one set, in the order the compatibility table allows.")
    var all = false

    @OptionGroup var configOption: ConfigOption
    @OptionGroup var target: TargetOptions
    @OptionGroup var change: ChangeOptions
    @OptionGroup(title: "Compatibility") var compatibility: CompatibilityOptions
    @OptionGroup(title: "Drain (each overrides its field of policy.drain)") var drain: DrainFlags

    func validate() throws {
        if all && target.allowDowngrade { throw ValidationError("--all only upgrades; --allow-downgrade goes with a k3s target alone") }
    }

    func run() async throws {
        var config = try configOption.load()
        drain.apply(to: &config.rollout)
        let store = try openStateStore(config)
        let code = try await NotificationRun.with(config, store: store) {
            try await ClusterSession.with(config) { session in
                if all {
                    return try await ApplyAllRun(session: session, store: store, target: target, change: change,
                                                 compatibility: compatibility.choice).run()
                }
                let version = try await session.resolveTarget(to: target.to, channel: target.channel)
                return try await Self.applyPlanned(session: session, store: store, change: change, target: version,
                                                   compatibility: compatibility.choice) {
                    try await session.plan(target, target: version, compatibilityFile: compatibility.compatibility)
                }
            }
        }
        if code != 0 { throw ExitCode(code) }
    }

    /// The part `apply` and `rollback` share: an unfinished rollout to the same target resumes;
    /// otherwise preflight, confirmation and a new rollout.
    ///
    /// The unfinished rollout is looked for before planning: a cluster in the middle of a rollout
    /// (a node cordoned, its replicas rebuilding, some nodes already at the target) is no ground
    /// for a new plan, and planning on it refuses for reasons that say nothing of the real state.
    /// `kind`: what a new rollout is recorded as (apply, or rollback for a downgrade); `initiator`:
    /// who started it (`upkeep serve` gives itself and its policy). A target the compatibility
    /// table refuses is refused unless `compatibility` ignores it, which serve never does.
    /// `stage`: when the rollout is a stage of `upkeep apply --all`, the set's lock it runs under
    /// and who is told the rollout's id before it starts.
    static func applyPlanned(session: ClusterSession, store: StateStore, change: ChangeOptions, confirmation: String? = nil,
                             target: K3sVersion, kind: OperationKind = .apply, initiator: Initiator = .current(),
                             compatibility: CompatibilityChoice = CompatibilityChoice(), stage: SetStageHooks? = nil,
                             makePlan: () async throws -> PlannedRollout) async throws -> Int32 {
        if let unfinished = try storeCall({ try store.unfinishedRollout() }) {
            guard unfinished.target == target else {
                throw CommandFailure(code: RolloutExitCode.refused,
                                     message: "rollout \(unfinished.id) to \(unfinished.target) has not finished (\(unfinished.outcomeText)); "
                                         + "run `upkeep resume` to carry it on, or `upkeep status` to see it")
            }
            print("rollout \(unfinished.id) to \(unfinished.target) has not finished; carrying it on"
                  + (change.ignoreWindow ? " outside the maintenance windows (--ignore-window)" : " within the maintenance windows of this configuration"))
            try stage?.started(unfinished.id)
            return try await RolloutDriver(session: session, store: store, forceTakeover: change.forceTakeover, initiator: initiator,
                                           heldLock: stage?.lock, validates: stage == nil)
                .run(.resume(unfinished.id, ignoreWindow: change.ignoreWindow), reading: try await session.read())
        }
        if !change.forceTakeover { try await session.refuseIfLeaseHeld(store: store) }
        let planned = try await makePlan()
        let plan = planned.plan
        print(planned.table(), terminator: "")
        guard !plan.waves.isEmpty else {
            print("nothing to do: every node already runs \(plan.target)")
            return RolloutExitCode.done
        }
        let ignoredCompatibility = try CompatibilityGate.decide(planned.compatibility, choice: compatibility, dryRun: change.dryRun,
                                                                untouched: "nothing was changed")
        let blocking = planned.blockingAgents
        guard blocking.isEmpty else {
            throw CommandFailure(code: RolloutExitCode.refused, message: "refused: the agents of \(blocking.map(\.node).joined(separator: ", ")) "
                                     + "are not fit (see above); nothing was changed")
        }
        var policy = session.config.rollout
        if let gates = policy.gates, let report = try await GateSession.look(session, reading: planned.reading) {
            print(GateSession.text(report, policy: gates, firstWave: plan.waves.first?.nodes ?? []), terminator: "")
        }
        print("drain: \((policy.drain ?? DrainPolicy()).summary); each node within \(policy.drainTimeoutSeconds) s")
        let cache = try session.artifactCache()
        let keys = Set(plan.artifacts.map { ArtifactCache.Key(version: $0.version, arch: $0.arch) })
        do {
            let fetched = try await cache.prefetch(Array(keys))
            for artifact in fetched {
                print("verified \(artifact.assetName) \(artifact.version) (\(artifact.arch.rawValue)) sha256 \(artifact.sha256.prefix(16))…"
                      + artifact.vouchedFor)
            }
        } catch {
            throw CommandFailure(code: RolloutExitCode.artifact, message: "\(error); nothing was changed")
        }
        policy.maintenanceWindows = try WindowCheck(command: "apply", ignoredMeans: ", and the rollout keeps going outside them",
                                                    closingMeans: "; a wave not started by then waits for the next opening")
            .beforeStart(policy.maintenanceWindows, ignoreWindow: change.ignoreWindow, dryRun: change.dryRun, now: .wallClockNow())
        if change.dryRun {
            print("dry run: the plan holds, every agent answers and every binary verifies; nothing was changed")
            return RolloutExitCode.done
        }
        if !change.yes {
            try confirm(confirmation ?? "y")
        }
        // A datastore backup before the first server of every hop (the first before any node is
        // touched), taken by the engine: a hop whose backup fails blocks before it touches anything.
        policy.takesHopSnapshots = session.config.backups.beforeApply && !change.skipBackup
        let engine: RolloutEngine
        let rolloutID = RolloutDriver.newRolloutID(unusedIn: store)
        do {
            engine = try RolloutEngine(rolloutID: rolloutID, plan: plan, policy: policy)
        } catch {
            throw CommandFailure(code: RolloutExitCode.usage, message: "\(error)")
        }
        if let ignoredCompatibility {
            // Recorded before the rollout starts: the decision was made here, by this operator.
            try storeCall {
                try store.recordOperation(OperationStamp(.ignoreCompatibility, by: initiator), subject: rolloutID, detail: ignoredCompatibility,
                                          now: .wallClockNow())
            }
        }
        if !policy.takesHopSnapshots {
            print("no datastore backups taken (\(change.skipBackup ? "--skip-backup" : "backups.beforeApply is false"))"
                  + (plan.hops.contains { $0.rollbackKind == .restore } ? "; a hop that raises the servers' minor cannot then be rolled back" : ""))
        }
        try stage?.started(rolloutID)
        return try await RolloutDriver(session: session, store: store, forceTakeover: change.forceTakeover, artifacts: cache, initiator: initiator,
                                       heldLock: stage?.lock, validates: stage == nil)
            .run(.new(engine, kind), reading: planned.reading)
    }

    /// Asks on the terminal; without one, refuses and says to pass `--yes`.
    static func confirm(_ expected: String) throws {
        guard isatty(STDIN_FILENO) == 1 else {
            throw CommandFailure(code: RolloutExitCode.usage, message: "not on a terminal: pass --yes to go ahead without a question")
        }
        let prompt = expected == "y" ? "Proceed? [y/N] " : "Type \(expected) to proceed: "
        FileHandle.standardOutput.write(Data(prompt.utf8))
        let answer = readLine(strippingNewline: true)?.trimmingCharacters(in: .whitespaces) ?? ""
        let accepted = expected == "y" ? ["y", "yes"].contains(answer.lowercased()) : answer == expected
        guard accepted else { throw CommandFailure(code: RolloutExitCode.refused, message: "not confirmed; nothing was changed") }
    }
}

/// Maps a store failure to the state exit code.
func storeCall<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let error as StoreError {
        throw CommandFailure(code: RolloutExitCode.state, message: error.description)
    }
}

/// `upkeep resume`: carry on the unfinished (or blocked) rollout from the database.
struct Resume: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Carry on an unfinished or blocked rollout from the state database (after a crash, or once a block is fixed).",
        discussion: "Every unanswered request is sent again with its operation id; agents answer a repeated id from their journal. "
            + "The rollout keeps the maintenance windows of the configuration it is resumed with (a change is said), or none with --ignore-window. "
            + "Exit codes as for `upkeep apply`."
    )

    @OptionGroup var configOption: ConfigOption

    @Argument(help: "The rollout id (default: the newest unfinished rollout).")
    var id: String?

    @Flag(name: .customLong("force-takeover"), help: "Take the controller lease even if another controller holds it (only when that one is gone).")
    var forceTakeover = false

    @Flag(name: .customLong("ignore-window"), help: "Carry the rollout on outside any maintenance window (else: the windows of this configuration).")
    var ignoreWindow = false

    func run() async throws {
        let config = try configOption.load()
        let store = try openStateStore(config)
        try Self.requireSomethingToResume(id, in: store)
        let code = try await NotificationRun.with(config, store: store) {
            try await ClusterSession.with(config) { session in
                try await Self.carryOn(session: session, store: store, id: id, forceTakeover: forceTakeover, ignoreWindow: ignoreWindow)
            }
        }
        if code != 0 { throw ExitCode(code) }
    }

    /// The resume `upkeep resume` and `upkeep serve` run: the agents from the live cluster, or
    /// at their last known addresses when the API cannot be read.
    static func carryOn(session: ClusterSession, store: StateStore, id: String?, forceTakeover: Bool, ignoreWindow: Bool,
                        initiator: Initiator = .current()) async throws -> Int32 {
        let (reading, live) = try await session.readOrLastKnown(store)
        return try await RolloutDriver(session: session, store: store, forceTakeover: forceTakeover, initiator: initiator)
            .run(.resume(id, ignoreWindow: ignoreWindow), reading: reading, live: live)
    }

    /// Says that there is nothing to resume before anything else is said or read (the cluster,
    /// the agents): no unfinished rollout, an unknown id, or a finished one (usage, exit 2).
    static func requireSomethingToResume(_ id: String?, in store: StateStore) throws {
        let refusal: StoreError?
        do throws(StoreError) {
            if let id {
                let record = try store.rollout(id: id).record
                if case .finished = record.status { refusal = .rolloutFinished(id: id, outcome: record.outcomeText) } else { refusal = nil }
            } else {
                refusal = try store.unfinishedRollout() == nil ? .nothingToResume : nil
            }
        } catch .unknownRollout(let unknown) {
            refusal = .unknownRollout(unknown)
        } catch {
            throw CommandFailure(code: RolloutExitCode.state, message: error.description)
        }
        if let refusal { throw CommandFailure(code: RolloutExitCode.usage, message: refusal.description) }
    }
}

/// `upkeep rollback`: return the cluster to where the last rollout found it, or plan a downgrade.
struct Rollback: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Return nodes to an earlier k3s: where the last rollout found them (--to-previous), a chosen version, or by restoring a hop's datastore snapshot (--restore).",
        discussion: """
            --to-previous and --to-version run a downgrade as a rolling rollout (servers first, one at a time, Longhorn-safe \
            batches), within the servers' Kubernetes minor only: k3s goes back a minor only with the datastore snapshot \
            taken on it (https://docs.k3s.io/upgrades/roll-back). --restore does that: it restores the snapshot Upkeep \
            took before the newest hop of the rollout and brings every node back to where that hop found it; every \
            object written to the cluster since the snapshot is lost, and the confirmation asks for the snapshot's id. \
            Exit codes as for `upkeep apply`.
            """
    )

    @OptionGroup var configOption: ConfigOption

    @Flag(name: .customLong("to-previous"), help: "Return every node the last rollout changed to the version it had before.")
    var toPrevious = false

    @Option(name: .long, help: "The component to roll back (only k3s today).")
    var component = "k3s"

    @Option(name: .customLong("to-version"), help: ArgumentHelp("Plan a downgrade to this k3s version.", valueName: "VERSION"))
    var toVersion: String?

    @Flag(name: .long, help: "Undo the newest hop of a rollout not undone yet by restoring the datastore snapshot taken before it (k3s's roll-back across a minor).")
    var restore = false

    @Argument(help: "With --restore: the rollout (default: the newest).")
    var rollout: String?

    @Option(name: .long, help: "Agents changed at once (default: policy.concurrency).")
    var concurrency: Int?

    @OptionGroup var change: ChangeOptions

    func validate() throws {
        guard component == "k3s" else {
            throw ValidationError("--component \(component): only k3s can be rolled back by upkeep; Flux and Longhorn go back through Git")
        }
        guard [toPrevious, toVersion != nil, restore].filter({ $0 }).count == 1 else {
            throw ValidationError("use exactly one of --to-previous, --to-version and --restore")
        }
        guard rollout == nil || restore else { throw ValidationError("a rollout id goes with --restore only") }
    }

    func run() async throws {
        let config = try configOption.load()
        let store = try openStateStore(config)
        if restore {
            let code = try await NotificationRun.with(config, store: store) {
                try await RestoreFlow.rollbackRestore(config: config, store: store, rolloutID: rollout, change: change)
            }
            if code != 0 { throw ExitCode(code) }
            return
        }
        let target = try toVersion.map { text in
            do { return try K3sVersion(text) } catch {
                throw CommandFailure(code: RolloutExitCode.usage, message: "--to-version \(text): \(error)")
            }
        } ?? previousVersion(store)
        var options = try TargetOptions.parse([])
        options.concurrency = concurrency
        let code = try await NotificationRun.with(config, store: store) {
            try await ClusterSession.with(config) { session in
                try await Apply.applyPlanned(session: session, store: store, change: change, confirmation: target.description, target: target,
                                             kind: .rollback) {
                    try await session.plan(options, target: target, allowDowngrade: true)
                }
            }
        }
        if code != 0 { throw ExitCode(code) }
    }

    /// The version every node the last finished rollout changed had before it.
    private func previousVersion(_ store: StateStore) throws -> K3sVersion {
        let records = try storeCall { try store.history(limit: 20) }
        guard let last = records.first(where: { $0.outcome != nil }) else {
            throw CommandFailure(code: RolloutExitCode.usage, message: "no finished rollout to go back from; use --to-version")
        }
        // A node's version before the rollout is the `from` of its first step (later hops start
        // from the versions earlier hops left).
        var before: [String: K3sVersion] = [:]
        for step in last.steps where !step.progress.isRollback && before[step.node] == nil { before[step.node] = step.progress.from }
        let changed = Set(last.steps.filter { (step: StepRecord) in !step.progress.isRollback && step.progress.stage == MoveProgress.Stage.done }
            .map(\.node))
        let froms = Set(changed.compactMap { before[$0] })
        guard let from = froms.first else {
            throw CommandFailure(code: RolloutExitCode.usage,
                                 message: "rollout \(last.id) changed no node for good (\(last.outcomeText)); nothing to go back from")
        }
        guard froms.count == 1 else {
            throw CommandFailure(code: RolloutExitCode.usage,
                                 message: "rollout \(last.id) started from several versions (\(froms.map(\.description).sorted().joined(separator: ", "))); "
                                     + "choose one with --to-version")
        }
        return from
    }
}
