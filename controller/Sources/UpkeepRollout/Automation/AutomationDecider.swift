import UpkeepCore

/// What `upkeep serve` should do next, decided from what it knows: the automation policy, the
/// last update check, the cluster's versions (k3s, Longhorn, Flux), the releases, an unfinished
/// rollout, the lock and the maintenance windows. Pure: it reads no clock, no network, no database; `now` and every
/// fact are handed in, so each rule is a unit test. The loop in `serve` gathers the facts,
/// asks, acts, and asks again (kured's `Checker`/`Lock` split: no I/O in policy).
///
/// Rules, in order:
/// 1. An unfinished rollout comes first: serve never starts another beside it. One that is not
///    blocked (its driver died: a crash, a kill) or is blocked only by a closed window is
///    resumed once a window is open and nobody else holds the lock, when the policy lets serve
///    roll out at all; a rollout blocked for any other reason waits for an operator.
///    An interrupted Longhorn or Flux update (still `running`, its process gone: the lock is
///    free) comes next, the same way: carried on (its commit waited for, or reverted, as
///    `upkeep update` does) before anything else starts, whatever the windows say (a change
///    started inside one runs to its end), when its component's policy is not `none`.
/// 2. A check is made when none has been, when the interval has passed since the last good one,
///    or, after failures, when the backoff (30 s doubling, at most the interval) has passed.
/// 3. The target is one step of the policy: a patch within the cluster's minor, or the next
///    minor at its newest release; never two minors at once (as the planner and k3s require:
///    https://docs.k3s.io/upgrades/manual), never down. A target whose serve-started rollout
///    failed is not tried again on its own.
/// 4. When k3s has no step to take, Longhorn's, then Flux's (`automation.longhorn`,
///    `automation.flux`): one step through the Git repository Flux watches, as `upkeep update`
///    makes it. One thing at a time, in the order k3s, Longhorn, Flux (docs/serve.md, "Order"):
///    a component that is up to date, not allowed, or whose step failed before does not hold the
///    next one back; an unfinished rollout (rule 1), the lock and a closed window hold them all,
///    so a rollout and an update never run at once. A step whose release needs a newer
///    Kubernetes than the oldest node runs waits (for k3s, which comes first); a k3s step to a
///    minor the installed Longhorn or Flux does not support waits (for that component's update,
///    which can then go first). Serve never goes against the compatibility table.
/// 5. It starts only inside a maintenance window and while nobody else holds the lock.
public enum AutomationDecider {
    /// First retry of a failed check; doubled per further failure, up to the check interval.
    public static let checkBackoffSecondsInitial = 30

    public static func decide(_ facts: AutomationFacts, policy: AutomationPolicy, now: Instant) -> AutomationDecision {
        let nextCheck = nextCheckAt(facts.checks, policy: policy, now: now)
        if let rollout = facts.unfinished {
            return unfinished(rollout, facts: facts, policy: policy, nextCheck: nextCheck, now: now)
        }
        if let update = facts.unfinishedUpdate {
            return unfinished(update, facts: facts, policy: policy, nextCheck: nextCheck, now: now)
        }
        if nextCheck <= now { return .check }
        guard let seen = facts.seen else {
            // Checks failed so far: nothing known to act on.
            return .wait(until: nextCheck, .checkFailing(failures: facts.checks.failures, lastError: facts.checks.lastError))
        }
        // The first component, in order, with a step to take; else why none has.
        var holds: [WaitReason] = []
        var due: AutomationDecision?
        switch k3sStep(seen, facts: facts, policy: policy) {
        case .take(let target): due = .start(target: target)
        case .hold(let reason): holds.append(reason)
        }
        for component in GitOpsComponent.allCases where due == nil {
            guard let installed = seen.gitOps[component] else { continue }  // not installed, or its version unread
            switch gitOpsStep(component, installed, cluster: seen.installed.minorLine, facts: facts, policy: policy) {
            case .take(let target): due = .update(component, target: target)
            case .hold(let reason): holds.append(reason)
            case nil: break
            }
        }
        guard let due else {
            // Up to date unless something newer waits: the first component's that does.
            return .wait(until: nextCheck, holds.first { if case .upToDate = $0 { false } else { true } } ?? holds[0])
        }
        if case .heldElsewhere(let holder, let expires) = facts.lock {
            return .wait(until: min(nextCheck, expires ?? nextCheck), .lockHeld(holder: holder))
        }
        if let windows = facts.windows, !windows.isOpen(at: now) {
            let reason: WaitReason = switch due {
            case .update(let component, let target): .outsideWindowsToUpdate(component, target: target)
            case .start(let target): .outsideWindows(target: target)
            case .check, .resume, .wait: preconditionFailure("only a start or an update is due here")
            }
            return .wait(until: min(nextCheck, windows.nextOpen(atOrAfter: now)), reason)
        }
        return due
    }

