import UpkeepCore

/// The mutating operations the agent records under an operation id. The raw values are the
/// protocol's method names.
public enum OperationKind: String, Codable, Sendable, CaseIterable {
    case stage, install, rollback, cordon, drain, uncordon, backup, commit
    case restoreBackup, stopK3s, restore, rejoin
}

/// Why an operation failed, in terms a controller can act on. Mirrors the protocol's error codes
/// where one fits.
public enum FailureCode: String, Codable, Sendable, CaseIterable {
    /// What the request names (an artifact, an install, a previous binary) does not exist.
    case notFound
    /// The request contradicts the node's state.
    case conflict
    /// A file-system or process step failed; the message names it.
    case io
    /// k3s did not become healthy within the deadline.
    case unhealthy
    /// The agent was restarted while the operation ran; the journal resolved it at start.
    case interrupted
    case insufficientSpace
    case digestMismatch
    /// A cordon or drain could not finish (timeout, refused evictions).
    case kubernetes
    /// The request is malformed in a way only the agent can see (a backup that is not what it
    /// claims to be).
    case badRequest
}

/// A k3s binary the agent can make live: identified by content, found by where it is kept.
public struct BinaryRef: Codable, Hashable, Sendable, CustomStringConvertible {
    public enum Store: String, Codable, Sendable {
        /// `<dataDir>/staging/<sha256>`: verified uploads.
        case staging
        /// `<dataDir>/previous/<sha256>`: the binary an install replaced.
        case previous
    }

    public var sha256: String
    /// As `k3s --version` reported it; nil when it could not be read.
    public var k3sVersion: String?
    public var store: Store

    public init(sha256: String, k3sVersion: String?, store: Store) {
        self.sha256 = sha256
        self.k3sVersion = k3sVersion
        self.store = store
    }

    public var description: String { "\(k3sVersion ?? "unknown version") (\(sha256.prefix(12)), \(store.rawValue))" }
}

/// A release's air-gap images tarball in the staging area, for a node whose k3s imports its
/// images from a directory (https://docs.k3s.io/installation/airgap, "Manually deploy images"):
/// an install places it there under `fileName` before k3s restarts.
public struct ImagesRef: Codable, Hashable, Sendable, CustomStringConvertible {
    public var sha256: String
    /// The release asset's name, `k3s-airgap-images-<arch>.tar(.zst|.gz)`.
    public var fileName: String
    public var k3sVersion: String?

    public init(sha256: String, fileName: String, k3sVersion: String?) {
        self.sha256 = sha256
        self.fileName = fileName
        self.k3sVersion = k3sVersion
    }

    public var description: String { "\(fileName) of \(k3sVersion ?? "unknown version") (\(sha256.prefix(12)))" }
}

/// The binary at the live path right now, as the shell read it.
public struct LiveBinary: Codable, Hashable, Sendable {
    public var sha256: String
    public var k3sVersion: String?

    public init(sha256: String, k3sVersion: String?) {
        self.sha256 = sha256
        self.k3sVersion = k3sVersion
    }
}

/// The node's health checks, run once. (The protocol's `ProbeResult` is how the agent reports
/// it on the wire.)
public struct ProbeReport: Codable, Equatable, Sendable, CustomStringConvertible {
    /// One health check's answer.
    public struct Check: Codable, Equatable, Sendable {
        /// "unit", "kubelet", "supervisor", "nodeReady", "containerd", "version", and "restart" or
        /// "agent" for a failure before any probe ran.
        public var name: String
        public var ok: Bool
        public var latencyMs: Int64
        public var message: String

        public init(name: String, ok: Bool, latencyMs: Int64, message: String) {
            self.name = name
            self.ok = ok
            self.latencyMs = latencyMs
            self.message = message
        }
    }

    public var checks: [Check]

    public init(checks: [Check]) { self.checks = checks }

    /// Healthy when there is at least one check and every check passed.
    public var healthy: Bool { !checks.isEmpty && checks.allSatisfy(\.ok) }

    public var description: String {
        let failing = checks.filter { !$0.ok }
        if checks.isEmpty { return "no checks ran" }
        if failing.isEmpty { return "all \(checks.count) checks passed" }
        return failing.map { "\($0.name): \($0.message)" }.joined(separator: "; ")
    }
}

/// What an install did.
public struct InstallReport: Codable, Equatable, Sendable {
    public enum Outcome: String, Codable, Sendable {
        /// The new binary runs and is healthy; the watchdog waits for `commit`.
        case installed
        /// The new binary never became healthy; the previous one was restored and restarted.
        case reverted
    }

