import UpkeepCore

/// The operations an agent serves. The raw values are the `method` field on the wire.
public enum Method: String, Codable, Sendable, CaseIterable {
    case status, probe, stage, install, rollback, cordon, drain, uncordon, backup, commit
    case operation, restoreBackup, stopK3s, restore, rejoin
    case certificateRequest, installCertificate
    case etcdHealth
    case clusterDNS
    case reachPeers

    /// Mutating methods carry an operation id and are recorded by the agent. A renewal's two
    /// methods are idempotent by content instead (PROTOCOL.md section 12).
    public var isMutating: Bool {
        switch self {
        case .status, .probe, .operation, .certificateRequest, .installCertificate, .etcdHealth, .clusterDNS, .reachPeers: false
        case .stage, .install, .rollback, .cordon, .drain, .uncordon, .backup, .commit: true
        case .restoreBackup, .stopK3s, .restore, .rejoin: true
        }
    }

    /// The client streams chunks after the Request.
    public var hasUpload: Bool { self == .stage || self == .restoreBackup }
    /// The server streams chunks after the Response.
    public var hasDownload: Bool { self == .backup }
}

/// A request message: the `params` of a Request frame for one method.
public protocol RequestMessage: Codable, Equatable, Sendable {
    /// The `result` of the Response that answers it.
    associatedtype Result: ResultMessage
    static var method: Method { get }
    /// Checks rules JSON types cannot express; a failure is answered with `badRequest`.
    func validate() throws(MessageError)
    /// This message inside the enum the server switches on.
    var payload: RequestPayload { get }
}

/// A result message: the `result` of a Response frame for one method.
public protocol ResultMessage: Codable, Equatable, Sendable {}

extension RequestMessage {
    public func validate() throws(MessageError) {}
}

func checkPositive(_ value: Int, _ field: String, max: Int) throws(MessageError) {
    guard (1...max).contains(value) else {
        throw .invalid("\(field) must be 1...\(max) (is \(value))")
    }
}

// MARK: status

/// Everything the controller needs to know about a node before acting on it.
public struct StatusRequest: RequestMessage {
    public typealias Result = StatusResult
    public static let method = Method.status
    public init() {}
    public var payload: RequestPayload { .status(self) }
}

public struct StatusResult: ResultMessage {
    public var agent: AgentInfo
    public var unit: UnitStatus
    /// Where the live k3s binary is, and the free space on its filesystem.
    public var binaryPath: String
    public var binaryFreeBytes: Int64
    /// The agent's data directory (staging, previous binaries, journal) and its free space.
    public var dataDir: String
    public var dataFreeBytes: Int64
    public var staged: [StagedArtifact]
    /// Present while an install waits for `commit`.
    public var watchdog: WatchdogStatus?
    /// Newest first, bounded by the agent.
    public var recentOperations: [OperationRecord]
    /// Present when k3s on this node imports its images from this directory (an air-gapped node):
    /// every install then needs the release's images tarball staged with it.
    public var airgapImagesDir: String?

    public init(agent: AgentInfo, unit: UnitStatus, binaryPath: String, binaryFreeBytes: Int64, dataDir: String,
                dataFreeBytes: Int64, staged: [StagedArtifact], watchdog: WatchdogStatus?,
                recentOperations: [OperationRecord], airgapImagesDir: String? = nil) {
        self.agent = agent
        self.unit = unit
        self.binaryPath = binaryPath
        self.binaryFreeBytes = binaryFreeBytes
        self.dataDir = dataDir
        self.dataFreeBytes = dataFreeBytes
        self.staged = staged
        self.watchdog = watchdog
        self.recentOperations = recentOperations
        self.airgapImagesDir = airgapImagesDir
    }
}

/// The k3s systemd unit as `systemctl show` reports it.
public struct UnitStatus: Codable, Equatable, Sendable {
    /// "k3s" or "k3s-agent".
    public var name: String
    /// ActiveState: active, inactive, activating, deactivating, failed, reloading.
    public var activeState: String
    /// SubState, e.g. running, dead, auto-restart.
    public var subState: String