    /// A step to take now, or why not.
    enum Step {
        case take(K3sVersion)
        case hold(WaitReason)
    }

    private static func k3sStep(_ seen: SeenVersions, facts: AutomationFacts, policy: AutomationPolicy) -> Step {
        if let unread = seen.k3sUnread { return .hold(.checkFailing(failures: max(facts.checks.failures, 1), lastError: unread)) }
        switch target(installed: seen.installed, releases: seen.releases, goal: seen.goal, scope: policy.k3s) {
        case .upToDate:
            return .hold(.upToDate(seen.installed))
        case .notAllowed(let available):
            return .hold(.notAllowedByPolicy(available: available, policy: policy.k3s))
        case .missingMinor(let line):
            return .hold(.noReleaseOf(line))
        case .ahead(let goal):
            return .hold(.clusterAhead(installed: seen.installed, goal: goal))
        case .step(let version):
            if let failed = facts.failedTargets[version] { return .hold(.failedBefore(target: version, rolloutID: failed)) }
            // A new minor the installed Longhorn or Flux does not support (`upkeep check`'s
            // `kubernetes-too-new`; `upkeep apply` would refuse it too).
            if version.minorLine != seen.installed.minorLine {
                for component in GitOpsComponent.allCases {
                    guard let support = seen.kubernetesSupport[component], let maximum = support.maximum, version.minorLine > maximum else { continue }
                    return .hold(.kubernetesNotSupported(component, installed: support.installed, target: version, supportsUpTo: maximum,
                                                         source: support.source))
                }
            }
            return .take(version)
        }
    }

    /// Nil when the component is up to date: it says nothing about waiting.
    private static func gitOpsStep(_ component: GitOpsComponent, _ seen: SeenComponent, cluster: MinorLine, facts: AutomationFacts,
                                   policy: AutomationPolicy) -> Step? {
        let scope = policy[component]
        switch gitOpsTarget(installed: seen.installed, releases: seen.releases, pinned: scope.pinned, scope: scope.scope) {
        case .upToDate:
            return nil
        case .notAllowed(let available):
            return .hold(.updateNotAllowed(component, available: available, policy: scope.scope))
        case .missingMinor(let line):
            return .hold(.updateNoRelease(component, line))
        case .ahead(let pin):
            return .hold(.updateAhead(component, installed: seen.installed, pinned: pin))
        case .step(let version):
            let key = GitOpsTarget(component: component, version: version)
            if let failed = facts.failedUpdates[key] { return .hold(.updateFailedBefore(component, target: version, updateID: failed)) }
            // A release that needs a newer Kubernetes than the oldest node runs waits for k3s
            // (`upkeep check`'s `kubernetes-too-old`), which comes first in the order.
            if let needs = seen.kubernetesMin[version], cluster < needs {
                return .hold(.updateNeedsKubernetes(component, target: version, needs: needs, runs: cluster))
            }
            return .take(version)
        }
    }

    /// One step of `scope` for Longhorn or Flux from `installed`, among `releases` (pre-releases
    /// are never a step), within the installed major and never past `pinned`: `patch` is the
    /// newest release of the installed minor; `minor` the newest of the next minor, else the
    /// newest of the installed one. Never down, never two minors at once: Longhorn upgrades one
    /// minor at a time (https://longhorn.io/docs/latest/deploy/upgrade/), and Flux's change
    /// is kept as small (https://fluxcd.io/flux/installation/upgrade/).
    public static func gitOpsTarget(installed: K3sVersion, releases: [K3sVersion], pinned: K3sVersion?, scope: AutomationPolicy.Scope) -> TargetChoice {
        if let pinned, pinned <= installed { return pinned == installed ? .upToDate : .ahead(goal: pinned) }
        let newer = releases.filter { release in
            !release.isPreRelease && release.major == installed.major && release > installed && pinned.map { release <= $0 } ?? true
        }
        guard let newest = newer.max() else { return .upToDate }
        let sameMinor = newer.filter { $0.minorLine == installed.minorLine }.max()
        switch scope {
        case .none:
            return .notAllowed(available: newest)
        case .patch:
            return sameMinor.map { .step($0) } ?? .notAllowed(available: newest)
        case .minor:
            let next = installed.minorLine.next
            if let step = newer.filter({ $0.minorLine == next }).max() ?? sameMinor { return .step(step) }
            return .missingMinor(next)
        }
    }

