@testable import UpkeepAgent
import UpkeepAgentCore
import UpkeepCore

/// A node the pure machine's effects act on, in memory: what the live path holds, what is kept,
/// what runs, and which binaries become healthy. Used to script the machine and to crash it.
struct SimulatedNode {
    var live: String
    var kept: Set<String> = []
    var running: String?
    var startedAt = Instant(milliseconds: 0)
    /// Binaries that pass probes this long after they start; absent ones never do.
    var healthyAfterMs: [String: Int64] = [:]
    var versions: [String: String] = [:]
    var restartFails = false
    var restarts = 0
    var stopFails = false
    /// What `server/db` holds: a name the test chooses, "restored <sha>" after a restore, nil after a clear.
    var datastore: String? = "datastore"
    /// Received backups (`<dataDir>/restore/<sha256>`).
    var restoreFiles: Set<String> = []
    /// How many datastore changes were carried out (a restore done twice shows here).
    var datastoreChanges = 0
    /// Air-gapped (https://docs.k3s.io/installation/airgap): a binary passes its probes only
    /// while k3s's images directory holds the tarball of its version.
    var airgapped = false
    /// k3s's images directory: file name → the version whose images the tarball holds.
    var imagesDir: [String: String] = [:]
    /// The tarballs the agent kept aside with the previous binary.
    var keptImages: [String: String] = [:]
    var placeImagesFails = false

    func binary(_ sha: String, _ store: BinaryRef.Store = .staging) -> BinaryRef {
        BinaryRef(sha256: sha, k3sVersion: versions[sha], store: store)
    }

    var liveBinary: LiveBinary { LiveBinary(sha256: live, k3sVersion: versions[live]) }

    func probe(expected: String?, now: Instant) -> ProbeReport {
        guard let running else {
            return ProbeReport(checks: [ProbeReport.Check(name: "unit", ok: false, latencyMs: 1, message: "inactive")])
        }
        let version = versions[running]
        let imagesThere = !airgapped || imagesDir.values.contains { $0 == version }
        let ready = imagesThere && (healthyAfterMs[running].map { now >= startedAt.adding(milliseconds: $0) } ?? false)
        return ProbeReport(checks: [
            ProbeReport.Check(name: "unit", ok: true, latencyMs: 1, message: "active"),
            ProbeReport.Check(name: "kubelet", ok: ready, latencyMs: 1, message: ready ? "ok" : "connection refused"),
            ProbeReport.Check(name: "version", ok: expected == nil || version == expected, latencyMs: 1, message: version ?? "unknown"),
        ])
    }
}

/// Drives an `UpgradeMachine` against a `SimulatedNode` with a clock the test owns, keeping the
/// journal records it persisted, the replies and the rejections.
struct MachineHarness {
    var machine: UpgradeMachine
    var node: SimulatedNode
    var records: [JournalRecord] = []
    var now = Instant(milliseconds: 1_000_000)
    var replies: [String: OperationOutcome] = [:]
    var rejections: [UpgradeMachine.Rejection] = []
    var proceeds: [String] = []
    var pending: (effect: UpgradeMachine.Effect, token: UInt64)?
    var performed: [UpgradeMachine.Effect] = []
    /// The node as it was when each record was about to be persisted: a crash there loses that
    /// record and everything after it, but not the effects already performed.
    var nodeBeforeRecord: [SimulatedNode] = []
    static let settings = UpgradeMachine.Settings(probeIntervalMs: 100, gateIntervalMs: 20)
    let settings: UpgradeMachine.Settings

    init(node: SimulatedNode, records: [JournalRecord] = [], role: NodeRole = .agent) {
        self.node = node
        self.records = records
        settings = UpgradeMachine.Settings(probeIntervalMs: Self.settings.probeIntervalMs, gateIntervalMs: Self.settings.gateIntervalMs, role: role)
        machine = UpgradeMachine(journal: JournalState(records: records), settings: settings)
        send(.recover(live: node.liveBinary))
    }

    mutating func send(_ event: UpgradeMachine.Event) {
        apply(machine.handle(event, now: now))
    }

