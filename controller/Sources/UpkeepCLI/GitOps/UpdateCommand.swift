import ArgumentParser
import Foundation
import UpkeepCore
import UpkeepKube
import UpkeepProcess
import UpkeepRollout
import UpkeepRuntime
import UpkeepStore
import UpkeepPOSIX

/// `upkeep update --component longhorn|flux --to V`: an upgrade through the Git repository Flux
/// watches: commit the change (Longhorn's chart version, or Flux's regenerated components),
/// wait for Flux to fetch and apply it and for the component to report the new version healthy,
/// and revert the commit when it does not.
struct Update: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Upgrade Longhorn or Flux through the Git repository Flux watches: commit, wait for the reconcile, validate, revert on failure.",
        discussion: """
            The repository and branch are those of Flux's GitRepository (--source), or --repo. Outside the maintenance \
            windows nothing is committed unless --ignore-window. It holds the controller's lock (the state directory's \
            lease and the cluster Lease kube-system/upkeep) from the commit to the end. Exit codes: 0 done (or nothing \
            to do), 1 failed and the commit was reverted, 2 usage, 4 failed and the revert did not finish (fix by hand), \
            or failed after Longhorn's manager moved (not reverted: Longhorn supports no downgrade; the output names the \
            snapshots and the backup), 5 refused before committing (a skipped minor, a downgrade, a Longhorn volume not \
            healthy, a snapshot not ready, the compatibility table refusing the version for a node's Kubernetes, the \
            datastore backup of backups.beforeUpdate failing), 6 another controller holds the lock (or it was lost while waiting), 7 Flux's \
            install.yaml could not be fetched or did not match its digest, 8 the cluster, the releases or the \
            repository could not be read. docs/gitops.md.
            """
    )

    @OptionGroup var configOption: ConfigOption

    @Option(name: .long, help: "The component to upgrade: longhorn or flux (k3s goes through `upkeep apply`).")
    var component = "longhorn"

    @Option(name: .long, help: ArgumentHelp("The version, e.g. v1.8.2 (Longhorn) or v2.5.1 (Flux).", valueName: "VERSION"))
    var to: String

    @Option(name: .long, help: ArgumentHelp("Flux's GitRepository to follow.", valueName: "NAMESPACE/NAME"))
    var source = "flux-system/flux-system"

    @Option(name: .long, help: ArgumentHelp("Push to this URL instead of the GitRepository's (e.g. SSH where Flux reads HTTPS).", valueName: "URL"))
    var repo: String?

    @Option(name: .customLong("timeout"), help: "Seconds to wait for Flux (and Longhorn) before reverting.")
    var timeoutSeconds = 900

    @Flag(name: .long, help: "Do not ask for confirmation.")
    var yes = false

    @Flag(name: .customLong("dry-run"), help: "Show the change, commit nothing.")
    var dryRun = false

    @Flag(name: .customLong("ignore-window"), help: "Commit the change outside the maintenance windows.")
    var ignoreWindow = false

    @Flag(name: .customLong("force-takeover"), help: "Take the controller lock even if another controller holds it (only when that one is gone).")
    var forceTakeover = false

    @OptionGroup(title: "Compatibility") var compatibility: CompatibilityOptions

    func validate() throws {
        guard component == "longhorn" || component == "flux" else {
            throw ValidationError("--component \(component): upkeep updates longhorn or flux through Git; k3s goes through `upkeep apply`")
        }
        guard (10...86_400).contains(timeoutSeconds) else { throw ValidationError("--timeout must be 10...86400 seconds") }
    }

    func run() async throws {
        let parts = source.split(separator: "/").map(String.init)
        guard parts.count == 2 else { throw CommandFailure(code: RolloutExitCode.usage, message: "--source \(source): write NAMESPACE/NAME") }
        let longhornTarget: LonghornVersion?
        if component == "longhorn" {
            guard let target = LonghornVersion(to) else {
                throw CommandFailure(code: RolloutExitCode.usage, message: "--to \(to): write a Longhorn version such as v1.8.2")
            }
            longhornTarget = target
        } else {
            longhornTarget = nil
        }
        let config = try configOption.load()
        let store = try openStateStore(config)
        let request = GitOpsRequest(component: component, to: to, longhornTarget: longhornTarget, namespace: parts[0], name: parts[1], repo: repo,
                                    timeoutSeconds: timeoutSeconds, dryRun: dryRun, confirmed: yes, ignoreWindow: ignoreWindow,
                                    forceTakeover: forceTakeover, longhorn: config.longhorn, compatibility: compatibility.choice)
        let code = try await ClusterSession.with(config) { session in
            try await Self.perform(request, session: session, store: store, windows: config.rollout.maintenanceWindows)
        }
        if code != 0 { throw ExitCode(code) }
    }

    /// What `upkeep update` does once its options are read; `upkeep serve` updates through it
    /// too (the same refusals, lock, commit, wait, revert and record), and so does a stage of
    /// `upkeep apply --all` (`stage`: the set's lock, held already, and who is told the update's
    /// id; the set validates once at its end). Returns the exit code.
    static func perform(_ request: GitOpsRequest, session: ClusterSession, store: StateStore, windows: [MaintenanceWindow]?,
                        stage: SetStageHooks? = nil) async throws -> Int32 {
        // Flux applies the commit: with its objects suspended it never would.
        let maintenance: MaintenancePeriod?
        do {
            let (cluster, local) = try await session.maintenanceMode(store: store, say: { print($0) }).current()
            maintenance = cluster ?? local
        } catch {
            throw MaintenanceSession.failure(error)
        }
        if let maintenance {
            throw CommandFailure(code: RolloutExitCode.refused,
                                 message: "refused: maintenance mode is on (\(MaintenanceStatusCommand.headline(maintenance))), so Flux would not "
                                     + "apply the commit; `upkeep maintenance disable` first; nothing was committed")
        }
        let lock = try stage?.lock ?? OperationLock(store: store, cluster: try session.clusterLease(store: store),
                                                    configuration: RuntimeConfiguration(forceTakeover: request.forceTakeover))
        var update = GitOpsUpdate(kube: session.kube, store: store, stateDirectory: session.stateDirectory, namespace: request.namespace,
                                  name: request.name, repoOverride: request.repo, timeoutSeconds: request.timeoutSeconds, lock: lock)
        update.initiator = request.initiator
        update.lockIsHeld = stage != nil
        update.started = stage?.started
        if session.config.backups.beforeUpdate {
            update.beforeCommit = { id in try await Backups.beforeUpdate(id, session: session, store: store) }
        }
        if let interrupted = try storeCall({ try store.unfinishedComponentUpdates() }).first {
            guard interrupted.component == request.component, Self.sameVersion(interrupted.to, request.to) else {
                throw CommandFailure(code: RolloutExitCode.refused,
                                     message: "refused: update \(interrupted.id) (\(interrupted.component) \(interrupted.from) → \(interrupted.to)) has not "
                                         + "finished; `upkeep update --component \(interrupted.component) --to \(interrupted.to)` carries it on; nothing was committed")
            }
            if request.dryRun {
                print("dry run: update \(interrupted.id) to \(interrupted.to) has not finished; a run carries it on first")
                return RolloutExitCode.done
            }
            // Carried on first; one that never reached the repository is recorded so, and this run makes it anew.
            let carried = try await update.carryOn(interrupted) { source, committed in
                if let target = LonghornVersion(interrupted.to), let from = LonghornVersion(interrupted.from), interrupted.component == "longhorn" {
                    return GitOpsFollowUp(verdict: LonghornUpdate.verdict(kube: session.kube, source: source, target: target),
                                          forwardOnly: LonghornUpdate.forwardOnly(kube: session.kube, from: from),
                                          afterApplied: LonghornUpdate.engineUpgrades(kube: session.kube, timeoutSeconds: request.timeoutSeconds))
                }
                return GitOpsFollowUp(verdict: try await FluxUpdate.carriedOnVerdict(kube: session.kube, source: source, file: interrupted.file,
                                                                                     committed: committed, to: interrupted.to))
            }
            if case .ended(let code) = carried { return code }
        }
        let began = Instant.wallClockNow()
        let code = try await update.run(dryRun: request.dryRun, confirmed: request.confirmed, windows: windows, ignoreWindow: request.ignoreWindow) { source in
            let made = if let target = request.longhornTarget {
                try await LonghornUpdate.plan(kube: session.kube, target: target, source: source, snapshots: request.longhorn,
                                              timeoutSeconds: request.timeoutSeconds)
            } else {
                try await FluxUpdate.plan(session: session, to: request.to, source: source)
            }
            guard var plan = made else { return nil }
            plan.ignoredCompatibility = try await CompatibilityGate.judge(plan, request: request, session: session)
            return plan
        }
        // Validated only when this run completed an update (not a dry run, not "already there").
        guard code == RolloutExitCode.done, !request.dryRun, stage == nil,
              let last = try? store.componentUpdates(limit: 1).first, last.component == request.component, last.outcome == .completed,
              let finished = last.finishedAt, finished >= began
        else { return code }
        return await PostUpdateValidation.run(session: session, store: store, what: "the \(request.component) update", subject: last.id,
                                              by: request.initiator) { print($0) }
    }
}