    /// When the next check is due: now when none was made, the interval after the last good
    /// one, or after failures the backoff from the last failure.
    public static func nextCheckAt(_ checks: CheckHistoryFacts, policy: AutomationPolicy, now: Instant) -> Instant {
        if checks.failures > 0, let failedAt = checks.lastFailureAt {
            let doublings = min(checks.failures - 1, 20)
            let backoff = min(policy.checkIntervalSeconds, checkBackoffSecondsInitial << doublings)
            return failedAt.adding(seconds: backoff)
        }
        guard let last = checks.lastSuccessAt else { return now }
        return last.adding(seconds: policy.checkIntervalSeconds)
    }

    private static func unfinished(_ rollout: UnfinishedRolloutFacts, facts: AutomationFacts, policy: AutomationPolicy,
                                   nextCheck: Instant, now: Instant) -> AutomationDecision {
        // While it is unfinished the checks go on (update.available is still told).
        if nextCheck <= now { return .check }
        if case .blocked(let reason) = rollout.state {
            return .wait(until: nextCheck, .blocked(rolloutID: rollout.id, reason: reason))
        }
        guard policy.k3s != .none else {
            return .wait(until: nextCheck, .unfinishedNeedsOperator(rolloutID: rollout.id))
        }
        if case .heldElsewhere(let holder, let expires) = facts.lock {
            // Another process drives it (an `upkeep resume`, another serve): leave it be.
            return .wait(until: min(nextCheck, expires ?? nextCheck), .lockHeld(holder: holder))
        }
        if let windows = facts.windows, !windows.isOpen(at: now) {
            return .wait(until: min(nextCheck, windows.nextOpen(atOrAfter: now)), .outsideWindowsToResume(rolloutID: rollout.id))
        }
        return .resume(rolloutID: rollout.id)
    }

    /// An interrupted update is carried on by the same decision that starts one (`.update`):
    /// `upkeep update` carries on an unfinished update of its component and version first.
    private static func unfinished(_ update: UnfinishedUpdateFacts, facts: AutomationFacts, policy: AutomationPolicy,
                                   nextCheck: Instant, now: Instant) -> AutomationDecision {
        if nextCheck <= now { return .check }
        guard policy[update.component].scope != .none else {
            return .wait(until: nextCheck, .updateUnfinishedNeedsOperator(update.component, target: update.target, updateID: update.id))
        }
        if case .heldElsewhere(let holder, let expires) = facts.lock {
            // Its own process still drives it (or stopped less than a lease ago), or another operation runs.
            return .wait(until: min(nextCheck, expires ?? nextCheck), .lockHeld(holder: holder))
        }
        return .update(update.component, target: update.target)
    }

    /// What one step of `scope` towards `goal` is from `installed` (the cluster's oldest node),
    /// choosing among `releases` (released versions only; pre-releases are never a step).
    public static func target(installed: K3sVersion, releases: [K3sVersion], goal: K3sVersion, scope: AutomationPolicy.K3sScope) -> TargetChoice {
        guard installed < goal else { return installed == goal ? .upToDate : .ahead(goal: goal) }
        guard installed.major == goal.major else { return .notAllowed(available: goal) }
        let released = releases.filter { !$0.isPreRelease && $0 > installed && $0 <= goal }
        let sameMinor = released.filter { $0.minorLine == installed.minorLine }.max()
        switch scope {
        case .none:
            return .notAllowed(available: goal)
        case .patch:
            if goal.minorLine == installed.minorLine { return .step(goal) }
            return sameMinor.map { .step($0) } ?? .notAllowed(available: goal)
        case .minor:
            if goal.minorLine == installed.minorLine || goal.minorLine == installed.minorLine.next { return .step(goal) }
            let next = installed.minorLine.next
            guard let newest = released.filter({ $0.minorLine == next }).max() else { return .missingMinor(next) }
            return .step(newest)
        }
    }

    public enum TargetChoice: Equatable, Sendable {
        case upToDate
        /// Roll out to this version: one step of the policy.
        case step(K3sVersion)
        /// A newer version exists (the goal) that the policy does not let serve roll out.
        case notAllowed(available: K3sVersion)
        /// The next minor has no release to go through.
        case missingMinor(MinorLine)
        /// The cluster runs something newer than the goal (a pin below it): never down.
        case ahead(goal: K3sVersion)
    }
}