    public init(name: String, activeState: String, subState: String) {
        self.name = name
        self.activeState = activeState
        self.subState = subState
    }
}

public struct StagedArtifact: Codable, Equatable, Sendable {
    public var sha256: SHA256Hex
    public var bytes: Int64
    public var k3sVersion: String
    /// Nil for a k3s binary.
    public var artifact: ArtifactKind?
    /// An images tarball's release asset name.
    public var fileName: String?

    public init(sha256: SHA256Hex, bytes: Int64, k3sVersion: String, artifact: ArtifactKind? = nil, fileName: String? = nil) {
        self.sha256 = sha256
        self.bytes = bytes
        self.k3sVersion = k3sVersion
        self.artifact = artifact
        self.fileName = fileName
    }
}

/// What a staged upload is.
public enum ArtifactKind: String, Codable, Sendable, CaseIterable {
    /// A k3s binary (the default when `artifact` is absent).
    case k3sBinary
    /// A release's `k3s-airgap-images-<arch>` tarball, for nodes that import images from a
    /// directory (https://docs.k3s.io/installation/airgap).
    case airgapImages

    /// Whether `name` is a release asset name of an images tarball: `k3s-airgap-images-<arch>`
    /// then `.tar`, `.tar.zst` or `.tar.gz`, `<arch>` lowercase letters and digits.
    public static func isAirgapImagesName(_ name: String) -> Bool {
        airgapImagesArch(name) != nil
    }

    /// The `<arch>` of an images tarball's name, nil when `name` is not one.
    public static func airgapImagesArch(_ name: String) -> Substring? {
        let prefix = "k3s-airgap-images-"
        guard name.hasPrefix(prefix) else { return nil }
        for suffix in [".tar.zst", ".tar.gz", ".tar"] where name.hasSuffix(suffix) {
            let arch = name.dropFirst(prefix.count).dropLast(suffix.count)
            let valid = (1...16).contains(arch.utf8.count)
                && arch.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) }
            return valid ? arch : nil
        }
        return nil
    }
}

public struct WatchdogStatus: Codable, Equatable, Sendable {
    /// The install that started the watch.
    public var installOperationID: OperationID
    /// The version the agent reverts to if the deadline passes unhealthy.
    public var previousK3sVersion: String?
    public var deadlineUnixMs: Int64

    public init(installOperationID: OperationID, previousK3sVersion: String?, deadlineUnixMs: Int64) {
        self.installOperationID = installOperationID
        self.previousK3sVersion = previousK3sVersion
        self.deadlineUnixMs = deadlineUnixMs
    }
}

public enum OperationState: String, Codable, Sendable, CaseIterable {
    case running, succeeded, failed, reverted
}

public struct OperationRecord: Codable, Equatable, Sendable {
    public var operationID: OperationID
    public var method: Method
    public var state: OperationState
    public var message: String?
    public var startedAtUnixMs: Int64
    public var finishedAtUnixMs: Int64?

    public init(operationID: OperationID, method: Method, state: OperationState, message: String?,
                startedAtUnixMs: Int64, finishedAtUnixMs: Int64?) {
        self.operationID = operationID
        self.method = method
        self.state = state
        self.message = message
        self.startedAtUnixMs = startedAtUnixMs
        self.finishedAtUnixMs = finishedAtUnixMs
    }
}

// MARK: probe

/// Runs the node's health checks now.
public struct ProbeRequest: RequestMessage {
    public typealias Result = ProbeResult
    public static let method = Method.probe
    /// When set, the node must report this kubeletVersion to pass.
    public var expectedK3sVersion: String?
    public init(expectedK3sVersion: String? = nil) { self.expectedK3sVersion = expectedK3sVersion }
    public var payload: RequestPayload { .probe(self) }
}

public struct ProbeResult: ResultMessage {
    /// True when every check passed.
    public var healthy: Bool
    public var checks: [ProbeCheck]