extension Update {
    /// Whether a recorded target and a requested one name one version (`v1.8.2`, `1.8.2`).
    static func sameVersion(_ recorded: String, _ requested: String) -> Bool {
        guard let left = try? K3sVersion(recorded), let right = try? K3sVersion(requested) else { return recorded == requested }
        return left == right
    }
}

/// One `upkeep update`, as its options or `upkeep serve`'s policy give it.
struct GitOpsRequest: Sendable {
    /// `longhorn` or `flux`.
    var component: String
    var to: String
    /// Set for Longhorn (its parsed `to`).
    var longhornTarget: LonghornVersion?
    /// Flux's GitRepository to follow.
    var namespace = "flux-system"
    var name = "flux-system"
    var repo: String? = nil
    var timeoutSeconds = 900
    var dryRun = false
    var confirmed = false
    var ignoreWindow = false
    var forceTakeover = false
    /// Who started it, recorded with the update (`history --updates`).
    var initiator = Initiator.current()
    /// The snapshots a Longhorn update takes and keeps (`longhorn:` in upkeep.yaml).
    var longhorn = ControllerConfig.Longhorn()
    /// The operator's override of the compatibility table; serve's requests never ignore it.
    var compatibility = CompatibilityChoice()
}

/// One component's change through Git, made by its planner before anything is cloned.
struct GitOpsPlan: Sendable {
    /// `longhorn` or `flux`, as recorded.
    var component: String
    var from: String
    var to: String
    /// Given the clone's YAML files (path → text), the one file to change and how.
    var edit: @Sendable ([String: String]) throws -> GitOpsChange
    /// Where the cluster stands with commit `sha` of `change`; polled until done or failed.
    var verdict: @Sendable (_ sha: String, _ change: GitOpsChange) async throws -> ReconcileVerdict
    /// Under the lock, before the commit: what must be true and taken first (Longhorn's volume
    /// health and snapshots, for update `id`); returns the snapshots' names; throws a refusal.
    var prepare: (@Sendable (_ id: String, _ say: (String) -> Void) async throws -> [String])? = nil
    /// Asked before a failed update is reverted: see `GitOpsFollowUp.forwardOnly`.
    var forwardOnly: (@Sendable (ComponentUpdateRecord) async -> String?)? = nil
    /// See `GitOpsFollowUp.afterApplied`.
    var afterApplied: (@Sendable (_ say: (String) -> Void) async -> ReconcileVerdict)? = nil
    /// Set when the operator went on against the compatibility table: recorded with the update.
    var ignoredCompatibility: String? = nil
}