/// What the loop knows when it asks `AutomationDecider`.
public struct AutomationFacts: Equatable, Sendable {
    public var checks: CheckHistoryFacts
    /// What the last good check saw; nil before one.
    public var seen: SeenVersions?
    /// The rollout not finished yet (at most one exists), whoever started it.
    public var unfinished: UnfinishedRolloutFacts?
    /// The newest Longhorn or Flux update still recorded as running, whoever started it.
    public var unfinishedUpdate: UnfinishedUpdateFacts?
    public var lock: LockFacts
    /// nil or empty: any time.
    public var windows: [MaintenanceWindow]?
    /// Targets of rollouts serve started that failed or were rolled back, with the rollout's id.
    public var failedTargets: [K3sVersion: String]
    /// Longhorn and Flux versions whose update failed or was reverted, with the update's id.
    public var failedUpdates: [GitOpsTarget: String]

    public init(checks: CheckHistoryFacts = CheckHistoryFacts(), seen: SeenVersions? = nil, unfinished: UnfinishedRolloutFacts? = nil,
                lock: LockFacts = .free, windows: [MaintenanceWindow]? = nil, failedTargets: [K3sVersion: String] = [:],
                failedUpdates: [GitOpsTarget: String] = [:], unfinishedUpdate: UnfinishedUpdateFacts? = nil) {
        self.checks = checks
        self.unfinishedUpdate = unfinishedUpdate
        self.seen = seen
        self.unfinished = unfinished
        self.lock = lock
        self.windows = windows
        self.failedTargets = failedTargets
        self.failedUpdates = failedUpdates
    }
}

/// One version of Longhorn or Flux, as a target of an update.
public struct GitOpsTarget: Hashable, Sendable {
    public var component: GitOpsComponent
    public var version: K3sVersion

    public init(component: GitOpsComponent, version: K3sVersion) {
        self.component = component
        self.version = version
    }
}

public struct CheckHistoryFacts: Equatable, Sendable {
    public var lastSuccessAt: Instant?
    /// Failed checks since the last good one.
    public var failures = 0
    public var lastFailureAt: Instant?
    public var lastError: String?

    public init(lastSuccessAt: Instant? = nil, failures: Int = 0, lastFailureAt: Instant? = nil, lastError: String? = nil) {
        self.lastSuccessAt = lastSuccessAt
        self.failures = failures
        self.lastFailureAt = lastFailureAt
        self.lastError = lastError
    }
}

/// The cluster's k3s and the releases, as the last good check read them.
public struct SeenVersions: Equatable, Sendable {
    /// The oldest node's version: where a path starts.
    public var installed: K3sVersion
    /// Released k3s versions.
    public var releases: [K3sVersion]
    /// The channel's version or the pinned one.
    public var goal: K3sVersion
    /// Longhorn and Flux where installed and their version read.
    public var gitOps: [GitOpsComponent: SeenComponent]
    /// Why k3s's releases or channel could not be read at the last check: k3s holds
    /// (`releases` and `goal` mean nothing then) while Longhorn and Flux go on.
    public var k3sUnread: String?
    /// The Kubernetes the installed Longhorn and Flux support, where the compatibility table
    /// says (whatever their automation policy: a k3s step is judged against them).
    public var kubernetesSupport: [GitOpsComponent: KubernetesSupport]

    public init(installed: K3sVersion, releases: [K3sVersion], goal: K3sVersion, gitOps: [GitOpsComponent: SeenComponent] = [:],
                k3sUnread: String? = nil, kubernetesSupport: [GitOpsComponent: KubernetesSupport] = [:]) {
        self.k3sUnread = k3sUnread
        self.kubernetesSupport = kubernetesSupport
        self.installed = installed
        self.releases = releases
        self.goal = goal
        self.gitOps = gitOps
    }
}

/// The Kubernetes minors an installed Longhorn or Flux supports, from the compatibility table
/// entry that covers it.
public struct KubernetesSupport: Equatable, Sendable {
    public var installed: K3sVersion
    public var minimum: MinorLine?
    public var maximum: MinorLine?
    /// Where the entry's fact comes from (a URL or a compatibility file).
    public var source: String

