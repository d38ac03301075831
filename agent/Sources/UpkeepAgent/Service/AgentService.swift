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

/// The agent daemon's core shell: it owns the journal and the `UpgradeMachine`, persists every
/// record before acting, performs the machine's effects (keep, place, restart, probe) and feeds
/// their results back, wakes the machine for the watchdog, and serves each request by operation
/// id. The shell operations (staging, cordon, drain, uncordon, backup) run here too, recorded in
/// the same ledger: `AgentService+Staging`, `AgentService+NodeOperations`. What it works with is
/// `AgentEnvironment`.
public actor AgentService {
    public let environment: AgentEnvironment
    private let journalFile: JournalFile
    private let binary: K3sBinaryInfo
    private let lock: DataDirLock
    var machine: UpgradeMachine
    private var waiters: [String: [(token: UInt64, continuation: CheckedContinuation<OperationOutcome, any Error>)]] = [:]
    private var lastWaiterToken: UInt64 = 0
    private var wakeTask: Task<Void, Never>?
    private var retentionTask: Task<Void, Never>?
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
                                               gateIntervalMs: Int64(environment.config.probes.gateIntervalMs),
                                               role: environment.role)
        let service = AgentService(environment: environment, journalFile: journalFile, lock: lock,
                                   machine: UpgradeMachine(journal: state, settings: settings))
        environment.limits.write()
        await service.recover()
        await service.startRetentionSweeps()
        return service
    }

    /// Removes the datastore plaintext past its retention (`PlaintextRetention`) now, with what an
    /// interrupted backup or upload left, and then every `sweepIntervalMs` until `close`.
    private func startRetentionSweeps() {
        let retention = PlaintextRetention(dataDir: environment.config.dataDir)
        let (environment, logger) = (environment, logger)
        func sweep(leftovers: Bool) {
            let (removed, failures) = retention.sweep(nowUnixMs: environment.clock().milliseconds, leftovers: leftovers)
            for path in removed {
                logger.notice("removed \(path): datastore plaintext past its \(PlaintextRetention.retentionMs / 3_600_000) h retention, or left by an interrupted run")
            }
            for failure in failures { logger.error("could not remove datastore plaintext (retried at the next sweep): \(failure)") }
        }
        sweep(leftovers: true)
        retentionTask = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(PlaintextRetention.sweepIntervalMs))
                guard !Task.isCancelled else { return }
                sweep(leftovers: false)
            }
        }
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

    /// `imagesSHA256`: a staged images tarball of the same version, required on an air-gapped
    /// node (`AirgapImages`) and ignored elsewhere.
    public func install(operationID: String, sha256: String, healthTimeoutMs: Int64, watchdogTimeoutMs: Int64,
                        imagesSHA256: String? = nil) async throws -> OperationOutcome {
        let target = try stagedBinary(sha256, for: operationID)
        let images = try stagedImages(imagesSHA256, for: target, operationID: operationID)
        let live = await binary.live()
        let command = UpgradeMachine.InstallCommand(operationID: operationID, target: target, healthTimeoutMs: healthTimeoutMs,
                                                    watchdogTimeoutMs: watchdogTimeoutMs, images: images)
        return try await submit(.install(command, live: live), operationID: operationID)
    }

    /// Back to the kept previous binary, or to a staged one.
    public func rollback(operationID: String, toSHA256 sha256: String?, healthTimeoutMs: Int64) async throws -> OperationOutcome {
        let target = try sha256.map { (sha) throws -> BinaryRef in try stagedBinary(sha, for: operationID) }
        let live = await binary.live()
        return try await submit(.rollback(.init(operationID: operationID, target: target, healthTimeoutMs: healthTimeoutMs), live: live),
                                operationID: operationID)
    }

    /// Stops the k3s unit; ends any install watch.
    public func stopK3s(operationID: String) async throws -> OperationOutcome {
        try await submit(.stopK3s(operationID: operationID), operationID: operationID)
    }

    /// Restores the received backup `backupSHA256` with the staged binary `binarySHA256` (which
    /// must be of `k3sVersion`), then starts and probes k3s. `imagesSHA256`: as for `install`.
    public func restore(operationID: String, backupSHA256: String, binarySHA256: String, k3sVersion: String,
                        healthTimeoutMs: Int64, imagesSHA256: String? = nil) async throws -> OperationOutcome {
        let target = try datastoreTarget(binarySHA256, k3sVersion: k3sVersion, for: operationID)
        let images = try stagedImages(imagesSHA256, for: target, operationID: operationID)
        guard let format = environment.datastoreRestore.received(backupSHA256) ?? machine.journal.operation(operationID).flatMap({ entry in
            if case .restore(_, let format)? = entry.plan?.datastore { return format }
            return nil
        }) else {
            throw AgentFailure(.notFound, "no received backup with sha256 \(backupSHA256); send it with restoreBackup first")
        }
        let command = UpgradeMachine.RestoreCommand(operationID: operationID, target: target, backupSHA256: backupSHA256, format: format,
                                                    healthTimeoutMs: healthTimeoutMs, images: images)
        return try await submit(.restore(command, live: await binary.live()), operationID: operationID)
    }

    /// Deletes `server/db` with the staged binary `binarySHA256` live, then starts and probes k3s:
    /// the server joins the cluster a `restore` started. `imagesSHA256`: as for `install`.
    public func rejoin(operationID: String, binarySHA256: String, k3sVersion: String, healthTimeoutMs: Int64,
                       imagesSHA256: String? = nil) async throws -> OperationOutcome {
        let target = try datastoreTarget(binarySHA256, k3sVersion: k3sVersion, for: operationID)
        let images = try stagedImages(imagesSHA256, for: target, operationID: operationID)
        let command = UpgradeMachine.RejoinCommand(operationID: operationID, target: target, healthTimeoutMs: healthTimeoutMs, images: images)
        return try await submit(.rejoin(command, live: await binary.live()), operationID: operationID)
    }

    private func datastoreTarget(_ sha256: String, k3sVersion: String, for operationID: String) throws -> BinaryRef {
        var target = try stagedBinary(sha256, for: operationID)
        if let staged = target.k3sVersion, staged != k3sVersion {
            throw AgentFailure(.conflict, "the staged binary \(sha256.prefix(12)) is \(staged), not \(k3sVersion); stage the binary of \(k3sVersion)")
        }
        target.k3sVersion = k3sVersion
        return target
    }

    public func commit(operationID: String, installOperationID: String) async throws -> OperationOutcome {
        try await submit(.commit(.init(operationID: operationID, installOperationID: installOperationID)), operationID: operationID)
    }

    /// Runs `work` once under `operationID`, recorded in the journal; a replay answers the record.
    public func runShellOperation(operationID: String, kind: OperationKind, fingerprint: String,
                                  work: @escaping @Sendable () async -> OperationOutcome) async throws -> OperationOutcome {
        try await submit(.begin(operationID: operationID, kind: kind, fingerprint: fingerprint), operationID: operationID) { service in
            Task {
                let outcome = await work()
                await service.finishShellOperation(operationID, outcome)
            }
        }
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
                           staged: environment.store.staged(), airgapImagesDir: environment.airgapped ? environment.images.directory : nil,
                           watch: machine.journal.watch,
                           recentOperations: machine.journal.recent(limit: recentLimit))
    }

    /// Stops taking requests, stops the watchdog timer and releases the data directory. Running
    /// effects finish on their own; the journal already says how to resume them.
    public func close() {
        closed = true
        wakeTask?.cancel()
        wakeTask = nil
        retentionTask?.cancel()
        retentionTask = nil
        lock.release()
    }

    /// For the watchdog ping: answers only when the actor is not wedged.
    public func alive() -> Bool { true }

    // MARK: - Machine plumbing

    private func stagedBinary(_ sha256: String, for operationID: String) throws -> BinaryRef {
        if let artifact = environment.store.stagedArtifact(sha256) {
            if let name = artifact.imagesFileName {
                throw AgentFailure(.conflict, "\(sha256) is the staged images tarball \(name), not a k3s binary")
            }
            return BinaryRef(sha256: sha256, k3sVersion: artifact.k3sVersion, store: .staging)
        }
        // A replay answers from the journal even when the artifact has since been pruned.
        guard machine.journal.operation(operationID) != nil else {
            throw AgentFailure(.notFound, "no staged k3s binary with sha256 \(sha256); stage it first")
        }
        return BinaryRef(sha256: sha256, k3sVersion: nil, store: .staging)
    }

    /// The images tarball an install, restore or rejoin on an air-gapped node places with
    /// `target`; nil on other nodes.
    private func stagedImages(_ sha256: String?, for target: BinaryRef, operationID: String) throws -> ImagesRef? {
        guard environment.airgapped else { return nil }
        let directory = environment.images.directory
        guard let sha256 else {
            throw AgentFailure(.conflict, "k3s on this node imports its images from \(directory) (air-gapped, https://docs.k3s.io/installation/airgap): "
                               + "starting k3s \(target.k3sVersion ?? "of the staged binary") needs the release's k3s-airgap-images-\(MachineArch.current()) tarball of that version; "
                               + "stage it (artifact airgapImages) and name it in imagesSHA256")
        }
        guard let artifact = environment.store.stagedArtifact(sha256), let name = artifact.imagesFileName else {
            // A replay answers from the journal even when the tarball has since been pruned.
            if machine.journal.operation(operationID) != nil { return ImagesRef(sha256: sha256, fileName: "", k3sVersion: nil) }
            throw AgentFailure(.notFound, "no staged images tarball with sha256 \(sha256); stage it first (artifact airgapImages)")
        }
        guard target.k3sVersion == nil || artifact.k3sVersion == target.k3sVersion else {
            throw AgentFailure(.conflict, "the staged images tarball \(name) is of \(artifact.k3sVersion), the binary of \(target.k3sVersion ?? "?"); stage the images of the same release")
        }
        return ImagesRef(sha256: sha256, fileName: name, k3sVersion: artifact.k3sVersion)
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

    private func finishShellOperation(_ id: String, _ outcome: OperationOutcome) {
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
    func execute(_ actions: [UpgradeMachine.Action]) -> [UpgradeMachine.Action] {
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
            case .keepImages:
                do { try environment.images.keep() } catch { throw AgentFailure.io(error) }
            case .placeImages(let images):
                do { try environment.images.place(environment.store.stagedPath(images.sha256), as: images.fileName) } catch { throw AgentFailure.io(error) }
                environment.logger.notice("placed \(images) in \(environment.images.directory)")
            case .restoreImages:
                do { try environment.images.restore() } catch { throw AgentFailure.io(error) }
                environment.logger.notice("put the kept images tarballs back in \(environment.images.directory)")
            case .restartUnit:
                environment.logger.notice("restarting \(environment.unit)")
                try await environment.systemctl.restart()
            case .probe(let expected, let notBefore):
                await environment.sleep(until: notBefore)
                return .probed(await environment.probes.run(expectedK3sVersion: expected))
            case .gate(let notBefore):
                await environment.sleep(until: notBefore)
                return .probed(await environment.probes.gate())
            case .stopUnit:
                environment.logger.notice("stopping \(environment.unit)")
                return .stopped(wasActive: try await environment.systemctl.stop())
            case .changeDatastore(let change):
                let restore = environment.datastoreRestore
                switch change {
                case .restore(let sha256, let format):
                    try await restore.restore(sha256: sha256, format: format)
                    environment.logger.notice("restored the \(format.rawValue) backup \(sha256.prefix(12)) into \(environment.config.k3sDataDir)/server")
                case .clear:
                    try restore.clear()
                    environment.logger.notice("deleted \(environment.config.k3sDataDir)/server/db to rejoin the restored cluster")
                }
            case .removeRestoreFile(let sha256):
                environment.datastoreRestore.remove(sha256)
                environment.logger.notice("removed the received backup \(sha256.prefix(12)): it was restored")
            }
            return .done
        } catch {
            environment.logger.error("effect \(effect) failed: \(error)")
            return .failed(error.message)
        }
    }
}
