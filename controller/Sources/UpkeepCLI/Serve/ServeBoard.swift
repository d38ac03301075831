import Foundation
import Synchronization
import UpkeepCore
import UpkeepRollout
import UpkeepStore

/// What `upkeep serve`'s loop decided last and knows, as `/v1/status` shows it under `serve`
/// and `/metrics` counts it. Written by the loop, read by the HTTP server's threads.
final class ServeBoard: Sendable {
    /// The loop's state in JSON (docs/serve.md).
    struct State: Codable, Equatable, Sendable {
        /// `automation.k3s: minor (channel stable)`.
        var policy: String
        /// `automation.longhorn: minor`, `automation.flux: none`, … (what serve may update through Git).
        var updatePolicies: [String]
        var checkIntervalSeconds: Int
        /// `check`, `start`, `resume`, `update` or `wait`.
        var decision = "check"
        /// While waiting: `WaitReason.code` (`up-to-date`, `outside-windows`, `lock-held`, …).
        var reason: String?
        var detail: String?
        /// RFC 3339, UTC: when the loop decides again at the latest.
        var until: String?
        var lastCheckAt: String?
        var checkFailures = 0
        var lastCheckError: String?
        /// The oldest node's k3s at the last good check, and the channel's (or pinned) version.
        var installed: String?
        var goal: String?
        /// Longhorn's and Flux's versions at the last good check, where serve may update them.
        var longhornInstalled: String?
        var fluxInstalled: String?
        /// The rollout serve drives now.
        var driving: String?
        var checksTotal = 0
        var checksFailedTotal = 0
        var rolloutsStartedTotal = 0
        var rolloutsResumedTotal = 0
        var longhornUpdatesTotal = 0
        var fluxUpdatesTotal = 0
        /// `ServeLimit` raw value → times reached since serve started.
        var limitsTotal: [String: Int] = [:]
    }

    private let state: Mutex<State>

    init(policy: AutomationPolicy) {
        state = Mutex(State(policy: policy.description, updatePolicies: GitOpsComponent.allCases.map { policy.description(of: $0) },
                            checkIntervalSeconds: policy.checkIntervalSeconds))
    }

    var current: State { state.withLock { $0 } }

    func decided(_ decision: AutomationDecision, facts: AutomationFacts, at now: Instant) {
        state.withLock { state in
            state.reason = nil
            state.detail = nil
            state.until = nil
            switch decision {
            case .check: state.decision = "check"
            case .start(let target):
                state.decision = "start"
                state.detail = "rollout to \(target)"
                state.rolloutsStartedTotal += 1
            case .resume(let id):
                state.decision = "resume"
                state.detail = "rollout \(id)"
                state.rolloutsResumedTotal += 1
            case .update(let component, let target):
                state.decision = "update"
                state.detail = "\(component.rawValue) update to \(target)"
                switch component {
                case .longhorn: state.longhornUpdatesTotal += 1
                case .flux: state.fluxUpdatesTotal += 1
                }
            case .wait(let until, let reason):
                state.decision = "wait"
                state.reason = reason.code
                state.detail = reason.description
                state.until = until.utcDescription
            }
        }
    }

    func checked(ok: Bool, seen: SeenVersions?, checks: CheckHistoryFacts) {
        state.withLock { state in
            state.checksTotal += 1
            if !ok { state.checksFailedTotal += 1 }
            state.checkFailures = checks.failures
            state.lastCheckError = checks.lastError
            if let at = checks.lastSuccessAt { state.lastCheckAt = at.utcDescription }
            state.installed = seen?.installed.description
            state.goal = seen?.goal.description
            state.longhornInstalled = seen?.gitOps[.longhorn]?.installed.description
            state.fluxInstalled = seen?.gitOps[.flux]?.installed.description
        }
    }

    /// A bound or failure of the loop reached (its log line may have been held back).
    func counted(_ limit: ServeLimit) {
        state.withLock { $0.limitsTotal[limit.rawValue, default: 0] += 1 }
    }

    func driving(_ what: String?) {
        state.withLock { $0.driving = what }
    }

    /// A wait the shell imposes (a start refused before it touched anything).
    func waiting(until: Instant, code: String, detail: String) {
        state.withLock { state in
            state.decision = "wait"
            state.reason = code
            state.detail = detail
            state.until = until.utcDescription
        }
    }

    /// The loop's counters and state for `/metrics`.
    func exposition() -> String {
        let state = current
        var text = ""
        func metric(_ name: String, _ type: String, _ help: String, _ samples: [(labels: String, value: Int)]) {
            text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for sample in samples { text += "\(name)\(sample.labels) \(sample.value)\n" }
        }
        metric("upkeep_serve_checks_total", "counter", "Update checks made by upkeep serve, by result.",
               [("{result=\"ok\"}", state.checksTotal - state.checksFailedTotal), ("{result=\"failed\"}", state.checksFailedTotal)])
        metric("upkeep_serve_check_failures", "gauge", "Update checks failed in a row (0 after a good one); the next waits 30 s doubling, at most checkInterval.",
               [("", state.checkFailures)])
        metric("upkeep_serve_rollouts_total", "counter", "Rollouts upkeep serve started (start) or carried on (resume) by its policy.",
               [("{how=\"start\"}", state.rolloutsStartedTotal), ("{how=\"resume\"}", state.rolloutsResumedTotal)])
        metric("upkeep_serve_updates_total", "counter", "Longhorn and Flux updates upkeep serve started through Git by its policy.",
               [("{component=\"longhorn\"}", state.longhornUpdatesTotal), ("{component=\"flux\"}", state.fluxUpdatesTotal)])
        metric("upkeep_serve_limits_total", "counter", "Failures and bounds of upkeep serve's loop reached (each logged at most once a minute).",
               ServeLimit.allCases.map { ("{limit=\"\($0.rawValue)\"}", state.limitsTotal[$0.rawValue] ?? 0) })
        let reasons = ["up-to-date", "not-allowed-by-policy", "no-release", "cluster-ahead", "failed-before", "lock-held", "outside-windows",
                       "blocked", "unfinished", "check-failing", "start-refused", "kubernetes-too-old", "kubernetes-too-new"]
        metric("upkeep_serve_waiting", "gauge", "1 for the reason upkeep serve is waiting now (none while it checks or drives a rollout).",
               reasons.map { ("{reason=\"\($0)\"}", state.decision == "wait" && state.reason == $0 ? 1 : 0) })
        return text
    }
}