    public init(installed: K3sVersion, minimum: MinorLine? = nil, maximum: MinorLine? = nil, source: String) {
        self.installed = installed
        self.minimum = minimum
        self.maximum = maximum
        self.source = source
    }
}

/// Longhorn's or Flux's version and releases, as the last good check read them.
public struct SeenComponent: Equatable, Sendable {
    public var installed: K3sVersion
    /// Its released versions (pre-releases are left out by the decider).
    public var releases: [K3sVersion]
    /// The oldest Kubernetes minor a release supports, where the compatibility table knows it.
    public var kubernetesMin: [K3sVersion: MinorLine]

    public init(installed: K3sVersion, releases: [K3sVersion], kubernetesMin: [K3sVersion: MinorLine] = [:]) {
        self.installed = installed
        self.releases = releases
        self.kubernetesMin = kubernetesMin
    }
}

public struct UnfinishedRolloutFacts: Equatable, Sendable {
    public enum State: Equatable, Sendable {
        /// Not blocked: its driver stopped (crash, kill, restart) or drives it now.
        case interrupted
        /// Blocked only because a maintenance window closed before a wave.
        case outsideWindows
        /// Blocked for a reason an operator must look at.
        case blocked(String)
    }

    public var id: String
    public var target: K3sVersion
    public var state: State

    public init(id: String, target: K3sVersion, state: State) {
        self.id = id
        self.target = target
        self.state = state
    }
}

/// A Longhorn or Flux update recorded as running: driven now by the process holding the lock,
/// or interrupted when the lock is free.
public struct UnfinishedUpdateFacts: Equatable, Sendable {
    public var id: String
    public var component: GitOpsComponent
    public var target: K3sVersion

    public init(id: String, component: GitOpsComponent, target: K3sVersion) {
        self.id = id
        self.component = component
        self.target = target
    }
}

/// The lock every operation holds (the cluster Lease and the state directory's lease).
public enum LockFacts: Equatable, Sendable {
    case free
    /// Held by another process or controller, until `expires` unless renewed.
    case heldElsewhere(holder: String, expires: Instant?)
}

/// What `upkeep serve` does next.
public enum AutomationDecision: Equatable, Sendable {
    /// Read the cluster's versions and the releases now.
    case check
    /// Start a rollout to this version, as `upkeep apply --to` would.
    case start(target: K3sVersion)
    /// Carry this rollout on, as `upkeep resume` would.
    case resume(rolloutID: String)
    /// Update Longhorn or Flux to this version through Git, as `upkeep update --component C --to V` would.
    case update(GitOpsComponent, target: K3sVersion)
    /// Nothing until then (or until something changes), for this reason.
    case wait(until: Instant, WaitReason)
}

/// Why serve is not acting now: said in its log and in `/v1/status`.
public enum WaitReason: Equatable, Sendable, CustomStringConvertible {
    case upToDate(K3sVersion)
    case notAllowedByPolicy(available: K3sVersion, policy: AutomationPolicy.K3sScope)
    case noReleaseOf(MinorLine)
    case clusterAhead(installed: K3sVersion, goal: K3sVersion)
    case failedBefore(target: K3sVersion, rolloutID: String)
    case lockHeld(holder: String)
    case outsideWindows(target: K3sVersion)
    case outsideWindowsToResume(rolloutID: String)
    case blocked(rolloutID: String, reason: String)
    case unfinishedNeedsOperator(rolloutID: String)
    case checkFailing(failures: Int, lastError: String?)
    case updateNotAllowed(GitOpsComponent, available: K3sVersion, policy: AutomationPolicy.Scope)
    case updateNoRelease(GitOpsComponent, MinorLine)
    case updateAhead(GitOpsComponent, installed: K3sVersion, pinned: K3sVersion)
    case updateFailedBefore(GitOpsComponent, target: K3sVersion, updateID: String)
    case outsideWindowsToUpdate(GitOpsComponent, target: K3sVersion)
    case updateNeedsKubernetes(GitOpsComponent, target: K3sVersion, needs: MinorLine, runs: MinorLine)
    case updateUnfinishedNeedsOperator(GitOpsComponent, target: K3sVersion, updateID: String)
    case kubernetesNotSupported(GitOpsComponent, installed: K3sVersion, target: K3sVersion, supportsUpTo: MinorLine, source: String)

