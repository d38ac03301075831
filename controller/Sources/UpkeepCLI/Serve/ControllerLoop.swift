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
    /// Longhorn's or Flux's releases (or the compatibility entries) could not be read: that
    /// component waits for the next check; k3s and the other go on.
    case releasesUnread = "releases_unread"
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
    /// The connections to the agents, kept across every rollout and update this loop drives
    /// (one per agent while serve runs), with the bytes of the pki files they were made from:
    /// a renewed controller certificate or a new deny list makes a new fleet.
    private var agents: (pki: [UInt8], fleet: AgentFleet)?

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
        await agents?.fleet.close()
    }

    /// The loop's fleet for the next session: the one it has while `pki`'s files are unchanged.
    /// Nil when they cannot be read: the session then says why, as a command would.
    private func sharedAgents() async -> AgentFleet? {
        var pki: [UInt8] = []
        for path in [config.pki.ca, config.pki.certificate, config.pki.key, config.pki.revokedFile] {
            let bytes: [UInt8] = (try? Data(contentsOf: URL(fileURLWithPath: path))).map { Array($0) } ?? []
            pki += Array(path.utf8) + [0] + bytes + [0]
        }
        if let agents, agents.pki == pki { return agents.fleet }
        await agents?.fleet.close()
        agents = nil
        guard let security = try? ClusterSession.fleetSecurity(config) else { return nil }
        let fleet = AgentFleet(security: security)
        agents = (pki, fleet)
        return fleet
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
            made.longhorn = config.longhorn
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

    /// Longhorn and Flux versions whose update reached the repository and failed (reverted, the
    /// revert not through, or failed forward), newest record first. One that never got pushed changed nothing
    /// and is not held against its version: such a start backs off as a refused one does.
    static func failedUpdates(_ records: [ComponentUpdateRecord]) -> [GitOpsTarget: String] {
        var failed: [GitOpsTarget: String] = [:]
        for record in records {
            guard [.reverted, .failed, .failedForward].contains(record.outcome), let component = GitOpsComponent(rawValue: record.component),
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
            let (config, store, policy) = (self.config, self.store, self.policy)
            let gathered = try await ClusterSession.with(config) { session in
                try await Self.gather(policy: policy, check: { components in
                    await CheckRun(config: config, options: options, components: Set(components), format: .table, notifications: store, echo: false).run()
                }, nodes: { InstalledReader.k3s(nodes: try await session.kube.list(Node.self)).oldest }, releases: { component, oldest in
                    try await session.availableVersions(of: component, includePreReleases: false, oldestInstalled: oldest)
                }, compatibility: { try await Self.compatibility(session) })
            }
            for unread in gathered.unread {
                limits.record(.releasesUnread, "serve: \(unread); the other components go on, the next check tries again")
            }
            seen = gathered.seen
            if let failure = gathered.k3sFailure { throw ServeCheckError(failure) }
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

    /// What a check gathered for the decider, and what it could not read.
    struct Gathered {
        var seen: SeenVersions
        /// Longhorn's or Flux's part that could not be read, in words (left out of `seen`).
        var unread: [String]
        /// Why k3s's part could not be read (`seen.k3sUnread`): the check counts as failed.
        var k3sFailure: String?
    }

    /// Reads k3s, Longhorn and Flux for the decider, each apart from the others: `check` runs a
    /// check of the components given (CheckRun: the installed versions, history,
    /// `update.available`), first of all three; when that fails, of each alone. A Longhorn or
    /// Flux part that cannot be read (its releases, the compatibility entries) is left out of
    /// `seen` and named in `unread`, and holds neither k3s nor the other back. k3s's part unread
    /// (its releases, the channel) is `k3sFailure`: k3s holds, the others go on against the
    /// nodes' versions (`nodes`: the oldest node's); throws only when those cannot be read either.
    /// `releases` reads a component's released versions.
    static func gather(policy: AutomationPolicy, check: ([Component]) async -> (code: Int32, report: CheckReport?, failure: String?),
                       nodes: () async throws -> K3sVersion?, releases: (Component, K3sVersion) async throws -> [K3sVersion],
                       compatibility: () async throws -> CompatibilityTable) async throws -> Gathered {
        var reports: [Component: ComponentReport] = [:]
        var unread: [String] = []
        let all = await check([.k3s, .longhorn, .flux])
        var k3sFailure = all.failure
        if let report = all.report {
            for part in report.components { reports[part.component] = part }
        } else {
            for component in [Component.k3s, .longhorn, .flux] {
                let alone = await check([component])
                if let part = alone.report?.component(component) {
                    reports[component] = part
                } else if component == .k3s {
                    k3sFailure = alone.failure ?? k3sFailure
                } else if let failure = alone.failure, GitOpsComponent(rawValue: component.rawValue).map({ policy[$0].scope != .none }) == true {
                    unread.append("cannot check \(component.rawValue): \(failure)")
                }
            }
        }
        // k3s's part: unread, k3s holds (`check-failing`, retried after the backoff) while
        // Longhorn and Flux go on against the nodes' versions.
        var k3sPart: (installed: K3sVersion, releases: [K3sVersion], goal: K3sVersion)?
        do {
            guard let k3s = reports[.k3s] else { throw ServeCheckError(k3sFailure ?? "the check gave no k3s report") }
            guard let installed = k3s.installed.version else { throw ServeCheckError("no node's k3s version could be read") }
            let goal: K3sVersion
            switch policy.goal {
            case .pinned(let version): goal = version
            case .channel(let name):
                guard let target = k3s.target else { throw ServeCheckError("the channel server names no version for channel \(name)") }
                goal = target
            }
            k3sPart = (installed, try await releases(.k3s, installed), goal)
        } catch {
            k3sFailure = (error as? CommandFailure)?.message ?? "\(error)"
        }
        let read = k3sPart == nil ? try await nodes() : k3sPart?.installed
        guard let installed = read else { throw ServeCheckError(k3sFailure ?? "no node's k3s version could be read") }
        // Longhorn and Flux where installed and their version read exactly (Flux's inferred
        // from images tells no patch), and their policy lets serve update them.
        let wanted = [(GitOpsComponent.longhorn, Component.longhorn), (.flux, .flux)].compactMap { component, name -> (GitOpsComponent, Component, K3sVersion)? in
            guard policy[component].scope != .none, let installed = reports[name]?.installed, installed.state == .installed, installed.exact,
                  let version = installed.version else { return nil }
            return (component, name, version)
        }
        var seen: [GitOpsComponent: SeenComponent] = [:]
        // Longhorn and Flux as they run, whatever their policy: a k3s step is judged against them.
        let running = [(GitOpsComponent.longhorn, Component.longhorn), (.flux, .flux)].compactMap { component, name -> (GitOpsComponent, Component, K3sVersion)? in
            guard let installed = reports[name]?.installed, installed.state == .installed, let version = installed.version else { return nil }
            return (component, name, version)
        }
        // The Kubernetes each release needs, as `upkeep check` reads it (a mirror's
        // compatibility.json replaces the built-in entries it names); unread, no update is judged.
        let table: CompatibilityTable?
        do { table = wanted.isEmpty && running.isEmpty ? nil : try await compatibility() } catch {
            table = nil
            unread.append("cannot read the compatibility entries, so no Longhorn or Flux update is judged: \((error as? CommandFailure)?.message ?? "\(error)")")
        }
        var support: [GitOpsComponent: KubernetesSupport] = [:]
        for (component, name, version) in running {
            guard let entry = table?.entry(for: name, version) else { continue }
            support[component] = KubernetesSupport(installed: version, minimum: entry.kubernetesMin, maximum: entry.kubernetesMax, source: entry.source)
        }
        for (component, name, version) in wanted {
            guard let table else { break }
            do {
                let available = try await releases(name, version)
                let needs = available.reduce(into: [K3sVersion: MinorLine]()) { needs, release in
                    needs[release] = table.entry(for: name, release)?.kubernetesMin
                }
                seen[component] = SeenComponent(installed: version, releases: available, kubernetesMin: needs)
            } catch {
                unread.append((error as? CommandFailure)?.message ?? "cannot read \(name.rawValue) releases: \(error)")
            }
        }
        guard let k3sPart else {
            return Gathered(seen: SeenVersions(installed: installed, releases: [], goal: installed, gitOps: seen, k3sUnread: k3sFailure ?? "unread",
                                               kubernetesSupport: support),
                            unread: unread, k3sFailure: k3sFailure)
        }
        return Gathered(seen: SeenVersions(installed: installed, releases: k3sPart.releases, goal: k3sPart.goal, gitOps: seen,
                                           kubernetesSupport: support), unread: unread)
    }

    /// The built-in compatibility table with the release source's entries over it, as a check reads it.
    static func compatibility(_ session: ClusterSession) async throws -> CompatibilityTable {
        try await CompatibilityGate.table(session, file: nil)
    }

    /// Runs a rollout or a resume to its end (as the command would), then decides afresh: a
    /// check comes first, since the cluster's versions changed.
    private func drive(_ what: String, limit: ServeLimit = .rolloutNotDone, _ body: @Sendable @escaping (ClusterSession) async throws -> Int32) async {
        let code: Int32
        do {
            code = try await ClusterSession.with(config, agents: await sharedAgents(), body)
        } catch let failure as CommandFailure {
            code = failure.code
            limits.record(limit, "serve: \(what): \(failure.message) (exit \(failure.code))")
        } catch {
            code = RolloutExitCode.state
            limits.record(limit, "serve: \(what): \(error)")
        }
        if code == RolloutExitCode.unhealthyAfter {
            say("\(what): done, but the post-update validation found the cluster not healthy (`upkeep validate --post-update` shows it)")
        } else if code != RolloutExitCode.done {
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
