/// Exit codes of `upkeep plan`, `apply`, `resume`, `rollback`, `status`, `history` and `agents`
/// (docs/controller.md). `upkeep check` has its own (docs/check.md).
enum RolloutExitCode {
    /// Done: every node at the target (or nothing to do; for `plan`/`agents`: all good).
    static let done: Int32 = 0
    /// A node failed and the cluster was returned to where it started.
    static let failedRolledBack: Int32 = 1
    /// Bad usage or configuration (the message names the option or field).
    static let usage: Int32 = 2
    /// Blocked: a gate did not open in time, or an agent stopped answering; nothing runs.
    /// Fix the cause, then `upkeep resume`.
    static let blocked: Int32 = 3
    /// A node failed and the rollout stopped without a full rollback (auto-rollback off, or the
    /// rollback itself failed); `upkeep status` shows every node's version.
    static let failedNotRolledBack: Int32 = 4
    /// Refused before touching anything: no safe plan (skew, downgrade), an agent unreachable or
    /// answering for another node or version, or the operator said no.
    static let refused: Int32 = 5
    /// Another controller holds the lease on the state database.
    static let leaseHeld: Int32 = 6
    /// An artifact could not be fetched or its checksum did not match; nothing was touched.
    static let artifact: Int32 = 7
    /// The Kubernetes API or the release source could not be read.
    static let unreachable: Int32 = 8
    /// The state database could not be opened or written.
    static let state: Int32 = 9
    /// Done, but the post-update validation (`validate.afterChange`) found the cluster not
    /// healthy afterwards: the change stays, the checks that failed are printed.
    static let unhealthyAfter: Int32 = 10
}