/// How a committed change is judged, and whether a failed one may be reverted.
struct GitOpsFollowUp: Sendable {
    var verdict: @Sendable (String) async throws -> ReconcileVerdict
    /// nil (or answering nil): a revert is safe. Else the component has already moved to the new
    /// version (Longhorn's manager), a revert would be a downgrade: it says what the component
    /// shows and how to go on, and the commit stays (`failedForward`).
    var forwardOnly: (@Sendable (ComponentUpdateRecord) async -> String?)? = nil
    /// Once the verdict is done: what follows the component's own upgrade (Longhorn's engine
    /// upgrades of attached volumes), bounded; `.failed` fails the update as a verdict would.
    var afterApplied: (@Sendable (_ say: (String) -> Void) async -> ReconcileVerdict)? = nil
}

/// The edit a plan makes to the clone.
struct GitOpsChange: Sendable {
    var file: String
    var text: String
    /// What changes, in words, after "through URL (branch): ".
    var summary: String
    /// The commit's subject line.
    var subject: String
    /// Said when the cluster shows it done.
    var done: String
    /// The Kustomization that applies the file, when the verdict needs it.
    var appliedBy: String? = nil
}

/// The GitRepository Flux follows, as read before planning.
struct GitOpsSource: Sendable {
    var namespace: String
    var name: String
    var url: String?
    var branch: String
}