    public var outcome: Outcome
    public var previousK3sVersion: String?
    /// The version running now (the new one, or the previous one after a revert).
    public var k3sVersion: String?
    /// The last probe after the new binary started (the failing one when reverted).
    public var probe: ProbeReport
    /// After a revert: the probe of the restored binary.
    public var revertProbe: ProbeReport?
    /// When installed with a watch: when the watchdog acts unless committed.
    public var watchdogDeadline: Instant?

    /// The journal's names since its first version.
    enum CodingKeys: String, CodingKey {
        case outcome, previousK3sVersion, k3sVersion, probe, revertProbe
        case watchdogDeadline = "watchdogDeadlineUnixMs"
    }

    public init(outcome: Outcome, previousK3sVersion: String?, k3sVersion: String?, probe: ProbeReport,
                revertProbe: ProbeReport? = nil, watchdogDeadline: Instant?) {
        self.outcome = outcome
        self.previousK3sVersion = previousK3sVersion
        self.k3sVersion = k3sVersion
        self.probe = probe
        self.revertProbe = revertProbe
        self.watchdogDeadline = watchdogDeadline
    }
}

/// What a rollback did.
public struct RollbackReport: Codable, Equatable, Sendable {
    public var k3sVersion: String?
    public var probe: ProbeReport

    public init(k3sVersion: String?, probe: ProbeReport) {
        self.k3sVersion = k3sVersion
        self.probe = probe
    }
}

/// What a commit ended.
public struct CommitReport: Codable, Equatable, Sendable {
    /// The version that stays.
    public var k3sVersion: String?

    public init(k3sVersion: String?) { self.k3sVersion = k3sVersion }
}

/// What `stopK3s` found.
public struct StopReport: Codable, Equatable, Sendable {
    /// The unit was active before the stop.
    public var wasActive: Bool

    public init(wasActive: Bool) { self.wasActive = wasActive }
}

/// What `restore` or `rejoin` left running.
public struct RestoreReport: Codable, Equatable, Sendable {
    public var k3sVersion: String?
    public var probe: ProbeReport

    public init(k3sVersion: String?, probe: ProbeReport) {
        self.k3sVersion = k3sVersion
        self.probe = probe
    }
}

/// A datastore backup received for a restore, in `<dataDir>/restore/`.
public struct RestoreBackupReport: Codable, Equatable, Sendable {
    public var sha256: String
    public var bytes: Int64
    public var format: BackupReport.Format
    public var alreadyReceived: Bool

    public init(sha256: String, bytes: Int64, format: BackupReport.Format, alreadyReceived: Bool) {
        self.sha256 = sha256
        self.bytes = bytes
        self.format = format
        self.alreadyReceived = alreadyReceived
    }
}

/// What a stage did.
public struct StageReport: Codable, Equatable, Sendable {
    public var sha256: String
    public var bytes: Int64
    public var k3sVersion: String
    /// The artifact was already staged; the upload was only verified.
    public var alreadyStaged: Bool

    public init(sha256: String, bytes: Int64, k3sVersion: String, alreadyStaged: Bool) {
        self.sha256 = sha256
        self.bytes = bytes
        self.k3sVersion = k3sVersion
        self.alreadyStaged = alreadyStaged
    }
}

/// The recorded result of a finished operation: what a replay of its id answers.
public struct OperationOutcome: Codable, Equatable, Sendable {
    /// How a recorded operation ended (or that it has not ended yet). The raw values are the
    /// journal's; the protocol's `OperationRecord.state` reports them.
    public enum State: String, Codable, Sendable, CaseIterable {
        case running
        case succeeded
        case failed
        /// An install that did not become healthy; the previous binary runs again.
        case reverted
    }

    public enum Body: Codable, Equatable, Sendable {
        case none
        case install(InstallReport)
        case rollback(RollbackReport)
        case commit(CommitReport)
        case stage(StageReport)
        case backup(BackupReport)
        case cordon(CordonReport)
        case drain(DrainReport)
        case uncordon(UncordonReport)
        case stopK3s(StopReport)
        /// What `restore` and `rejoin` did.
        case restore(RestoreReport)
        case restoreBackup(RestoreBackupReport)
        /// The JSON of a result the shell produced (stage, cordon, drain, uncordon, backup).
        case encoded(String)
    }

    public var state: State
    /// For an operator: what happened, and on failure what to do.
    public var message: String
    /// Set when `state` is failed.
    public var failure: FailureCode?
    public var body: Body

    public init(state: State, message: String, failure: FailureCode? = nil, body: Body = .none) {
        self.state = state
        self.message = message
        self.failure = failure
        self.body = body
    }

    public static func failed(_ code: FailureCode, _ message: String, body: Body = .none) -> OperationOutcome {
        OperationOutcome(state: .failed, message: message, failure: code, body: body)
    }
    /// The same outcome, its message followed by `text`.
    public func adding(_ text: String) -> OperationOutcome {
        var outcome = self
        outcome.message += text
        return outcome
    }
}