    public init(healthy: Bool, checks: [ProbeCheck]) {
        self.healthy = healthy
        self.checks = checks
    }
}

public struct ProbeCheck: Codable, Equatable, Sendable {
    /// e.g. "unit", "kubelet", "supervisor", "nodeReady", "containerd".
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

// MARK: stage

/// Receives a k3s binary as the upload stream into the staging area. The live binary is never
/// touched. The agent checks free space before reading any chunk.
public struct StageRequest: RequestMessage {
    public typealias Result = StageResult
    public static let method = Method.stage
    public var operationID: OperationID
    public var k3sVersion: String
    /// Expected digest of the whole upload (from the release's sha256sum file).
    public var sha256: SHA256Hex
    /// Expected length of the whole upload.
    public var bytes: Int64
    /// Nil (a k3s binary) or `airgapImages`.
    public var artifact: ArtifactKind?
    /// With `airgapImages` only: the release asset's name, `k3s-airgap-images-<arch>.tar(.zst|.gz)`.
    public var fileName: String?

    public init(operationID: OperationID, k3sVersion: String, sha256: SHA256Hex, bytes: Int64,
                artifact: ArtifactKind? = nil, fileName: String? = nil) {
        self.operationID = operationID
        self.k3sVersion = k3sVersion
        self.sha256 = sha256
        self.bytes = bytes
        self.artifact = artifact
        self.fileName = fileName
    }

    /// What the upload is, `k3sBinary` when `artifact` is absent.
    public var kind: ArtifactKind { artifact ?? .k3sBinary }

    public func validate() throws(MessageError) {
        try checkText(k3sVersion, field: "stage.k3sVersion", bytesMax: 128)
        guard bytes >= 1 else { throw .invalid("stage.bytes must be at least 1 (is \(bytes))") }
        switch kind {
        case .k3sBinary:
            if fileName != nil { throw .invalid("stage.fileName is only for artifact airgapImages") }
        case .airgapImages:
            guard let fileName else { throw .invalid("stage.fileName is required with artifact airgapImages") }
            guard ArtifactKind.isAirgapImagesName(fileName) else {
                throw .invalid("stage.fileName \"\(fileName.prefix(80))\" is not k3s-airgap-images-<arch> with .tar, .tar.zst or .tar.gz")
            }
        }
    }

    public var payload: RequestPayload { .stage(self) }
}

public struct StageResult: ResultMessage {
    public var sha256: SHA256Hex
    public var bytes: Int64
    /// True when the artifact was already staged and the upload was only verified.
    public var alreadyStaged: Bool

    public init(sha256: SHA256Hex, bytes: Int64, alreadyStaged: Bool) {
        self.sha256 = sha256
        self.bytes = bytes
        self.alreadyStaged = alreadyStaged
    }
}

// MARK: install

/// Swaps the staged binary in, restarts k3s and waits for health; reverts on failure.
public struct InstallRequest: RequestMessage {
    public typealias Result = InstallResult
    public static let method = Method.install
    public var operationID: OperationID
    /// The staged artifact to install.
    public var sha256: SHA256Hex
    public var k3sVersion: String
    /// How long the probes may take to pass after the restart before the agent reverts.
    public var healthTimeoutSeconds: Int
    /// How long after a healthy install the agent waits for `commit` before checking health
    /// itself (and reverting when unhealthy).
    public var watchdogTimeoutSeconds: Int
    /// A staged images tarball of `k3sVersion`, placed with the binary; required on an
    /// air-gapped node, ignored elsewhere.
    public var imagesSHA256: SHA256Hex?

    public init(operationID: OperationID, sha256: SHA256Hex, k3sVersion: String, healthTimeoutSeconds: Int,
                watchdogTimeoutSeconds: Int, imagesSHA256: SHA256Hex? = nil) {
        self.operationID = operationID
        self.sha256 = sha256
        self.k3sVersion = k3sVersion
        self.healthTimeoutSeconds = healthTimeoutSeconds
        self.watchdogTimeoutSeconds = watchdogTimeoutSeconds
        self.imagesSHA256 = imagesSHA256
    }