/// Where a change stands, judged without I/O.
enum ReconcileVerdict: Equatable, Sendable {
    case waiting(String)
    case done
    case failed(String)

    /// Waiting while the GitRepository's `source` revision (`main@sha1:<sha>`) is not commit `sha`.
    static func unfetched(_ sha: String, source: String?) -> ReconcileVerdict? {
        source?.hasSuffix(sha) == true ? nil : .waiting("Flux has not fetched \(sha.prefix(12)) yet (source at \(source ?? "nothing"))")
    }
}

/// How a Flux object that applies something (a HelmRelease, a Kustomization) stands: Ready, why,
/// and the revision it last tried and last applied (chart versions for a HelmRelease).
struct FluxApplyStatus: Equatable {
    var ready = false
    var reason = ""
    var message = ""
    var attempted: String?
    var applied: String?

    init(ready: Bool = false, reason: String = "", message: String = "", attempted: String? = nil, applied: String? = nil) {
        (self.ready, self.reason, self.message, self.attempted, self.applied) = (ready, reason, message, attempted, applied)
    }

    init(_ object: some FluxObject) {
        let condition = object.condition("Ready")
        self.init(ready: object.isReady, reason: condition?.reason ?? "", message: condition?.message ?? "",
                  attempted: object.json[path: "status", "lastAttemptedRevision"]?.string,
                  applied: object.json[path: "status", "lastAppliedRevision"]?.string)
    }

    /// Failed when it tried the revision `matches` picks and is not Ready without having
    /// applied it; waiting until it is Ready with it applied; nil once it is.
    func verdict(on matches: (String) -> Bool, failed: String, waiting: String) -> ReconcileVerdict? {
        let appliedIt = applied.map(matches) ?? false
        if attempted.map(matches) == true && !ready && !appliedIt { return .failed("\(failed): \(reason): \(message)") }
        return ready && appliedIt ? nil : .waiting("\(waiting) (applied: \(applied ?? "nothing"))")
    }
}

/// The I/O around a `GitOpsPlan`: the GitRepository, a clone, commits, pushes, waiting and reverting.
struct GitOpsUpdate {
    let kube: KubeClient
    let store: StateStore
    let stateDirectory: String
    let namespace: String
    let name: String
    let repoOverride: String?
    let timeoutSeconds: Int
    /// Held from before the commit to the end; nil: none (tests of the flow alone).
    var lock: OperationLock? = nil
    /// `lock` is held already by the caller (a stage of `upkeep apply --all`): checked before
    /// every write as always, but neither taken nor given back here.
    var lockIsHeld = false
    /// Told the update's id once its record exists (a stage of `upkeep apply --all` records it).
    var started: (@Sendable (String) throws -> Void)? = nil
    /// Who started it, recorded with the update.
    var initiator = Initiator.current()
    /// Runs under the lock right before the commit (the datastore backup of
    /// `backups.beforeUpdate`), given the update's id; what it returns (the backup's id) is
    /// recorded with the update, and a throw refuses the update with nothing committed.
    var beforeCommit: (@Sendable (_ id: String) async throws -> String)? = nil
    static let pollSeconds = 1.0
    /// How a record's message begins when nothing reached the repository (`serve` retries those).
    static let notPushedPrefix = "not pushed: "
    static let pushFailedPrefix = "the push failed: "

    func say(_ line: String) {
        fflush(nil)  // what `print` buffered comes first
        FileHandle.standardOutput.write(Data("\(ProgressBoard.timestamp(Date())) \(line)\n".utf8))
    }