    /// A short stable name for logs, metrics and JSON.
    public var code: String {
        switch self {
        case .upToDate: "up-to-date"
        case .notAllowedByPolicy, .updateNotAllowed: "not-allowed-by-policy"
        case .noReleaseOf, .updateNoRelease: "no-release"
        case .clusterAhead, .updateAhead: "cluster-ahead"
        case .failedBefore, .updateFailedBefore: "failed-before"
        case .lockHeld: "lock-held"
        case .outsideWindows, .outsideWindowsToResume, .outsideWindowsToUpdate: "outside-windows"
        case .blocked: "blocked"
        case .unfinishedNeedsOperator, .updateUnfinishedNeedsOperator: "unfinished"
        case .checkFailing: "check-failing"
        case .updateNeedsKubernetes: "kubernetes-too-old"
        case .kubernetesNotSupported: "kubernetes-too-new"
        }
    }

    public var description: String {
        switch self {
        case .upToDate(let version): "up to date: the cluster runs \(version)"
        case .notAllowedByPolicy(let available, let policy):
            "\(available) is available; automation.k3s: \(policy.rawValue) does not start it (`upkeep apply --to \(available)` does)"
        case .noReleaseOf(let line): "no release of \(line) was found; a rollout cannot skip a minor"
        case .clusterAhead(let installed, let goal): "the cluster runs \(installed), newer than \(goal); Upkeep never downgrades on its own"
        case .failedBefore(let target, let id):
            "rollout \(id) to \(target) failed; serve does not try it again (`upkeep apply --to \(target)` does, once the cause is fixed)"
        case .lockHeld(let holder): "another operation holds the lock: \(holder)"
        case .outsideWindows(let target): "\(target) waits for a maintenance window"
        case .outsideWindowsToResume(let id): "rollout \(id) waits for a maintenance window to carry on"
        case .blocked(let id, let reason): "rollout \(id) is blocked (\(reason)); fix it, then `upkeep resume`"
        case .unfinishedNeedsOperator(let id): "rollout \(id) has not finished; automation.k3s: none leaves it to `upkeep resume`"
        case .checkFailing(let failures, let error):
            "the update check failed \(failures) time\(failures == 1 ? "" : "s")" + (error.map { ": \($0)" } ?? "")
        case .updateNotAllowed(let component, let available, let policy):
            "\(component.title) \(available) is available; automation.\(component.rawValue): \(policy.rawValue) does not start it "
                + "(`upkeep update --component \(component.rawValue) --to V` does, one minor at a time for Longhorn)"
        case .updateNoRelease(let component, let line):
            "no release of \(component.title) \(line) was found; an update cannot skip a minor"
        case .updateAhead(let component, let installed, let pinned):
            "\(component.title) runs \(installed), newer than automation.\(component.rawValue)Version \(pinned); Upkeep never downgrades"
        case .updateFailedBefore(let component, let target, let id):
            "update \(id) of \(component.title) to \(target) failed; serve does not try it again "
                + "(`upkeep update --component \(component.rawValue) --to \(target)` does, once the cause is fixed)"
        case .outsideWindowsToUpdate(let component, let target):
            "\(component.title) \(target) waits for a maintenance window"
        case .updateNeedsKubernetes(let component, let target, let needs, let runs):
            "\(component.title) \(target) needs Kubernetes \(needs) or newer; the oldest node runs \(runs): upgrade k3s first"
        case .kubernetesNotSupported(let component, let installed, let target, let maximum, let source):
            "k3s \(target) is Kubernetes \(target.minorLine), newer than \(component.title) \(installed) supports (up to \(maximum), source: "
                + "\(source)): update \(component.title) first (`upkeep update --component \(component.rawValue) --to V`, or automation."
                + "\(component.rawValue)); serve never goes against the compatibility table"
        case .updateUnfinishedNeedsOperator(let component, let target, let id):
            "update \(id) of \(component.title) to \(target) has not finished; automation.\(component.rawValue): none leaves it to "
                + "`upkeep update --component \(component.rawValue) --to \(target)`"
        }
    }
}

extension UnfinishedRolloutFacts.State {
    /// How an unfinished rollout's status reads to serve. A wave the engine held at a closed
    /// window blocks with "outside the maintenance windows" (`RolloutEngine.checkGate`); that
    /// block ends by itself when a window opens, every other needs an operator.
    public init(_ status: RolloutEngine.Status) {
        switch status {
        case .blocked(let reason) where reason.contains(": outside the maintenance windows ("): self = .outsideWindows
        case .blocked(let reason): self = .blocked(reason)
        case .notStarted, .running, .stopping, .finished: self = .interrupted
        }
    }
}