    public func validate() throws(MessageError) {
        try checkText(k3sVersion, field: "install.k3sVersion", bytesMax: 128)
        try checkPositive(healthTimeoutSeconds, "install.healthTimeoutSeconds", max: 3600)
        try checkPositive(watchdogTimeoutSeconds, "install.watchdogTimeoutSeconds", max: 86400)
    }

    public var payload: RequestPayload { .install(self) }
}

public enum InstallOutcome: String, Codable, Sendable, CaseIterable {
    /// The new binary runs and is healthy; the watchdog waits for `commit`.
    case installed
    /// The new binary never became healthy; the previous one was restored and restarted.
    case reverted
}

public struct InstallResult: ResultMessage {
    public var outcome: InstallOutcome
    public var previousK3sVersion: String?
    /// The version running now (the new one, or the previous one after a revert).
    public var k3sVersion: String?
    /// The last probe results (the failing ones when reverted).
    public var probe: ProbeResult
    /// When reverted: the restored version's probe results (absent from agents before this field).
    public var revertProbe: ProbeResult?
    /// When `outcome` is installed: when the watchdog acts unless committed.
    public var watchdogDeadlineUnixMs: Int64?

    public init(outcome: InstallOutcome, previousK3sVersion: String?, k3sVersion: String?, probe: ProbeResult,
                revertProbe: ProbeResult? = nil, watchdogDeadlineUnixMs: Int64?) {
        self.outcome = outcome
        self.previousK3sVersion = previousK3sVersion
        self.k3sVersion = k3sVersion
        self.probe = probe
        self.revertProbe = revertProbe
        self.watchdogDeadlineUnixMs = watchdogDeadlineUnixMs
    }
}

// MARK: rollback

/// Puts the previous binary (or a staged one) back, restarts k3s and waits for health.
public struct RollbackRequest: RequestMessage {
    public typealias Result = RollbackResult
    public static let method = Method.rollback
    public var operationID: OperationID
    /// A staged artifact to install instead of the kept previous binary; nil for the previous one.
    public var toSHA256: SHA256Hex?
    public var healthTimeoutSeconds: Int

    public init(operationID: OperationID, toSHA256: SHA256Hex? = nil, healthTimeoutSeconds: Int) {
        self.operationID = operationID
        self.toSHA256 = toSHA256
        self.healthTimeoutSeconds = healthTimeoutSeconds
    }

    public func validate() throws(MessageError) {
        try checkPositive(healthTimeoutSeconds, "rollback.healthTimeoutSeconds", max: 3600)
    }

    public var payload: RequestPayload { .rollback(self) }
}

public struct RollbackResult: ResultMessage {
    public var k3sVersion: String?
    public var probe: ProbeResult

    public init(k3sVersion: String?, probe: ProbeResult) {
        self.k3sVersion = k3sVersion
        self.probe = probe
    }
}

// MARK: cordon, drain, uncordon

/// Marks the node unschedulable, remembering whether it already was.
public struct CordonRequest: RequestMessage {
    public typealias Result = CordonResult
    public static let method = Method.cordon
    public var operationID: OperationID
    public init(operationID: OperationID) { self.operationID = operationID }
    public var payload: RequestPayload { .cordon(self) }
}

public struct CordonResult: ResultMessage {
    /// The node was already unschedulable before this cordon; `uncordon` will leave it so.
    public var wasUnschedulable: Bool
    public init(wasUnschedulable: Bool) { self.wasUnschedulable = wasUnschedulable }
}

/// Evicts the node's pods through the eviction API (honouring PodDisruptionBudgets), one
/// progress event per pod. DaemonSet and mirror pods are always skipped.
public struct DrainRequest: RequestMessage {
    public typealias Result = DrainResult
    public static let method = Method.drain
    public var operationID: OperationID
    /// The whole drain, including PDB retries.
    public var timeoutSeconds: Int
    /// Overrides each pod's terminationGracePeriodSeconds; nil keeps the pod's own.
    public var gracePeriodSeconds: Int?
    /// Evict pods that use emptyDir volumes (their data is lost); when false such pods block.
    public var deleteEmptyDirData: Bool
    /// Only pods matching this label selector are evicted.
    public var podSelector: String?
    /// Stop waiting for a pod whose deletion began more than this many seconds ago (kubectl's
    /// `--skip-wait-for-delete-timeout`); nil: wait for every pod until the timeout.
    public var skipWaitForDeleteTimeoutSeconds: Int?
    /// Delete pods instead of evicting them (kubectl's `--disable-eviction`): budgets are not
    /// consulted. Nil means false.
    public var disableEviction: Bool?