    /// `makePlan` returns nil when there is nothing to do (having said so) and throws a refusal.
    /// Outside `windows` nothing is committed (refused) unless `ignoreWindow`.
    func run(dryRun: Bool, confirmed: Bool, windows: [MaintenanceWindow]? = nil, ignoreWindow: Bool = false,
             makePlan: (GitOpsSource) async throws -> GitOpsPlan?) async throws -> Int32 {
        let source = try await readSource()
        guard let plan = try await makePlan(source) else { return RolloutExitCode.done }
        _ = try WindowCheck(command: "update", ignoredMeans: "", closingMeans: "; a change started inside them runs to its end")
            .beforeStart(windows, ignoreWindow: ignoreWindow, dryRun: dryRun, now: .wallClockNow())
        guard let url = repoOverride ?? source.url else {
            throw CommandFailure(code: RolloutExitCode.usage, message: "GitRepository \(namespace)/\(name) has no spec.url; pass --repo")
        }
        let branch = source.branch
        let workspace = "\(stateDirectory)/gitops/\(RolloutDriver.newRolloutID())"
        defer { try? FileManager.default.removeItem(atPath: workspace) }
        try await git(["clone", "-q", "--depth", "20", "--branch", branch, url, workspace], what: "clone \(url)")
        let change = try plan.edit(try Self.manifests(in: workspace))
        print("\(plan.component == "flux" ? "Flux" : "Longhorn") \(plan.from) → \(plan.to) through \(url) (\(branch)): \(change.summary)")
        if dryRun {
            print("dry run: nothing was committed")
            return RolloutExitCode.done
        }
        if !confirmed { try Apply.confirm("y") }
        let id = (workspace as NSString).lastPathComponent.replacingOccurrences(of: "r", with: "u", options: .anchored)
        guard let lock, !lockIsHeld else {
            return try await committed(plan: plan, change: change, url: url, branch: branch, workspace: workspace, id: id)
        }
        return try await lock.holding("update \(id)", untouched: "nothing was committed", say: say) {
            try await committed(plan: plan, change: change, url: url, branch: branch, workspace: workspace, id: id)
        }
    }

    /// The GitRepository Flux follows: its URL and branch.
    func readSource() async throws -> GitOpsSource {
        let repository: FluxGitRepository
        do {
            repository = try await kube.get(FluxGitRepository.self, name, namespace: namespace)
        } catch {
            throw CommandFailure(code: RolloutExitCode.unreachable, message: "cannot read Flux's GitRepository \(namespace)/\(name): \(error)")
        }
        return GitOpsSource(namespace: namespace, name: name, url: repository.json[path: "spec", "url"]?.string,
                            branch: repository.json[path: "spec", "ref", "branch"]?.string ?? "main")
    }

    /// How carrying an interrupted update on ended.
    enum CarriedOn: Equatable {
        /// Finished (done, reverted or failed) with this exit code.
        case ended(Int32)
        /// Its commit never reached the branch: recorded as not pushed; a new attempt may follow.
        case notPushed
    }

    /// Carries on `record`, an update still `running` whose process stopped (a crash, a kill)
    /// before it recorded the end. Taking the lock is the tell that its holder is gone (an update
    /// holds it from before its commit to its end; a live holder refuses this, exit 6). Then the
    /// branch is read: without the record's commit nothing reached the repository (recorded as
    /// not pushed); with a revert of it, the revert is waited for; else Flux is waited for on the
    /// branch's head (which holds the commit) and the update ends as the first run would have:
    /// done, or reverted. `judge` gives the verdict for a commit, from the source and the file's
    /// committed text. A change started inside a window runs to its end: no window is checked.
    func carryOn(_ record: ComponentUpdateRecord,
                 judge: (GitOpsSource, _ committed: String) async throws -> GitOpsFollowUp) async throws -> CarriedOn {
        let source = try await readSource()
        guard let lock, !lockIsHeld else { return try await carryOnHeld(record, source: source, judge: judge) }
        return try await lock.holding("update \(record.id)", untouched: "update \(record.id) was left as it is", say: say) {
            try await carryOnHeld(record, source: source, judge: judge)
        }
    }

