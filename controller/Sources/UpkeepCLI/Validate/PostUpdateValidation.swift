import UpkeepCore
import UpkeepPOSIX
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
    /// The result is recorded as a `validate` operation on `subject` (the rollout or update), by
    /// `by`, so `upkeep history` shows it later (best effort: the change itself is recorded).
    static func run(session: ClusterSession, store: StateStore, what: String, subject: String?, by: Initiator,
                    say: (String) -> Void) async -> Int32 {
        func record(_ detail: String) {
            guard let subject else { return }
            do {
                try store.recordOperation(OperationStamp(.validate, by: by), subject: subject, detail: detail, now: .wallClockNow())
            } catch {
                say("the post-update validation's result could not be recorded in the state database: \(error)")
            }
        }
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
            record("could not run: \(error)")
            return RolloutExitCode.unhealthyAfter
        }
        let failing = results.filter { !$0.isHealthy }
        let checked = "\(results.count) checks: \(areas.map(\.rawValue).joined(separator: ", "))"
        guard !failing.isEmpty else {
            say("post-update validation: healthy (\(checked))")
            record("healthy (\(checked))")
            return RolloutExitCode.done
        }
        say("post-update validation: \(failing.count) of \(results.count) checks not healthy after \(what):")
        for line in ValidateCommand.render(failing, summary: false).split(separator: "\n") {
            say("  " + line)
        }
        say("the change stays; `upkeep validate --post-update` shows every check again")
        let names = failing.prefix(10).map(\.name).joined(separator: ", ") + (failing.count > 10 ? ", …" : "")
        record("\(failing.count) of \(results.count) checks not healthy: \(names)")
        return RolloutExitCode.unhealthyAfter
    }
}
