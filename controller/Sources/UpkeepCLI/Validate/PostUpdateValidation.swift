import UpkeepCore
import UpkeepRollout
import UpkeepStore

/// The post-update validation (docs/validate.md, "After every change"): once a rollout (apply,
/// resume, rollback, serve's) or a GitOps update completed, the checks `validate.afterChange`
/// names run as `upkeep validate` runs them. A cluster not healthy afterwards is said, check by
/// check, and the command exits `RolloutExitCode.unhealthyAfter` instead of 0: the change is
/// done and stays, and the operator learns now rather than from the next `validate`.
enum PostUpdateValidation {
    /// Runs the configured checks; `done` when there are none or every one is healthy, else
    /// `unhealthyAfter`. Never throws: a check that cannot read is unknown, which is unhealthy.
    static func run(session: ClusterSession, store: StateStore, what: String, say: (String) -> Void) async -> Int32 {
        let config = session.config
        let areas = config.validateAfterChange.filter { $0 != .applications || !config.applicationChecks.checks.isEmpty }
        guard !areas.isEmpty else { return RolloutExitCode.done }
        let reader = ValidationReader(session: session, store: store)
        let results: [ValidationResult]
        do {
            results = try await ValidateCommand.results(areas, reader: reader, rebuildSecondsMax: ValidateCommand.rebuildSecondsDefault,
                                                        declared: config.applicationChecks)
        } catch {
            say("post-update validation of \(what) could not run: \(error); `upkeep validate --post-update` runs it again")
            return RolloutExitCode.unhealthyAfter
        }
        let failing = results.filter { !$0.isHealthy }
        guard !failing.isEmpty else {
            say("post-update validation: healthy (\(results.count) checks: \(areas.map(\.rawValue).joined(separator: ", ")))")
            return RolloutExitCode.done
        }
        say("post-update validation: \(failing.count) of \(results.count) checks not healthy after \(what):")
        for line in ValidateCommand.render(failing).split(separator: "\n", omittingEmptySubsequences: true).dropLast() {
            say("  " + line)
        }
        say("the change stays; `upkeep validate --post-update` shows every check again")
        return RolloutExitCode.unhealthyAfter
    }
}