    private func carryOnHeld(_ first: ComponentUpdateRecord, source: GitOpsSource,
                             judge: (GitOpsSource, String) async throws -> GitOpsFollowUp) async throws -> CarriedOn {
        // Another process may have finished it before this one took the lock.
        guard var record = try storeCall({ try store.unfinishedComponentUpdates() }).first(where: { $0.id == first.id }) else {
            say("update \(first.id) has finished meanwhile (`upkeep history --updates`)")
            return .ended(RolloutExitCode.done)
        }
        try started?(record.id)
        let url = record.repository
        let branch = source.branch
        // Recorded with its commit since the record existed; one without names nothing pushed.
        let commit = record.commit ?? "none"
        say("update \(record.id) (\(record.component) \(record.from) → \(record.to), commit \(commit.prefix(12))) was interrupted; "
            + "reading \(url) (\(branch)) to carry it on")
        let workspace = "\(stateDirectory)/gitops/\(RolloutDriver.newRolloutID())"
        defer { try? FileManager.default.removeItem(atPath: workspace) }
        try await git(["clone", "-q", "--depth", "20", "--branch", branch, url, workspace], what: "clone \(url)")
        var onBranch = false
        if record.commit != nil { onBranch = await holds(workspace, commit) }
        if !onBranch, record.commit != nil, FileManager.default.fileExists(atPath: "\(workspace)/.git/shallow") {
            try await git(["-C", workspace, "fetch", "-q", "--unshallow", "origin", branch], what: "fetch the history of \(branch)")
            onBranch = await holds(workspace, commit)
        }
        guard onBranch else {
            say("\(commit.prefix(12)) is not on \(branch): the update was interrupted before its push; nothing changed in the repository")
            finish(&record, .failed, "\(Self.notPushedPrefix)interrupted before the push reached \(url) (\(branch)); nothing changed there")
            return .notPushed
        }
        let head = try await git(["-C", workspace, "rev-parse", "HEAD"], what: "rev-parse").trimmingCharacters(in: .whitespacesAndNewlines)
        let reverts = try await git(["-C", workspace, "log", "--format=%H", "--grep", "This reverts commit \(commit)", "\(commit)..HEAD"],
                                    what: "look for a revert of \(commit.prefix(12))")
        if let revert = reverts.split(separator: "\n").last.map(String.init) {
            say("\(commit.prefix(12)) was reverted on \(branch) by \(revert.prefix(12)); waiting for Flux to fetch it")
            record.revertCommit = revert
            return .ended(await awaitRevert(&record, revert, failure: "interrupted; its revert \(revert.prefix(12)) was pushed before the interruption"))
        }
        let committed = (try? String(contentsOfFile: "\(workspace)/\(record.file)", encoding: .utf8)) ?? ""
        let followUp = try await judge(source, committed)
        say("\(commit.prefix(12)) is on \(branch)\(head == commit ? "" : " (under \(head.prefix(12)))"); waiting for Flux (at most \(timeoutSeconds) s)")
        return .ended(try await settle(&record, judging: head, done: "\(record.component == "flux" ? "Flux" : "Longhorn") runs \(record.to)",
                                       workspace: workspace, branch: branch, forwardOnly: followUp.forwardOnly,
                                       afterApplied: followUp.afterApplied, verdict: followUp.verdict))
    }

    /// Whether the clone's branch holds `commit`.
    private func holds(_ workspace: String, _ commit: String) async -> Bool {
        (try? await git(["-C", workspace, "merge-base", "--is-ancestor", commit, "HEAD"], what: "merge-base")) != nil
    }

    /// Commit, push, wait, revert when it fails: under the lock.
    private func committed(plan: GitOpsPlan, change: GitOpsChange, url: String, branch: String, workspace: String, id: String) async throws -> Int32 {
        let snapshots = try await plan.prepare?(id, say) ?? []
        let backupID = try await beforeCommit?(id)
        try change.text.write(toFile: "\(workspace)/\(change.file)", atomically: true, encoding: .utf8)
        let message = "\(change.subject)\n\nCommitted by upkeep update; it reverts this commit if the upgrade does not become healthy."
        try await git(["-C", workspace, "commit", "-q", "-a", "-m", message], what: "commit")
        let commit = try await git(["-C", workspace, "rev-parse", "HEAD"], what: "rev-parse").trimmingCharacters(in: .whitespacesAndNewlines)
        // Recorded before the push: a crash after it leaves a record that names the commit.
        var record = ComponentUpdateRecord(id: id, component: plan.component, from: plan.from, to: plan.to, repository: url,
                                           file: change.file, startedAt: .wallClockNow(), commit: commit, backupID: backupID)
        record.snapshots = snapshots
        try storeCall { try store.saveComponentUpdate(record) }
        try storeCall { try store.recordOperation(OperationStamp(.update, by: initiator), subject: record.id, now: record.startedAt) }
        try started?(record.id)
        if let ignored = plan.ignoredCompatibility {
            try storeCall {
                try store.recordOperation(OperationStamp(.ignoreCompatibility, by: initiator), subject: record.id, detail: ignored, now: record.startedAt)
            }
        }
        if let lost = lostLock() {
            finish(&record, .failed, "\(Self.notPushedPrefix)\(lost)")
            throw CommandFailure(code: RolloutExitCode.leaseHeld, message: "\(lost); nothing was pushed")
        }
        do {
            try await git(["-C", workspace, "push", "-q", "origin", "HEAD:\(branch)"], what: "push to \(url)")
        } catch {
            finish(&record, .failed, "\(Self.pushFailedPrefix)\(error)")
            throw error
        }
        say("pushed \(commit.prefix(12)) to \(branch); waiting for Flux (at most \(timeoutSeconds) s)")
        return try await settle(&record, judging: commit, done: change.done, workspace: workspace, branch: branch,
                                forwardOnly: plan.forwardOnly, afterApplied: plan.afterApplied) { try await plan.verdict($0, change) }
    }