    public init(operationID: OperationID, timeoutSeconds: Int, gracePeriodSeconds: Int? = nil,
                deleteEmptyDirData: Bool = true, podSelector: String? = nil, skipWaitForDeleteTimeoutSeconds: Int? = nil,
                disableEviction: Bool = false) {
        self.operationID = operationID
        self.timeoutSeconds = timeoutSeconds
        self.gracePeriodSeconds = gracePeriodSeconds
        self.deleteEmptyDirData = deleteEmptyDirData
        self.podSelector = podSelector
        self.skipWaitForDeleteTimeoutSeconds = skipWaitForDeleteTimeoutSeconds
        self.disableEviction = disableEviction ? true : nil
    }

    public func validate() throws(MessageError) {
        try checkPositive(timeoutSeconds, "drain.timeoutSeconds", max: 86400)
        if let gracePeriodSeconds, !(0...86400).contains(gracePeriodSeconds) {
            throw .invalid("drain.gracePeriodSeconds must be 0...86400 (is \(gracePeriodSeconds))")
        }
        if let skipWaitForDeleteTimeoutSeconds {
            try checkPositive(skipWaitForDeleteTimeoutSeconds, "drain.skipWaitForDeleteTimeoutSeconds", max: 86400)
        }
    }

    public var payload: RequestPayload { .drain(self) }
}

public struct DrainResult: ResultMessage {
    public var evictedPods: Int
    public var skippedPods: Int

    public init(evictedPods: Int, skippedPods: Int) {
        self.evictedPods = evictedPods
        self.skippedPods = skippedPods
    }
}

/// Makes the node schedulable again, but only if this agent cordoned it.
public struct UncordonRequest: RequestMessage {
    public typealias Result = UncordonResult
    public static let method = Method.uncordon
    public var operationID: OperationID
    public init(operationID: OperationID) { self.operationID = operationID }
    public var payload: RequestPayload { .uncordon(self) }
}

public struct UncordonResult: ResultMessage {
    /// False when the node was unschedulable before Upkeep cordoned it, and stays so.
    public var uncordoned: Bool
    public var message: String

    public init(uncordoned: Bool, message: String) {
        self.uncordoned = uncordoned
        self.message = message
    }
}

// MARK: backup

/// Takes a datastore backup and streams it back after the Response.
public struct BackupRequest: RequestMessage {
    public typealias Result = BackupResult
    public static let method = Method.backup
    public var operationID: OperationID
    /// Base name for the snapshot; nil lets the agent choose.
    public var name: String?

    public init(operationID: OperationID, name: String? = nil) {
        self.operationID = operationID
        self.name = name
    }

    public func validate() throws(MessageError) {
        if let name { try checkText(name, field: "backup.name", bytesMax: 128) }
    }

    public var payload: RequestPayload { .backup(self) }
}

public enum BackupFormat: String, Codable, Sendable, CaseIterable {
    /// The file `k3s etcd-snapshot save` wrote (embedded etcd).
    case etcdSnapshot
    /// A POSIX tar of an online copy of `server/db/state.db` and the `server/token` file (SQLite).
    case sqliteTar
}

public struct BackupResult: ResultMessage {
    public var format: BackupFormat
    public var fileName: String
    /// Length of the stream that follows.
    public var bytes: Int64

