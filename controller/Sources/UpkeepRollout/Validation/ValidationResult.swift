/// The groups of checks `upkeep validate` runs (docs/validate.md): `cluster` always, the others
/// on request (`--flux`, `--storage`, `--networking`, `--applications`, `--all`), `versions` with
/// `--post-update`.
public enum ValidationArea: String, Codable, Sendable, CaseIterable {
    case cluster
    case flux
    case storage
    case networking
    case applications
    /// `--post-update`: every component at the version the last rollout or update meant.
    case versions
}

/// One check's answer. `unknown` (what it reads could not be read) counts as unhealthy: an
/// answer nobody could give is never a pass.
public enum ValidationVerdict: String, Codable, Sendable {
    case healthy
    case unhealthy
    case unknown
}

/// One check of `upkeep validate`: its verdict, the evidence it rests on, and what to do when it
/// is not healthy. Made by `ValidationVerdicts` from observations; never by reading the cluster.
public struct ValidationResult: Codable, Equatable, Sendable {
    public var area: ValidationArea
    /// The check's name within its area (`ready`, `etcd`, `suspended`, …).
    public var check: String
    public var verdict: ValidationVerdict
    /// One line: what the check found.
    public var summary: String
    /// What it saw, one item a line (at most `ValidationVerdicts.evidenceMax`, the rest counted).
    public var evidence: [String]
    /// What to do about it; nil when healthy.
    public var action: String?

    public init(area: ValidationArea, check: String, verdict: ValidationVerdict, summary: String, evidence: [String] = [], action: String? = nil) {
        self.area = area
        self.check = check
        self.verdict = verdict
        self.summary = summary
        self.evidence = ValidationVerdicts.bounded(evidence)
        self.action = action
    }

    /// `cluster/ready`.
    public var name: String { "\(area.rawValue)/\(check)" }
    public var isHealthy: Bool { verdict == .healthy }
}

/// Something a check reads, or why it could not be read (an API error, a missing kind).
public enum ValidationReading<Value: Equatable & Sendable>: Equatable, Sendable {
    case read(Value)
    case unreadable(String)
}