    /// After the push (or on carrying an interrupted update on): waits for Flux to apply the
    /// branch at `judged` (the commit, or a later head that holds it), records the update done,
    /// or reverts the record's commit and records how that went. Returns the exit code.
    private func settle(_ record: inout ComponentUpdateRecord, judging judged: String, done: String, workspace: String, branch: String,
                        forwardOnly: (@Sendable (ComponentUpdateRecord) async -> String?)? = nil,
                        afterApplied: (@Sendable ((String) -> Void) async -> ReconcileVerdict)? = nil,
                        verdict: (String) async throws -> ReconcileVerdict) async throws -> Int32 {
        let commit = record.commit ?? judged
        let url = record.repository
        var outcome = await waitFor({ try await verdict(judged) })
        if outcome == .done, let afterApplied { outcome = await afterApplied(say) }
        let failure: String
        switch outcome {
        case .done:
            say("done: \(done)")
            finish(&record, .completed, done)
            return RolloutExitCode.done
        case .failed(let reason), .waiting(let reason):
            failure = reason
        }
        // Another controller may be acting now: its work is not reverted behind its back.
        if let lost = lostLock() {
            say("stopped: \(lost); \(commit.prefix(12)) stays on \(branch): watch Flux, revert it by hand if it does not become healthy")
            finish(&record, .failed, "\(failure); \(lost), so the commit was not reverted")
            return RolloutExitCode.leaseHeld
        }
        // Once the component has moved, a revert would be a downgrade: stop, keep the commit, say how to go on.
        if let forwardOnly, let why = await forwardOnly(record) {
            let backup = newestBackup()
            say("failed: \(failure)")
            say("not reverted: \(why); \(commit.prefix(12)) stays on \(branch)")
            say("the newest datastore backup: \(backup)")
            finish(&record, .failedForward, "\(failure); not reverted: \(why); the newest datastore backup: \(backup)")
            return RolloutExitCode.failedNotRolledBack
        }
        say("failed: \(failure); reverting \(commit.prefix(12))")
        do {
            try await git(["-C", workspace, "revert", "--no-edit", commit], what: "revert")
            try await git(["-C", workspace, "push", "-q", "origin", "HEAD:\(branch)"], what: "push the revert")
        } catch {
            say("the revert could not be pushed: \(error); revert \(commit) in \(url) by hand")
            finish(&record, .failed, "\(failure); the revert could not be pushed: \(error)")
            return RolloutExitCode.failedNotRolledBack
        }
        let revert = try await git(["-C", workspace, "rev-parse", "HEAD"], what: "rev-parse").trimmingCharacters(in: .whitespacesAndNewlines)
        record.revertCommit = revert
        return await awaitRevert(&record, revert, failure: failure)
    }

    /// The newest sealed datastore backup, named for an operator going on by hand.
    private func newestBackup() -> String {
        guard let backup = (try? store.backups(limit: 1))?.first else { return "none recorded (`upkeep backup now` takes one)" }
        return "\(backup.id), taken \(backup.takenAt.utcDescription) on \(backup.node) (`upkeep backup list`; `upkeep backup open \(backup.id) -o PATH`)"
    }

