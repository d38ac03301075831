/// What `upkeep validate --post-update` compares: the versions the last rollout and the last
/// GitOps update of each component meant, and what runs now.
public struct VersionValidationObservations: Equatable, Sendable {
    /// What one finished (or unfinished) operation meant for one component.
    public struct Meant: Equatable, Sendable {
        /// `k3s`, `longhorn`, `flux`.
        public var component: String
        /// `rollout r-…` or `update u-…`, with how it ended, for the evidence.
        public var operation: String
        /// Subject (a node's name for k3s; the component's name otherwise) → the version meant.
        /// Empty when `problem` is set.
        public var versions: [String: String]
        /// Set when the operation did not end at a version it meant (failed, unfinished): what
        /// happened, and what to do.
        public var problem: String?
        public var action: String?

        public init(component: String, operation: String, versions: [String: String], problem: String? = nil, action: String? = nil) {
            self.component = component
            self.operation = operation
            self.versions = versions
            self.problem = problem
            self.action = action
        }
    }

    /// One per component with a recorded operation, in the order k3s, longhorn, flux.
    public var meant: [Meant]
    /// Subject → the version running now (nodes' kubelet versions, the installed Longhorn and
    /// Flux); a subject absent here is not running (a node gone, a component not installed).
    public var running: ValidationReading<[String: String]>
    /// The state database could not be read: nothing is known about what was meant.
    public var history: ValidationReading<Bool>

    public init(meant: [Meant], running: ValidationReading<[String: String]>, history: ValidationReading<Bool> = .read(true)) {
        self.meant = meant
        self.running = running
        self.history = history
    }
}

extension ValidationVerdicts {
    /// `versions/k3s`, `versions/longhorn`, `versions/flux`: one per component, healthy when
    /// every subject runs the version the component's last operation meant, or no operation was
    /// recorded for it.
    public static func versions(_ observed: VersionValidationObservations) -> [ValidationResult] {
        let components = ["k3s", "longhorn", "flux"]
        guard case .read = observed.history else {
            return components.map {
                cannotRead(.versions, $0, "the state database", observed.history,
                           action: "run on the controller that made the rollouts and updates (its stateDir), or `upkeep history` to see why")
            }
        }
        return components.map { component in
            guard let meant = observed.meant.first(where: { $0.component == component }) else {
                return ValidationResult(area: .versions, check: component, verdict: .healthy,
                                        summary: "no rollout or update of \(component) recorded: nothing to compare")
            }
            if let problem = meant.problem {
                return ValidationResult(area: .versions, check: component, verdict: .unhealthy, summary: "\(meant.operation) \(problem)",
                                        action: meant.action ?? "`upkeep history` shows what happened")
            }
            guard case .read(let running) = observed.running else {
                return cannotRead(.versions, component, "the running versions", observed.running,
                                  action: "check that the Kubernetes API answers (`kubectl get nodes`)")
            }
            let subjects = meant.versions.keys.sorted()
            let wrong = subjects.filter { running[$0] != meant.versions[$0] }
            let evidence = subjects.map { subject in
                "\(subject): \(running[subject] ?? "not running"), meant \(meant.versions[subject] ?? "")"
            }
            guard wrong.isEmpty else {
                return ValidationResult(area: .versions, check: component, verdict: .unhealthy,
                                        summary: "not at the version \(meant.operation) meant: \(listed(wrong))", evidence: evidence,
                                        action: component == "k3s"
                                            ? "`upkeep status` and `upkeep history` show the rollout; a node changed by hand since is brought back by `upkeep plan` and `upkeep apply`"
                                            : "`flux get all -A` shows whether Flux applied the commit; `upkeep history` shows the update")
            }
            return ValidationResult(area: .versions, check: component, verdict: .healthy,
                                    summary: "at the version \(meant.operation) meant", evidence: evidence)
        }
    }
}