    public init(format: BackupFormat, fileName: String, bytes: Int64) {
        self.format = format
        self.fileName = fileName
        self.bytes = bytes
    }
}

// MARK: commit

/// Ends the watchdog of a successful install: the new version stays.
public struct CommitRequest: RequestMessage {
    public typealias Result = CommitResult
    public static let method = Method.commit
    public var operationID: OperationID
    public var installOperationID: OperationID

    public init(operationID: OperationID, installOperationID: OperationID) {
        self.operationID = operationID
        self.installOperationID = installOperationID
    }

    public var payload: RequestPayload { .commit(self) }
}

public struct CommitResult: ResultMessage {
    /// The version that stays.
    public var k3sVersion: String?
    public init(k3sVersion: String?) { self.k3sVersion = k3sVersion }
}

// MARK: etcdHealth

/// The embedded etcd cluster as this server's agent sees it: the member list from the node's
/// own etcd, and each member's health asked at its client URL.
public struct EtcdHealthRequest: RequestMessage {
    public typealias Result = EtcdHealthResult
    public static let method = Method.etcdHealth
    /// Bound on each member's answer.
    public var timeoutSeconds: Int

    public init(timeoutSeconds: Int) { self.timeoutSeconds = timeoutSeconds }

    public func validate() throws(MessageError) {
        try checkPositive(timeoutSeconds, "etcdHealth.timeoutSeconds", max: 60)
    }

    public var payload: RequestPayload { .etcdHealth(self) }
}

public struct EtcdHealthResult: ResultMessage {
    /// Every member of the cluster, in the order the node's etcd listed them.
    public var members: [EtcdMemberStatus]
    /// More than half of the members are healthy.
    public var quorum: Bool

    public init(members: [EtcdMemberStatus], quorum: Bool) {
        self.members = members
        self.quorum = quorum
    }
}

public struct EtcdMemberStatus: Codable, Equatable, Sendable {
    /// The member id, in hex as etcdctl prints it.
    public var id: String
    /// Empty for a member added but not started yet.
    public var name: String
    public var clientURLs: [String]
    public var healthy: Bool
    /// What its health endpoint answered, or why it could not be asked.
    public var message: String

    public init(id: String, name: String, clientURLs: [String], healthy: Bool, message: String) {
        self.id = id
        self.name = name
        self.clientURLs = clientURLs
        self.healthy = healthy
        self.message = message
    }
}

// MARK: clusterDNS

/// One name resolved from the node through the cluster DNS address its agent is configured
/// with (`clusterDNS`, default k3s's 10.43.0.10): an A query over UDP, bounded, that the agent
/// makes itself. No answer is a result, not an error.
public struct ClusterDNSRequest: RequestMessage {
    public typealias Result = ClusterDNSResult
    public static let method = Method.clusterDNS
    /// The name to resolve, e.g. `kubernetes.default.svc.cluster.local`.
    public var name: String
    /// Bound on the answer.
    public var timeoutSeconds: Int

    public init(name: String, timeoutSeconds: Int) {
        self.name = name
        self.timeoutSeconds = timeoutSeconds
    }

    public func validate() throws(MessageError) {
        try checkText(name, field: "clusterDNS.name", bytesMax: 253)
        try checkPositive(timeoutSeconds, "clusterDNS.timeoutSeconds", max: 30)
    }

    public var payload: RequestPayload { .clusterDNS(self) }
}

public struct ClusterDNSResult: ResultMessage {
    /// The address asked, `host:port`.
    public var server: String
    /// An answer came back within the bound (whatever its code).
    public var answered: Bool
    /// The answer's response code as dig prints it (`NOERROR`, `NXDOMAIN`, `SERVFAIL`, …); empty without an answer.
    public var code: String
    /// The IPv4 addresses it answered for the name.
    public var addresses: [String]
    /// Why there is no answer (a timeout, a malformed answer), else empty.
    public var message: String
    public var elapsedMs: Int

