import UpkeepCore

extension UpgradeMachine {
    /// Timing and the node's role; everything else comes with the events.
    public struct Settings: Equatable, Sendable {
        /// Pause between failed probe rounds while waiting for health.
        public var probeIntervalMs: Int64
        /// After a restart, pause between looks at the first sign of life (kubelet healthz, one
        /// local request) before the first full probe round: short, so a healthy k3s is noticed
        /// within a few milliseconds without running every probe (and spawning systemctl) each time.
        public var gateIntervalMs: Int64
        /// k3s's role on this node. A server holds the datastore: its binary never goes back a
        /// Kubernetes minor by itself once the newer one was healthy, and only it restores.
        public var role: NodeRole

        public init(probeIntervalMs: Int64 = 100, gateIntervalMs: Int64 = 5, role: NodeRole = .agent) {
            precondition(probeIntervalMs > 0 && gateIntervalMs > 0, "probe and gate intervals must be positive")
            self.probeIntervalMs = probeIntervalMs
            self.gateIntervalMs = gateIntervalMs
            self.role = role
        }
    }

    public struct InstallCommand: Equatable, Sendable {
        public var operationID: String
        /// A verified staged binary.
        public var target: BinaryRef
        public var healthTimeoutMs: Int64
        public var watchdogTimeoutMs: Int64
        /// On an air-gapped node: the verified staged images tarball placed with `target`.
        public var images: ImagesRef?

        public init(operationID: String, target: BinaryRef, healthTimeoutMs: Int64, watchdogTimeoutMs: Int64, images: ImagesRef? = nil) {
            self.operationID = operationID
            self.target = target
            self.healthTimeoutMs = healthTimeoutMs
            self.watchdogTimeoutMs = watchdogTimeoutMs
            self.images = images
        }

        var fingerprint: String { "install \(target.sha256)" + (images.map { " images \($0.sha256)" } ?? "") }
    }

    public struct RollbackCommand: Equatable, Sendable {
        public var operationID: String
        /// A staged binary to make live; nil for the kept previous one.
        public var target: BinaryRef?
        public var healthTimeoutMs: Int64

        public init(operationID: String, target: BinaryRef?, healthTimeoutMs: Int64) {
            self.operationID = operationID
            self.target = target
            self.healthTimeoutMs = healthTimeoutMs
        }

        var fingerprint: String { "rollback \(target?.sha256 ?? "previous")" }
    }

    /// `restore`: the staged `target` made live and the received backup restored with it.
    public struct RestoreCommand: Equatable, Sendable {
        public var operationID: String
        public var target: BinaryRef
        /// The received backup (its digest) and its format.
        public var backupSHA256: String
        public var format: BackupReport.Format
        public var healthTimeoutMs: Int64
        /// On an air-gapped node: the staged images tarball of `target`'s version, placed before k3s starts.
        public var images: ImagesRef?

        public init(operationID: String, target: BinaryRef, backupSHA256: String, format: BackupReport.Format, healthTimeoutMs: Int64,
                    images: ImagesRef? = nil) {
            self.operationID = operationID
            self.target = target
            self.backupSHA256 = backupSHA256
            self.format = format
            self.healthTimeoutMs = healthTimeoutMs
            self.images = images
        }

        var fingerprint: String { "restore \(backupSHA256) with \(target.sha256)" + (images.map { " images \($0.sha256)" } ?? "") }
    }

    /// `rejoin`: the staged `target` made live and `server/db` deleted, so the server joins the
    /// restored cluster.
    public struct RejoinCommand: Equatable, Sendable {
        public var operationID: String
        public var target: BinaryRef
        public var healthTimeoutMs: Int64
        /// As `RestoreCommand.images`.
        public var images: ImagesRef?

        public init(operationID: String, target: BinaryRef, healthTimeoutMs: Int64, images: ImagesRef? = nil) {
            self.operationID = operationID
            self.target = target
            self.healthTimeoutMs = healthTimeoutMs
            self.images = images
        }

        var fingerprint: String { "rejoin with \(target.sha256)" + (images.map { " images \($0.sha256)" } ?? "") }
    }

    public struct CommitCommand: Equatable, Sendable {
        public var operationID: String
        public var installOperationID: String

        public init(operationID: String, installOperationID: String) {
            self.operationID = operationID
            self.installOperationID = installOperationID
        }

