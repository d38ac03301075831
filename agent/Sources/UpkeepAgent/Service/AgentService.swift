import Logging
import UpkeepAgentCore
import UpkeepCore
import UpkeepKube
import UpkeepPKI
import UpkeepProtocol

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What the service works with, built once from the configuration.
public struct AgentEnvironment: Sendable {
    public var config: AgentConfig
    public var unit: String
    public var store: ArtifactStore
    public var systemctl: Systemctl
    public var probes: HealthProbes
    public var logger: Logger
    /// Wall-clock time (Unix milliseconds), so the watchdog deadline survives restarts.
    public var clock: @Sendable () -> Instant
    /// The Kubernetes API, for cordon, drain, uncordon and the node-Ready probe.
    public var kube: KubeAccess
    /// Called when the journal cannot be written: the agent must stop rather than act unrecorded.
    public var fatal: @Sendable (String) -> Void

    public init(config: AgentConfig, unit: String, store: ArtifactStore, systemctl: Systemctl, probes: HealthProbes,
                kube: KubeAccess, logger: Logger, clock: @escaping @Sendable () -> Instant = AgentEnvironment.wallClock,
                fatal: @escaping @Sendable (String) -> Void = AgentEnvironment.exitOnFatal) {
        self.config = config
        self.unit = unit
        self.store = store
        self.systemctl = systemctl
        self.probes = probes
        self.kube = kube
        self.logger = logger
        self.clock = clock
        self.fatal = fatal
    }

    public var isServer: Bool { unit == "k3s" }
    /// k3s's role on this node, from the unit that runs it.
    public var role: UpkeepCore.NodeRole { isServer ? .server : .agent }

    public static let wallClock: @Sendable () -> Instant = {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Instant(milliseconds: Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000)
    }