    /// Waits for Flux to fetch the pushed revert and records the update reverted (or failed, when
    /// Flux did not fetch it in time).
    private func awaitRevert(_ record: inout ComponentUpdateRecord, _ revert: String, failure: String) async -> Int32 {
        let reverted = await waitForSource(revert)
        say("reverted with \(revert.prefix(12))" + (reverted ? "; Flux has fetched it" : "; Flux has not fetched it yet, watch the GitRepository"))
        finish(&record, reverted ? .reverted : .failed, failure + (reverted ? "" : "; Flux had not fetched the revert"))
        return reverted ? RolloutExitCode.failedRolledBack : RolloutExitCode.failedNotRolledBack
    }

    /// Records the end of `record`; a database that cannot record it is said, not thrown: the
    /// change in the repository stands either way.
    private func finish(_ record: inout ComponentUpdateRecord, _ outcome: ComponentUpdateRecord.Outcome, _ text: String) {
        record.outcome = outcome
        record.message = text
        record.finishedAt = .wallClockNow()
        do { try store.saveComponentUpdate(record) } catch { say("warning: the state database did not record the outcome: \(error)") }
    }

    /// Why the lock is no longer held, nil while it is (or there is none).
    func lostLock() -> String? {
        lock?.loss()
    }

    /// Polls `judge` until the verdict is done or failed, the timeout passes (then the last
    /// reason), or the lock is lost.
    func waitFor(_ judge: () async throws -> ReconcileVerdict) async -> ReconcileVerdict {
        let deadline = Date().addingTimeInterval(Double(timeoutSeconds))
        var last = ReconcileVerdict.waiting("nothing read yet")
        var said = ""
        while Date() < deadline {
            if let lost = lostLock() { return .failed(lost) }
            if let verdict = try? await judge() {
                last = verdict
                if case .waiting(let reason) = last, reason != said {
                    say("waiting: \(reason)")
                    said = reason
                }
                if last == .done { return last }
                if case .failed = last { return last }
            }
            try? await Task.sleep(nanoseconds: UInt64(Self.pollSeconds * 1e9))
        }
        if case .waiting(let reason) = last { return .failed("not done within \(timeoutSeconds) s: \(reason)") }
        return last
    }

    func waitForSource(_ commit: String) async -> Bool {
        let deadline = Date().addingTimeInterval(Double(timeoutSeconds))
        while Date() < deadline {
            if let revision = try? await sourceRevision(), revision.hasSuffix(commit) { return true }
            try? await Task.sleep(nanoseconds: UInt64(Self.pollSeconds * 1e9))
        }
        return false
    }

    /// `status.artifact.revision` of the GitRepository (`main@sha1:<sha>`).
    func sourceRevision() async throws -> String? {
        try await kube.get(FluxGitRepository.self, name, namespace: namespace).json[path: "status", "artifact", "revision"]?.string
    }

    /// Every YAML file of the clone (not under .git), path relative to it → text; bounded.
    static func manifests(in root: String) throws -> [String: String] {
        var files: [String: String] = [:]
        guard let walker = FileManager.default.enumerator(atPath: root) else { return files }
        while let path = walker.nextObject() as? String {
            if path == ".git" || path.hasPrefix(".git/") { walker.skipDescendants(); continue }
            guard path.hasSuffix(".yaml") || path.hasSuffix(".yml") else { continue }
            guard files.count < 5000 else {
                throw CommandFailure(code: RolloutExitCode.refused, message: "the repository holds more than 5000 YAML files; pass a smaller one")
            }
            if let data = FileManager.default.contents(atPath: "\(root)/\(path)"), data.count <= 4 << 20 {
                files[path] = String(decoding: data, as: UTF8.self)
            }
        }
        return files
    }

    @discardableResult
    func git(_ arguments: [String], what: String) async throws -> String {
        let outcome: ProcessRun.Outcome
        do {
            outcome = try await ProcessRun.run("git", arguments, environment: Git.environment(identity: "upkeep"), timeoutSeconds: 120)
        } catch {
            throw CommandFailure(code: RolloutExitCode.unreachable, message: "git: \(error); install git")
        }
        guard outcome.status == 0, !outcome.timedOut else {
            throw CommandFailure(code: RolloutExitCode.unreachable, message: "git \(what) failed: \(outcome.output.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        return outcome.output
    }
}
