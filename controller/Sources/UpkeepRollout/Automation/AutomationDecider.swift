import UpkeepCore

/// What `upkeep serve` should do next, decided from what it knows: the automation policy, the
/// last update check, the cluster's versions, the releases, an unfinished rollout, the lock and
/// the maintenance windows. Pure: it reads no clock, no network, no database; `now` and every
/// fact are handed in, so each rule is a unit test. The loop in `serve` gathers the facts,
/// asks, acts, and asks again (kured's `Checker`/`Lock` split: no I/O in policy).
///
/// Rules, in order:
/// 1. An unfinished rollout comes first: serve never starts another beside it. One that is not
///    blocked (its driver died: a crash, a kill) or is blocked only by a closed window is
///    resumed once a window is open and nobody else holds the lock, when the policy lets serve
///    roll out at all; a rollout blocked for any other reason waits for an operator.
/// 2. A check is made when none has been, when the interval has passed since the last good one,
///    or, after failures, when the backoff (30 s doubling, at most the interval) has passed.
/// 3. The target is one step of the policy: a patch within the cluster's minor, or the next
///    minor at its newest release; never two minors at once (as the planner and k3s require:
///    https://docs.k3s.io/upgrades/manual), never down. A target whose serve-started rollout
///    failed is not tried again on its own.
/// 4. It starts only inside a maintenance window and while nobody else holds the lock.
public enum AutomationDecider {
    /// First retry of a failed check; doubled per further failure, up to the check interval.
    public static let checkBackoffSecondsInitial = 30

    public static func decide(_ facts: AutomationFacts, policy: AutomationPolicy, now: Instant) -> AutomationDecision {
        let nextCheck = nextCheckAt(facts.checks, policy: policy, now: now)
        if let rollout = facts.unfinished {
            return unfinished(rollout, facts: facts, policy: policy, nextCheck: nextCheck, now: now)
        }
        if nextCheck <= now { return .check }
        guard let seen = facts.seen else {
            // Checks failed so far: nothing known to act on.
            return .wait(until: nextCheck, .checkFailing(failures: facts.checks.failures, lastError: facts.checks.lastError))
        }
        let choice = target(installed: seen.installed, releases: seen.releases, goal: seen.goal, scope: policy.k3s)
        let target: K3sVersion
        switch choice {
        case .upToDate:
            return .wait(until: nextCheck, .upToDate(seen.installed))
        case .notAllowed(let available):
            return .wait(until: nextCheck, .notAllowedByPolicy(available: available, policy: policy.k3s))
        case .missingMinor(let line):
            return .wait(until: nextCheck, .noReleaseOf(line))
        case .ahead(let goal):
            return .wait(until: nextCheck, .clusterAhead(installed: seen.installed, goal: goal))
        case .step(let version):
            target = version
        }
        if let failed = facts.failedTargets[target] {
            return .wait(until: nextCheck, .failedBefore(target: target, rolloutID: failed))
        }
        if case .heldElsewhere(let holder, let expires) = facts.lock {
            return .wait(until: min(nextCheck, expires ?? nextCheck), .lockHeld(holder: holder))
        }
        if let windows = facts.windows, !windows.isOpen(at: now) {
            return .wait(until: min(nextCheck, windows.nextOpen(atOrAfter: now)), .outsideWindows(target: target))
        }
        return .start(target: target)
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
    public var lock: LockFacts
    /// nil or empty: any time.
    public var windows: [MaintenanceWindow]?
    /// Targets of rollouts serve started that failed or were rolled back, with the rollout's id.
    public var failedTargets: [K3sVersion: String]

    public init(checks: CheckHistoryFacts = CheckHistoryFacts(), seen: SeenVersions? = nil, unfinished: UnfinishedRolloutFacts? = nil,
                lock: LockFacts = .free, windows: [MaintenanceWindow]? = nil, failedTargets: [K3sVersion: String] = [:]) {
        self.checks = checks
        self.seen = seen
        self.unfinished = unfinished
        self.lock = lock
        self.windows = windows
        self.failedTargets = failedTargets
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

    public init(installed: K3sVersion, releases: [K3sVersion], goal: K3sVersion) {
        self.installed = installed
        self.releases = releases
        self.goal = goal
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

    /// A short stable name for logs, metrics and JSON.
    public var code: String {
        switch self {
        case .upToDate: "up-to-date"
        case .notAllowedByPolicy: "not-allowed-by-policy"
        case .noReleaseOf: "no-release"
        case .clusterAhead: "cluster-ahead"
        case .failedBefore: "failed-before"
        case .lockHeld: "lock-held"
        case .outsideWindows, .outsideWindowsToResume: "outside-windows"
        case .blocked: "blocked"
        case .unfinishedNeedsOperator: "unfinished"
        case .checkFailing: "check-failing"
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