    mutating func apply(_ actions: [UpgradeMachine.Action]) {
        for action in actions {
            switch action {
            case .persist(let record):
                nodeBeforeRecord.append(node)
                records.append(record)
            case .perform(let effect, let token):
                precondition(pending == nil, "two effects outstanding")
                pending = (effect, token)
            case .proceed(let id): proceeds.append(id)
            case .reply(let id, let outcome): replies[id] = outcome
            case .reject(let rejection): rejections.append(rejection)
            }
        }
    }

    /// Performs the outstanding effect on the node; false when there is none.
    @discardableResult
    mutating func step() -> Bool {
        guard let (effect, token) = pending else { return false }
        pending = nil
        performed.append(effect)
        send(.completed(token: token, perform(effect)))
        return true
    }

    mutating func perform(_ effect: UpgradeMachine.Effect) -> UpgradeMachine.EffectResult {
        switch effect {
        case .keepPrevious(let live):
            precondition(live.sha256 == node.live, "keepPrevious of a binary that is not live")
            node.kept.insert(live.sha256)
            return .done
        case .place(let binary):
            if binary.store == .previous { precondition(node.kept.contains(binary.sha256), "placing a previous binary never kept") }
            node.live = binary.sha256
            return .done
        case .restartUnit:
            node.restarts += 1
            if node.restartFails {
                node.running = nil
                return .failed("Job for k3s.service failed")
            }
            node.running = node.live
            node.startedAt = now
            return .done
        case .probe(let expected, let notBefore):
            now = max(now, notBefore).adding(milliseconds: 5)
            return .probed(node.probe(expected: expected, now: now))
        case .gate(let notBefore):
            now = max(now, notBefore).adding(milliseconds: 1)
            return .probed(ProbeReport(checks: node.probe(expected: nil, now: now).checks.filter { $0.name == "kubelet" || $0.name == "unit" && !$0.ok }))
        case .stopUnit:
            if node.stopFails { return .failed("k3s.service is still deactivating after 120 s") }
            defer { node.running = nil }
            return .stopped(wasActive: node.running != nil)
        case .changeDatastore(let change):
            precondition(node.running == nil, "the datastore changed under a running k3s")
            node.datastoreChanges += 1
            switch change {
            case .restore(let sha, _):
                guard node.restoreFiles.contains(sha) else { return .failed("no received backup \(sha)") }
                node.datastore = "restored \(sha)"
            case .clear:
                node.datastore = nil
            }
            return .done
        case .removeRestoreFile(let sha):
            node.restoreFiles.remove(sha)
            return .done
        case .keepImages:
            node.keptImages = node.imagesDir
            return .done
        case .placeImages(let images):
            if node.placeImagesFails { return .failed("write \(images.fileName): No space left on device") }
            node.imagesDir = [images.fileName: images.k3sVersion ?? "?"]
            return .done
        case .restoreImages:
            node.imagesDir = node.keptImages
            return .done
        }
    }

    /// Performs effects until none is outstanding, ticking the watchdog when it is due and `untilMs`
    /// allows. Bounded so a machine that never settles fails the test instead of hanging it.
    mutating func settle(until: Instant? = nil) {
        for _ in 0..<10_000 {
            if step() { continue }
            guard let wake = machine.nextWake, let until, wake <= until else { return }
            now = max(now, wake)
            send(.tick)
        }
        preconditionFailure("the machine did not settle")
    }

    /// A fresh machine over the records persisted so far, as a restarted agent would build it.
    func restarted() -> MachineHarness {
        var copy = MachineHarness(node: node, records: records, now: now, settings: settings)
        copy.replies = [:]
        return copy
    }

    private init(node: SimulatedNode, records: [JournalRecord], now: Instant, settings: UpgradeMachine.Settings) {
        self.node = node
        self.records = records
        self.now = now
        self.settings = settings
        machine = UpgradeMachine(journal: JournalState(records: records), settings: settings)
        send(.recover(live: node.liveBinary))
    }
}
