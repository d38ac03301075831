import ArgumentParser
import Foundation
import Logging
import UpkeepCore
import UpkeepFleet
import UpkeepHTTP
import UpkeepKube
import UpkeepPOSIX
import UpkeepRollout
import UpkeepRuntime
import UpkeepStore
import UpkeepUpdates

/// The bounds and failures of `upkeep serve`'s loop, counted and logged at most once a minute
/// each (`upkeep_serve_limits_total`).
enum ServeLimit: String, CaseIterable, Hashable, Sendable {
    /// An update check failed; the next comes after a backoff.
    case checkFailed = "check_failed"
    /// A rollout serve started or resumed ended other than done (failed, blocked, refused).
    case rolloutNotDone = "rollout_not_done"
    /// A Longhorn or Flux update serve started ended other than done (reverted, failed, refused).
    case updateNotDone = "update_not_done"
    /// The state database could not be read to decide.
    case stateUnreadable = "state_unreadable"
}

/// `upkeep serve`'s controller loop: gathers the facts (the last check, the state database's
/// unfinished rollout, history and lease, the windows), asks `AutomationDecider`, and does what
/// it says: a check (CheckRun, ETag-cheap, `update.available` once per version), a rollout
/// (`Apply.applyPlanned`, the code path of `upkeep apply`: same engine, persistence, lock and
/// notifications), a resume (`Resume.carryOn`, as `upkeep resume`), a Longhorn or Flux update
/// (`Update.perform`, the code path of `upkeep update`: same commit, lock and record), or a
/// bounded sleep.
/// Every decision is published on `board` for `/v1/status`.
actor ControllerLoop {
    let config: ControllerConfig
    let policy: AutomationPolicy
    let store: StateStore
    let board: ServeBoard
    let limits: LimitLog<ServeLimit>
    private var checks = CheckHistoryFacts()
    private var seen: SeenVersions?
    private var lastWait: WaitReason?
    /// Who the operations this loop starts are recorded as started by (`history`, `report`).
    let initiator: Initiator
    /// Starts refused in a row (nothing touched); backed off like failed checks.
    private var refusals = 0

    /// The longest one wait lasts before deciding again: a rollout started by `apply`, a lock
    /// given back or a window opened is noticed within it.
    static let wakeSecondsMax: Int64 = 30
    /// History read for earlier failed targets.
    static let historyRead = 50

    init(config: ControllerConfig, policy: AutomationPolicy, store: StateStore, board: ServeBoard, logger: Logger = Logger(label: "upkeep.serve")) {
        self.config = config
        self.policy = policy
        self.store = store
        self.board = board
        initiator = .serve(user: Initiator.current().user, host: RuntimeConfiguration.hostName(), policy: policy.description)
        limits = LimitLog(logger: logger, counted: { [board] limit in board.counted(limit) })
    }

    /// Decides and acts until the task is cancelled.
    func run() async {
        let gitOps = GitOpsComponent.allCases.filter { policy[$0].scope != .none }.map { policy.description(of: $0) }
        say("controller loop: \(([policy.description] + gitOps).joined(separator: ", ")), checks every \(policy.checkIntervalSeconds) s"
            + (config.rollout.maintenanceWindows.map { ", windows \($0.listed)" } ?? ", no maintenance windows (any time)"))
        while !Task.isCancelled {
            await step()
        }
    }

    /// One decision and what it asks for.
    func step() async {
        let now = Instant.wallClockNow()
        var facts: AutomationFacts
        do {
            facts = try self.facts(now: now)
            if facts.lock == .free { facts.lock = await clusterLock(now: now) }
        } catch {
            limits.record(.stateUnreadable, "serve: cannot read the state database to decide: \(error); trying again in \(Self.wakeSecondsMax) s")
            await sleep(until: now.adding(seconds: Int(Self.wakeSecondsMax)), now: now)
            return
        }
        let decision = AutomationDecider.decide(facts, policy: policy, now: now)
        board.decided(decision, facts: facts, at: now)
        switch decision {
        case .check:
            await check()
        case .start(let target):
            lastWait = nil
            say("starting a rollout to \(target) (\(policy))")
            board.driving("new rollout to \(target)")
            await drive("rollout to \(target)") { session in
                let options = try TargetOptions.parse(["--to", target.description])
                return try await Apply.applyPlanned(session: session, store: self.store, change: try ChangeOptions.parse(["--yes"]), target: target,
                                                    initiator: self.initiator) {
                    try await session.plan(options, target: target)
                }
            }
        case .resume(let id):
            lastWait = nil
            say("carrying rollout \(id) on (\(policy))")
            board.driving(id)
            await drive("rollout \(id)") { session in
                try await Resume.carryOn(session: session, store: self.store, id: id, forceTakeover: false, ignoreWindow: false,
                                         initiator: self.initiator)
            }
        case .update(let component, let target):
            lastWait = nil
            let what = "\(component.rawValue) update to \(target)"
            say("updating \(component.title) to \(target) through Git (\(policy.description(of: component)))")
            board.driving(what)
            var made = GitOpsRequest(component: component.rawValue, to: target.description, confirmed: true)
            made.longhornTarget = component == .longhorn ? LonghornVersion(target.description) : nil
            made.initiator = .serve(user: initiator.user, host: initiator.host, policy: policy.description(of: component))
            let request = made
            let windows = config.rollout.maintenanceWindows
            await drive(what, limit: .updateNotDone) { session in
                try await Update.perform(request, session: session, store: self.store, windows: windows)
            }
        case .wait(let until, let reason):
            if reason != lastWait {
                say("waiting until \(until.utcDescription): \(reason)")
                lastWait = reason
            }
            await sleep(until: until, now: now)
        }
    }

    /// What the loop knows now.
    private func facts(now: Instant) throws(StoreError) -> AutomationFacts {
        let unfinished = try store.unfinishedRollout().map {
            UnfinishedRolloutFacts(id: $0.id, target: $0.target, state: UnfinishedRolloutFacts.State($0.status))
        }
        var lock = LockFacts.free
        if let lease = try store.currentLease(), lease.expiresAt > now {
            lock = .heldElsewhere(holder: lease.holder, expires: lease.expiresAt)
        }
        var failed: [K3sVersion: String] = [:]
        for record in try store.history(limit: Self.historyRead) {
            switch record.outcome {
            case .rolledBack, .failed, .abandoned: if failed[record.target] == nil { failed[record.target] = record.id }
            case .completed, nil: break
            }
        }
        return AutomationFacts(checks: checks, seen: seen, unfinished: unfinished, lock: lock, windows: config.rollout.maintenanceWindows,
                               failedTargets: failed, failedUpdates: Self.failedUpdates(try store.componentUpdates(limit: Self.historyRead)),
                               unfinishedUpdate: Self.unfinishedUpdate(try store.unfinishedComponentUpdates()))
    }

    /// The newest update still recorded as running (carried on by `Update.perform` when the lock is free).
    static func unfinishedUpdate(_ records: [ComponentUpdateRecord]) -> UnfinishedUpdateFacts? {
        records.lazy.compactMap { record -> UnfinishedUpdateFacts? in
            guard record.outcome == .running, let component = GitOpsComponent(rawValue: record.component),
                  let target = try? K3sVersion(record.to) else { return nil }
            return UnfinishedUpdateFacts(id: record.id, component: component, target: target)
        }.first
    }

    /// Longhorn and Flux versions whose update reached the repository and failed (reverted, or
    /// the revert not through), newest record first. One that never got pushed changed nothing
    /// and is not held against its version: such a start backs off as a refused one does.
    static func failedUpdates(_ records: [ComponentUpdateRecord]) -> [GitOpsTarget: String] {
        var failed: [GitOpsTarget: String] = [:]
        for record in records {
            guard record.outcome == .reverted || record.outcome == .failed, let component = GitOpsComponent(rawValue: record.component),
                  let version = try? K3sVersion(record.to) else { continue }
            if record.outcome == .failed, record.message.hasPrefix(GitOpsUpdate.notPushedPrefix) || record.message.hasPrefix(GitOpsUpdate.pushFailedPrefix) {
                continue
            }
            let key = GitOpsTarget(component: component, version: version)
            if failed[key] == nil { failed[key] = record.id }
        }
        return failed
    }

    /// The cluster Lease when another controller holds it live (`kube-system/upkeep`, read with a
    /// client of its own, each request bounded); free when this controller holds it or it cannot
    /// be read: a start takes it first and is refused then (exit 6).
    private func clusterLock(now: Instant) async -> LockFacts {
        let access = ClusterLeaseAccess.standalone(config, store: store)
        guard let lease = access.lease else { return .free }
        let spec = try? await lease.observe()?.spec
        await access.client?.shutdown()
        guard let spec, let holder = spec.holderIdentity, LeaseElection.Candidate.controllerID(of: holder) != lease.controllerID,
              LeaseElection.isLive(spec, at: now) else { return .free }
        return .heldElsewhere(holder: holder, expires: LeaseElection.expiry(of: spec))
    }

    /// Reads the cluster's versions and the releases (conditional requests: an unchanged list
    /// costs a 304), records the check (history, `update.available` once per version).
    private func check() async {
        let channel: String = switch policy.goal {
        case .channel(let name): name
        case .pinned: "stable"
        }
        let now = { Instant.wallClockNow() }
        do {
            let options = try CheckOptions.parse(["--channel", channel])
            let result = await CheckRun(config: config, options: options, components: [.k3s, .longhorn, .flux], format: .table, notifications: store,
                                        echo: false).run()
            guard let report = result.report, let k3s = report.components.first(where: { $0.component == .k3s }) else {
                throw ServeCheckError(result.failure ?? "the check gave no k3s report")
            }
            guard let installed = k3s.installed.version else { throw ServeCheckError("no node's k3s version could be read") }
            let goal: K3sVersion
            switch policy.goal {
            case .pinned(let version): goal = version
            case .channel(let name):
                guard let target = k3s.target else { throw ServeCheckError("the channel server names no version for channel \(name)") }
                goal = target
            }
            // Longhorn and Flux where installed and their version read exactly (Flux's inferred
            // from images tells no patch): the releases to step through.
            let gitOps: [(GitOpsComponent, Component)] = [(.longhorn, .longhorn), (.flux, .flux)]
            let read = gitOps.compactMap { component, name -> (GitOpsComponent, Component, K3sVersion)? in
                guard let installed = report.component(name)?.installed, installed.state == .installed, installed.exact,
                      let version = installed.version else { return nil }
                return (component, name, version)
            }
            let policy = self.policy
            let (releases, components) = try await ClusterSession.with(config) { session in
                let k3s = try await session.availableVersions(includePreReleases: false, oldestInstalled: installed)
                var seen: [GitOpsComponent: SeenComponent] = [:]
                let wanted = read.filter { policy[$0.0].scope != .none }
                // The Kubernetes each release needs, as `upkeep check` reads it (a mirror's
                // compatibility.json replaces the built-in entries it names).
                let table = wanted.isEmpty ? CompatibilityTable.builtIn : try await Self.compatibility(session)
                for (component, name, version) in wanted {
                    let available = try await session.availableVersions(of: name, includePreReleases: false, oldestInstalled: version)
                    let needs = available.reduce(into: [K3sVersion: MinorLine]()) { needs, release in
                        needs[release] = table.entry(for: name, release)?.kubernetesMin
                    }
                    seen[component] = SeenComponent(installed: version, releases: available, kubernetesMin: needs)
                }
                return (k3s, seen)
            }
            seen = SeenVersions(installed: installed, releases: releases, goal: goal, gitOps: components)
            if checks.failures > 0 { say("update check works again after \(checks.failures) failure\(checks.failures == 1 ? "" : "s")") }
            checks = CheckHistoryFacts(lastSuccessAt: now())
            board.checked(ok: true, seen: seen, checks: checks)
        } catch {
            let text = (error as? CommandFailure)?.message ?? "\(error)"
            checks.failures += 1
            checks.lastFailureAt = now()
            checks.lastError = text
            let next = AutomationDecider.nextCheckAt(checks, policy: policy, now: now())
            limits.record(.checkFailed, "serve: update check failed (\(checks.failures) in a row): \(text); next try at \(next.utcDescription)")
            board.checked(ok: false, seen: seen, checks: checks)
        }
    }

    /// The built-in compatibility table with the release source's entries over it, as a check reads it.
    static func compatibility(_ session: ClusterSession) async throws -> CompatibilityTable {
        do {
            guard let entries = try await session.source.compatibilityEntries() else { return .builtIn }
            return CompatibilityTable.builtIn.replacing(with: entries)
        } catch {
            throw CommandFailure(code: RolloutExitCode.unreachable, message: "cannot read the compatibility entries from \(session.source): \(error)")
        }
    }

    /// Runs a rollout or a resume to its end (as the command would), then decides afresh: a
    /// check comes first, since the cluster's versions changed.
    private func drive(_ what: String, limit: ServeLimit = .rolloutNotDone, _ body: @Sendable @escaping (ClusterSession) async throws -> Int32) async {
        let code: Int32
        do {
            code = try await ClusterSession.with(config, body)
        } catch let failure as CommandFailure {
            code = failure.code
            limits.record(limit, "serve: \(what): \(failure.message) (exit \(failure.code))")
        } catch {
            code = RolloutExitCode.state
            limits.record(limit, "serve: \(what): \(error)")
        }
        if code != RolloutExitCode.done {
            let shows = limit == .updateNotDone ? "`upkeep history --updates`" : "`upkeep status`"
            limits.record(limit, "serve: \(what) ended with exit code \(code) (\(shows) shows where it is)")
        } else {
            say("\(what): done")
        }
        board.driving(nil)
        checks.lastSuccessAt = nil  // check again now: the versions moved
        guard Self.refusedBeforeStart.contains(code) else {
            refusals = 0
            return
        }
        // Refused before any node was touched (agents unfit, a binary unverifiable, the API or
        // the lock): no rollout record says so, so the loop backs off here, as from a failed
        // check, before it checks and decides again.
        refusals += 1
        let now = Instant.wallClockNow()
        let until = AutomationDecider.nextCheckAt(CheckHistoryFacts(failures: refusals, lastFailureAt: now), policy: policy, now: now)
        board.waiting(until: until, code: "start-refused", detail: "\(what) was refused \(refusals) time\(refusals == 1 ? "" : "s") in a row (exit \(code))")
        while !Task.isCancelled, Instant.wallClockNow() < until {
            await sleep(until: until, now: Instant.wallClockNow())
        }
    }

    /// Exit codes of a rollout that never started: usage, refused, lock held, artifact, unreachable, state.
    static let refusedBeforeStart: Set<Int32> = [RolloutExitCode.usage, RolloutExitCode.refused, RolloutExitCode.leaseHeld, RolloutExitCode.artifact,
                                                 RolloutExitCode.unreachable, RolloutExitCode.state]

    /// Sleeps until `until`, at most `wakeSecondsMax`; returns early when cancelled.
    private func sleep(until: Instant, now: Instant) async {
        let milliseconds = max(0, min(until.milliseconds(since: now), Self.wakeSecondsMax * 1000))
        try? await Task.sleep(nanoseconds: UInt64(max(milliseconds, 50)) * 1_000_000)
    }

    private func say(_ line: String) {
        FileHandle.standardOutput.write(Data("\(ProgressBoard.timestamp(Date())) \(line)\n".utf8))
    }
}

/// Why a check gave nothing to decide on.
struct ServeCheckError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