        var fingerprint: String { "commit \(installOperationID)" }
    }

    public enum Event: Equatable, Sendable {
        /// First event after start, once the journal is folded: finish or undo what was interrupted.
        /// `live` is what the live path holds now (nil when missing or unreadable).
        case recover(live: LiveBinary?)
        case install(InstallCommand, live: LiveBinary?)
        case rollback(RollbackCommand, live: LiveBinary?)
        case commit(CommitCommand)
        /// Stop the k3s unit and wait until it is inactive.
        case stopK3s(operationID: String)
        case restore(RestoreCommand, live: LiveBinary?)
        case rejoin(RejoinCommand, live: LiveBinary?)
        /// A shell operation (stage, cordon, drain, uncordon, backup, restoreBackup): the shell does the work between
        /// `begin` and `finish`; the machine only keeps the ledger.
        case begin(operationID: String, kind: OperationKind, fingerprint: String)
        case finish(operationID: String, OperationOutcome)
        /// This agent is about to cordon the node, which was (or was not) unschedulable already.
        /// Only the first note counts until `clearCordon`.
        case noteCordon(wasUnschedulable: Bool)
        /// The node was uncordoned (or left cordoned as it was before): forget the note.
        case clearCordon
        /// The effect performed under `token` finished.
        case completed(token: UInt64, EffectResult)
        /// Time passed (the shell wakes the machine at `nextWake`).
        case tick
    }

    /// What the shell does, in order. `persist` must be durable before the next action runs.
    public enum Action: Equatable, Sendable {
        case persist(JournalRecord)
        /// Run this effect and report it with `.completed(token:…)`. At most one is outstanding.
        case perform(Effect, token: UInt64)
        /// A shell operation was recorded as begun: do its work, then send `.finish`.
        case proceed(operationID: String)
        /// The outcome for everyone waiting on this operation id.
        case reply(operationID: String, OperationOutcome)
        /// The request that was just handled is refused and nothing was recorded; retrying later
        /// (busy) or with other parameters can succeed.
        case reject(Rejection)
    }

    public enum Effect: Equatable, Sendable {
        /// Copy the live binary (which must have this digest) to `previous/<sha256>`, durably.
        case keepPrevious(LiveBinary)
        /// Atomically make this binary the live one (rename on the live path's file system, fsync
        /// the directory).
        case place(BinaryRef)
        /// `systemctl restart <unit>`.
        case restartUnit
        /// `systemctl stop <unit>`, then wait until it is inactive; answered with `.stopped`.
        case stopUnit
        /// Change the stopped server's datastore (restore a received backup, or delete `server/db`).
        case changeDatastore(DatastoreChange)
        /// Remove the received backup with this digest: it holds the cluster's data and token.
        case removeRestoreFile(sha256: String)
        /// Keep the images directory's `k3s-airgap-images-*` files aside (replacing what was kept
        /// before), durably, changing nothing in the directory.
        case keepImages
        /// Place this staged tarball into the images directory under its file name (a temporary
        /// name, fsync, rename), then remove the directory's other `k3s-airgap-images-*` files.
        case placeImages(ImagesRef)
        /// Make the images directory's `k3s-airgap-images-*` files the kept ones again; repeatable.
        case restoreImages
        /// Run every probe once, not before the given time.
        case probe(expectedK3sVersion: String?, notBefore: Instant)
        /// Look once, not before the given time, for the first sign that the restarted k3s is up
        /// (kubelet healthz); answered with `.probed` (healthy when there is nothing to look at).
        case gate(notBefore: Instant)
    }

    public enum EffectResult: Equatable, Sendable {
        case done
        /// What failed, for an operator.
        case failed(String)
        case probed(ProbeReport)
        /// The unit is inactive; it was active before the stop.
        case stopped(wasActive: Bool)
    }

    /// A request refused without being recorded.
    public struct Rejection: Error, Equatable, Sendable, CustomStringConvertible {
        public enum Code: String, Sendable {
            /// Something else runs; retry later.
            case busy
            /// The request contradicts the node's state or reuses an id for something else.
            case conflict
            case notFound
        }

        public var code: Code
        public var message: String

        public init(_ code: Code, _ message: String) {
            self.code = code
            self.message = message
        }

        public var description: String { "\(code.rawValue): \(message)" }
    }
}