    public init(server: String, answered: Bool, code: String, addresses: [String], message: String, elapsedMs: Int) {
        self.server = server
        self.answered = answered
        self.code = code
        self.addresses = addresses
        self.message = message
        self.elapsedMs = elapsedMs
    }
}

// MARK: reachPeers

/// TCP connects from this node to other nodes' addresses (the controller asks each node's
/// kubelet port, k3s's inbound rule https://docs.k3s.io/installation/requirements#inbound-rules-for-k3s-nodes):
/// each peer connected to once and closed at once, nothing sent. A peer that does not connect is a
/// result, not an error.
public struct ReachPeersRequest: RequestMessage {
    public typealias Result = ReachPeersResult
    public static let method = Method.reachPeers
    /// Peers in one request at most.
    public static let peersMax = 512
    /// Bound on each connect, at most.
    public static let connectTimeoutSecondsMax = 10
    /// Connects the agent makes at once, at most: a request's connects take up to
    /// `ceil(peers / connectsAtOnceMax)` rounds of `timeoutSeconds`.
    public static let connectsAtOnceMax = 16

    public var peers: [ReachPeer]
    /// Bound on each connect.
    public var timeoutSeconds: Int

    public init(peers: [ReachPeer], timeoutSeconds: Int) {
        self.peers = peers
        self.timeoutSeconds = timeoutSeconds
    }

    public func validate() throws(MessageError) {
        guard (1...Self.peersMax).contains(peers.count) else {
            throw .invalid("reachPeers.peers must list 1...\(Self.peersMax) peers (lists \(peers.count)); split a larger cluster over several requests")
        }
        try checkPositive(timeoutSeconds, "reachPeers.timeoutSeconds", max: Self.connectTimeoutSecondsMax)
        for peer in peers {
            try checkText(peer.node, field: "reachPeers.peers.node", bytesMax: 253)
            guard IPAddressText.isLiteral(peer.host) else {
                throw .invalid("reachPeers.peers.host \"\(peer.host.prefix(80))\" is not an IPv4 or IPv6 address; give the node's InternalIP")
            }
            guard (1...65535).contains(peer.port) else { throw .invalid("reachPeers.peers.port must be 1...65535 (is \(peer.port))") }
        }
    }

    public var payload: RequestPayload { .reachPeers(self) }
}

/// One address to connect to, and the node it belongs to.
public struct ReachPeer: Codable, Equatable, Sendable {
    public var node: String
    /// An IPv4 or IPv6 address (no name: the agent resolves nothing).
    public var host: String
    public var port: Int

    public init(node: String, host: String, port: Int) {
        self.node = node
        self.host = host
        self.port = port
    }
}

/// How one connect ended.
public enum ReachOutcome: String, Codable, Sendable, CaseIterable {
    /// The handshake completed.
    case reachable
    /// The peer answered with a reset (ECONNREFUSED): nothing listens there, or a firewall rejects.
    case refused
    /// No answer within the bound: a firewall that drops, a host that is down, a full backlog.
    case timeout
    /// Any other failure (no route, network unreachable, …); `message` has the errno text.
    case unreachable
}

public struct ReachPeerResult: Codable, Equatable, Sendable {
    public var node: String
    public var host: String
    public var port: Int
    public var outcome: ReachOutcome
    /// The errno text or the bound reached; empty when reachable.
    public var message: String
    public var elapsedMs: Int

    public init(node: String, host: String, port: Int, outcome: ReachOutcome, message: String, elapsedMs: Int) {
        self.node = node
        self.host = host
        self.port = port
        self.outcome = outcome
        self.message = message
        self.elapsedMs = elapsedMs
    }
}

public struct ReachPeersResult: ResultMessage {
    /// One per peer asked, in the request's order.
    public var peers: [ReachPeerResult]

    public init(peers: [ReachPeerResult]) { self.peers = peers }
}