    public static let exitOnFatal: @Sendable (String) -> Void = { message in
        StderrLogHandler(label: "upkeep-agent", level: .critical).log(event: LogEvent(level: .critical, message: "\(message)", metadata: nil,
                                                                                         source: "UpkeepAgent", file: #fileID, function: #function, line: #line))
        exit(70)
    }

    /// Returns at `instant` by `clock` (at once when that has passed).
    func sleep(until instant: Instant) async {
        let waitMs = instant.milliseconds(since: clock())
        if waitMs > 0 { try? await Task.sleep(for: .milliseconds(waitMs)) }
    }
}

/// The agent daemon's core shell: it owns the journal and the `UpgradeMachine`, persists every
/// record before acting, performs the machine's effects (keep, place, restart, probe) and feeds
/// their results back, wakes the machine for the watchdog, and serves each request by operation
/// id. Staging and the other generic operations run here too, recorded in the same ledger.
public actor AgentService {
    public let environment: AgentEnvironment
    private let journalFile: JournalFile
    private let binary: K3sBinaryInfo
    private let lock: DataDirLock
    private var machine: UpgradeMachine
    private var waiters: [String: [(token: UInt64, continuation: CheckedContinuation<OperationOutcome, any Error>)]] = [:]
    private var lastWaiterToken: UInt64 = 0
    private var wakeTask: Task<Void, Never>?
    private var closed = false
    private var logger: Logger { environment.logger }

    private init(environment: AgentEnvironment, journalFile: JournalFile, lock: DataDirLock, machine: UpgradeMachine) {
        self.environment = environment
        self.journalFile = journalFile
        self.lock = lock
        self.machine = machine
        binary = K3sBinaryInfo(path: environment.config.k3sBinary, versionTimeoutSeconds: Double(environment.config.versionTimeoutSeconds))
    }

    /// Locks the data directory, cleans what an interrupted run left, reads the journal and
    /// resolves any interrupted operation (which may restart k3s and wait for its health).
    public static func start(_ environment: AgentEnvironment) async throws(AgentFailure) -> AgentService {
        do {
            try FileSystem.makeDirectories(environment.config.dataDir)
        } catch {
            throw .io(error)
        }
        let lock = try DataDirLock(dataDir: environment.config.dataDir)
        do {
            try environment.store.prepare()
        } catch {
            throw .io(error)
        }
        let journalFile = JournalFile(path: "\(environment.config.dataDir)/journal.jsonl")
        let records = try journalFile.open()
        let state = JournalState(records: records)
        let settings = UpgradeMachine.Settings(probeIntervalMs: Int64(environment.config.probes.intervalMs),
                                               gateIntervalMs: Int64(environment.config.probes.gateIntervalMs))
        let service = AgentService(environment: environment, journalFile: journalFile, lock: lock,
                                   machine: UpgradeMachine(journal: state, settings: settings))
        await service.recover()
        return service
    }

    private func recover() async {
        let live = await binary.live()
        if live == nil { logger.error("the live k3s binary \(environment.config.k3sBinary) is missing or unreadable") }
        let interrupted = machine.journal.running.map(\.id)
        if !interrupted.isEmpty { logger.warning("resolving interrupted operations", metadata: ["operations": "\(interrupted)"]) }
        _ = execute(machine.handle(.recover(live: live), now: environment.clock()))
    }

    /// Waits until no operation of the journal is running (recovery included), within a bound.
    public func settled(timeoutMs: Int64) async -> Bool {
        let deadline = environment.clock().adding(milliseconds: timeoutMs)
        while !machine.journal.running.isEmpty || machine.isBusy {
            guard environment.clock() < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return true
    }

    public var journal: JournalState { machine.journal }

    // MARK: - Requests

    public func install(operationID: String, sha256: String, healthTimeoutMs: Int64, watchdogTimeoutMs: Int64) async throws -> OperationOutcome {
        let target = try stagedBinary(sha256, for: operationID)
        let live = await binary.live()
        let command = UpgradeMachine.InstallCommand(operationID: operationID, target: target, healthTimeoutMs: healthTimeoutMs,
                                                    watchdogTimeoutMs: watchdogTimeoutMs)
        return try await submit(.install(command, live: live), operationID: operationID)
    }

    /// Back to the kept previous binary, or to a staged one.
    public func rollback(operationID: String, toSHA256 sha256: String?, healthTimeoutMs: Int64) async throws -> OperationOutcome {
        let target = try sha256.map { (sha) throws -> BinaryRef in try stagedBinary(sha, for: operationID) }
        let live = await binary.live()
        return try await submit(.rollback(.init(operationID: operationID, target: target, healthTimeoutMs: healthTimeoutMs), live: live),
                                operationID: operationID)
    }

    public func commit(operationID: String, installOperationID: String) async throws -> OperationOutcome {
        try await submit(.commit(.init(operationID: operationID, installOperationID: installOperationID)), operationID: operationID)
    }

    /// Receives a binary through `next` (pieces until nil) into the staging area: free space
    /// checked before anything is written, digest and length verified, fsynced, made executable,
    /// and its `--version` checked against `k3sVersion`. On any failure nothing is left behind.
    public func stage(operationID: String, sha256: String, bytes: Int64, k3sVersion: String,
                      next: @escaping @Sendable () async throws -> [UInt8]?) async throws -> OperationOutcome {
        let store = environment.store
        if store.stagedArtifact(sha256) == nil, machine.journal.operation(operationID) == nil {
            // Refused before the ledger, so a retry with the same id after freeing space works.
            let upload = try store.beginStaging(sha256: sha256, bytes: bytes, k3sVersion: k3sVersion)
            upload.abort()
        }
        let clock = environment.clock
        let versionTimeout = Double(environment.config.versionTimeoutSeconds)
        let keep = Set([machine.journal.watch?.installed.sha256].compactMap { $0 })
        return try await generic(operationID: operationID, kind: .stage, fingerprint: "stage \(sha256) \(bytes)") {
            await Self.stageWork(store: store, sha256: sha256, bytes: bytes, k3sVersion: k3sVersion, next: next,
                                 versionTimeoutSeconds: versionTimeout, nowUnixMs: clock().milliseconds, keep: keep)
        }
    }

    /// Runs `work` once under `operationID`, recorded in the journal; a replay answers the record.
    public func generic(operationID: String, kind: OperationKind, fingerprint: String,
                        work: @escaping @Sendable () async -> OperationOutcome) async throws -> OperationOutcome {
        try await submit(.begin(operationID: operationID, kind: kind, fingerprint: fingerprint), operationID: operationID) { service in
            Task {
                let outcome = await work()
                await service.finishGeneric(operationID, outcome)
            }
        }
    }

    /// Backs up this server's datastore into `<dataDir>/backups`; the outcome names the file.
    public func backup(operationID: String, name: String?) async throws -> OperationOutcome {
        let backup = datastoreBackup
        let clock = environment.clock
        let base = name ?? "upkeep"
        return try await generic(operationID: operationID, kind: .backup, fingerprint: "backup \(base)") {
            do {
                let report = try await backup.run(name: base, nowUnixMs: clock().milliseconds)
                return OperationOutcome(state: .succeeded, message: "backed up the datastore to \(report.fileName) (\(report.bytes) bytes)",
                                        body: .backup(report))
            } catch let failure as AgentFailure {
                return .failed(failure.code, failure.message)
            } catch {
                return .failed(.io, "\(error)")
            }
        }
    }

    public var datastoreBackup: DatastoreBackup {
        let config = environment.config
        return DatastoreBackup(k3sBinary: config.k3sBinary, k3sDataDir: config.k3sDataDir, backupDir: "\(config.dataDir)/backups",
                               nodeName: config.nodeName)
    }

    // MARK: - Cordon, drain, uncordon

    /// Marks the node unschedulable, noting first (durably) whether it already was.
    public func cordon(operationID: String) async throws -> OperationOutcome {
        try await generic(operationID: operationID, kind: .cordon, fingerprint: "cordon") { [self] in
            do {
                let was = try await self.cordonNode()
                return OperationOutcome(state: .succeeded, message: was ? "\(self.nodeName) was already unschedulable; uncordon will leave it so" : "cordoned \(self.nodeName)",
                                        body: .cordon(CordonReport(wasUnschedulable: was)))
            } catch {
                return Self.kubeFailure(error)
            }
        }
    }

    /// Cordons, then evicts the node's pods (`NodeDrainer`), reporting each pod through `progress`.
    public func drain(operationID: String, options: DrainOptions,
                      progress: @escaping @Sendable (PodProgress) async -> Void = { _ in }) async throws -> OperationOutcome {
        let fingerprint = "drain \(options.timeoutSeconds) \(options.gracePeriodSeconds.map(String.init) ?? "-") \(options.deleteEmptyDirData) \(options.podSelector?.description ?? "")"
        return try await generic(operationID: operationID, kind: .drain, fingerprint: fingerprint) { [self] in
            do {
                _ = try await self.cordonNode()
                let report = try await self.drainer().drain(options, progress: progress)
                return OperationOutcome(state: .succeeded, message: "drained \(self.nodeName): \(report.evictedPods) pods evicted, \(report.skippedPods) left alone",
                                        body: .drain(report))
            } catch {
                return Self.kubeFailure(error)
            }
        }
    }

    /// Makes the node schedulable again only when this agent cordoned it and it was schedulable before.
    public func uncordon(operationID: String) async throws -> OperationOutcome {
        try await generic(operationID: operationID, kind: .uncordon, fingerprint: "uncordon") { [self] in
            do {
                guard let was = await self.machineJournal().cordonWasUnschedulable else {
                    return OperationOutcome(state: .succeeded, message: "\(self.nodeName) was not cordoned by this agent; left as it is",
                                            body: .uncordon(UncordonReport(uncordoned: false)))
                }
                if was {
                    await self.note(.clearCordon)
                    return OperationOutcome(state: .succeeded, message: "\(self.nodeName) was unschedulable before Upkeep cordoned it; left cordoned",
                                            body: .uncordon(UncordonReport(uncordoned: false)))
                }
                try await self.drainer().setUnschedulable(false)
                await self.note(.clearCordon)
                return OperationOutcome(state: .succeeded, message: "uncordoned \(self.nodeName)", body: .uncordon(UncordonReport(uncordoned: true)))
            } catch {
                return Self.kubeFailure(error)
            }
        }
    }

    nonisolated var nodeName: String { environment.config.nodeName }

    private func machineJournal() -> JournalState { machine.journal }

    private func note(_ event: UpgradeMachine.Event) {
        _ = execute(machine.handle(event, now: environment.clock()))
    }

    private func drainer() async throws -> NodeDrainer {
        NodeDrainer(client: try await environment.kube.client(), nodeName: nodeName)
    }

    /// Notes the node's schedulability before the first cordon, then cordons. Returns whether
    /// the node was unschedulable before Upkeep cordoned it.
    private func cordonNode() async throws -> Bool {
        let drainer = try await drainer()
        let unschedulable = try await drainer.isUnschedulable()
        note(.noteCordon(wasUnschedulable: unschedulable))
        if !unschedulable { try await drainer.setUnschedulable(true) }
        return machine.journal.cordonWasUnschedulable ?? unschedulable
    }

    private static func kubeFailure(_ error: any Error) -> OperationOutcome {
        if let failure = error as? AgentFailure { return .failed(failure.code, failure.message) }
        return .failed(.kubernetes, "the Kubernetes API refused: \(error)")
    }

    public func probe(expectedK3sVersion: String?) async -> ProbeReport {
        await environment.probes.run(expectedK3sVersion: expectedK3sVersion)
    }

    public func status(recentLimit: Int = 20) async -> AgentStatus {
        let config = environment.config
        var unitState: Systemctl.UnitState?
        var unitError: String?
        do {
            unitState = try await environment.systemctl.show()
        } catch {
            unitError = error.message
        }
        return AgentStatus(nodeName: config.nodeName, unit: environment.unit, role: environment.role, isServer: environment.isServer, arch: MachineArch.current(),
                           live: await binary.live(), unitState: unitState, unitError: unitError, binaryPath: config.k3sBinary,
                           binaryFreeBytes: (try? FileSystem.freeBytes(PathName.directory(config.k3sBinary))) ?? -1,
                           dataDir: config.dataDir, dataFreeBytes: (try? FileSystem.freeBytes(config.dataDir)) ?? -1,
                           staged: environment.store.staged(), watch: machine.journal.watch,
                           recentOperations: machine.journal.recent(limit: recentLimit))
    }

    /// Stops taking requests, stops the watchdog timer and releases the data directory. Running
    /// effects finish on their own; the journal already says how to resume them.
    public func close() {
        closed = true
        wakeTask?.cancel()
        wakeTask = nil
        lock.release()
    }

    /// For the watchdog ping: answers only when the actor is not wedged.
    public func alive() -> Bool { true }

    // MARK: - Machine plumbing

    private func stagedBinary(_ sha256: String, for operationID: String) throws -> BinaryRef {
        if let artifact = environment.store.stagedArtifact(sha256) {
            return BinaryRef(sha256: sha256, k3sVersion: artifact.k3sVersion, store: .staging)
        }
        // A replay answers from the journal even when the artifact has since been pruned.
        guard machine.journal.operation(operationID) != nil else {
            throw AgentFailure(.notFound, "no staged k3s binary with sha256 \(sha256); stage it first")
        }
        return BinaryRef(sha256: sha256, k3sVersion: nil, store: .staging)
    }

    /// Handles `event` for the caller of `operationID` and waits for the operation's outcome.
    private func submit(_ event: UpgradeMachine.Event, operationID: String,
                        proceed: ((AgentService) -> Void)? = nil) async throws -> OperationOutcome {
        guard !closed else { throw AgentFailure(.conflict, "the agent is stopping; retry when it is back") }
        return try await withCheckedThrowingContinuation { continuation in
            lastWaiterToken += 1
            let token = lastWaiterToken
            waiters[operationID, default: []].append((token, continuation))
            let leftovers = execute(machine.handle(event, now: environment.clock()))
            for action in leftovers {
                switch action {
                case .reject(let rejection):
                    waiters[operationID]?.removeAll { $0.token == token }
                    continuation.resume(throwing: rejection)
                case .proceed:
                    proceed?(self)
                default:
                    break
                }
            }
        }
    }

    private func finishGeneric(_ id: String, _ outcome: OperationOutcome) {
        _ = execute(machine.handle(.finish(operationID: id, outcome), now: environment.clock()))
    }

    private func effectCompleted(_ token: UInt64, _ result: UpgradeMachine.EffectResult) {
        _ = execute(machine.handle(.completed(token: token, result), now: environment.clock()))
    }

    private func tick() {
        _ = execute(machine.handle(.tick, now: environment.clock()))
    }

    /// Persists, performs and replies in order; returns the actions that concern the caller
    /// (reject, proceed).
    private func execute(_ actions: [UpgradeMachine.Action]) -> [UpgradeMachine.Action] {
        var leftovers: [UpgradeMachine.Action] = []
        for action in actions {
            switch action {
            case .persist(let record):
                do {
                    try journalFile.append(record)
                } catch {
                    environment.fatal("cannot write the journal, stopping before acting unrecorded: \(error)")
                    return leftovers
                }
            case .perform(let effect, let token):
                logger.debug("effect \(effect)")
                let (environment, binary) = (environment, binary)
                Task {
                    let result = await Self.perform(effect, environment: environment, liveBinary: binary)
                    self.effectCompleted(token, result)
                }
            case .reply(let id, let outcome):
                logger.info("operation \(id) \(outcome.state.rawValue): \(outcome.message)")
                for waiter in waiters.removeValue(forKey: id) ?? [] { waiter.continuation.resume(returning: outcome) }
            case .reject, .proceed:
                leftovers.append(action)
            }
        }
        if journalFile.needsCompaction {
            do {
                try journalFile.compact(machine.journal)
            } catch {
                logger.warning("journal compaction failed (the journal stays as it is): \(error)")
            }
        }
        scheduleWake()
        return leftovers
    }

    private func scheduleWake() {
        wakeTask?.cancel()
        wakeTask = nil
        guard !closed, let wake = machine.nextWake else { return }
        let delayMs = max(0, wake.milliseconds(since: environment.clock()))
        wakeTask = Task {
            try? await Task.sleep(for: .milliseconds(delayMs))
            guard !Task.isCancelled else { return }
            self.tick()
        }
    }

    private static func perform(_ effect: UpgradeMachine.Effect, environment: AgentEnvironment,
                                liveBinary: K3sBinaryInfo) async -> UpgradeMachine.EffectResult {
        do {
            switch effect {
            case .keepPrevious(let live):
                try environment.store.keepPrevious(sha256: live.sha256, knownLive: await liveBinary.identity(ofDigest: live.sha256))
            case .place(let binary):
                try environment.store.place(binary)
                environment.logger.notice("placed \(binary) at \(environment.config.k3sBinary)")
            case .restartUnit:
                environment.logger.notice("restarting \(environment.unit)")
                try await environment.systemctl.restart()
            case .probe(let expected, let notBefore):
                await environment.sleep(until: notBefore)
                return .probed(await environment.probes.run(expectedK3sVersion: expected))
            case .gate(let notBefore):
                await environment.sleep(until: notBefore)
                return .probed(await environment.probes.gate())
            }
            return .done
        } catch {
            environment.logger.error("effect \(effect) failed: \(error)")
            return .failed(error.message)
        }
    }

    private static func stageWork(store: ArtifactStore, sha256: String, bytes: Int64, k3sVersion: String,
                                  next: @Sendable () async throws -> [UInt8]?, versionTimeoutSeconds: Double,
                                  nowUnixMs: Int64, keep: Set<String>) async -> OperationOutcome {
        do {
            if let existing = store.stagedArtifact(sha256) {
                let digest = SHA256.Hasher()
                var count: Int64 = 0
                while let piece = try await next() {
                    count += Int64(piece.count)
                    piece.withUnsafeBytes { digest.update($0) }
                }
                guard count == bytes, digest.finishHex() == sha256 else {
                    return .failed(.digestMismatch, "the upload does not match \(sha256) (\(count) bytes); the staged copy is unchanged")
                }
                return OperationOutcome(state: .succeeded, message: "\(existing.k3sVersion) was already staged; the upload matched it",
                                        body: .stage(StageReport(sha256: sha256, bytes: bytes, k3sVersion: existing.k3sVersion, alreadyStaged: true)))
            }
            let upload = try store.beginStaging(sha256: sha256, bytes: bytes, k3sVersion: k3sVersion)
            defer { upload.abort() }
            do {
                while let piece = try await next() { try upload.write(piece) }
            } catch let failure as AgentFailure {
                throw failure
            } catch {
                throw AgentFailure(.io, "the upload stopped after \(upload.bytesWritten) bytes: \(error); nothing was staged")
            }
            try upload.finish()
            let reported: String
            do {
                reported = try await K3sBinaryInfo.version(of: upload.temporary, timeoutSeconds: versionTimeoutSeconds)
            } catch {
                throw AgentFailure(.conflict, "the uploaded binary does not run here (\(error.message)); is it built for this architecture (\(MachineArch.current()))?")
            }
            guard reported == k3sVersion else {
                throw AgentFailure(.conflict, "the uploaded binary reports \(reported), not the announced \(k3sVersion); nothing was staged")
            }
            let artifact = try upload.publish(k3sVersion: k3sVersion, nowUnixMs: nowUnixMs)
            try? store.pruneStaged(keeping: keep.union([sha256]))
            return OperationOutcome(state: .succeeded, message: "staged \(k3sVersion) (\(sha256.prefix(12)))",
                                    body: .stage(StageReport(sha256: sha256, bytes: artifact.bytes, k3sVersion: k3sVersion, alreadyStaged: false)))
        } catch let failure as AgentFailure {
            return .failed(failure.code, failure.message)
        } catch {
            return .failed(.io, "\(error)")
        }
    }
}

extension Error {
    /// The operator-facing text of an error: an `AgentFailure`'s message, else its description.
    var message: String {
        if let failure = self as? AgentFailure { return failure.message }
        return "\(self)"
    }
}
