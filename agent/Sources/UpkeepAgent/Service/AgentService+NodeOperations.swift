import UpkeepAgentCore
import UpkeepCore
import UpkeepKube
import UpkeepProtocol

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The node operations the shell carries out itself, each recorded in the journal under its
/// operation id: cordon, drain, uncordon (only what this agent cordoned) and the datastore backup.
extension AgentService {
    /// Backs up this server's datastore into `<dataDir>/backups`; the outcome names the file.
    public func backup(operationID: String, name: String?) async throws -> OperationOutcome {
        let backup = datastoreBackup
        let clock = environment.clock
        let base = name ?? "upkeep"
        return try await runShellOperation(operationID: operationID, kind: .backup, fingerprint: "backup \(base)") {
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
        return DatastoreBackup(k3sBinary: config.k3sBinary, k3sDataDir: config.k3sDataDir, backupDir: PlaintextRetention(dataDir: config.dataDir).backupDir,
                               nodeName: config.nodeName)
    }

    // MARK: - Cordon, drain, uncordon

    /// Marks the node unschedulable, noting first (durably) whether it already was.
    public func cordon(operationID: String) async throws -> OperationOutcome {
        try await runShellOperation(operationID: operationID, kind: .cordon, fingerprint: "cordon") { [self] in
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
        let fingerprint = options.fingerprint
        return try await runShellOperation(operationID: operationID, kind: .drain, fingerprint: fingerprint) { [self] in
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
        try await runShellOperation(operationID: operationID, kind: .uncordon, fingerprint: "uncordon") { [self] in
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
        let clock = environment.clock
        return NodeDrainer(client: try await environment.kube.client(), nodeName: nodeName, now: { Double(clock().milliseconds) / 1000 },
                           limits: environment.limits)
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
}
