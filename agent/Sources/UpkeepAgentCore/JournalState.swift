/// What the agent knows durably: the state the journal's records fold into. Recovery at start
/// reads it; nothing here reads the disk or the clock.
public struct JournalState: Codable, Equatable, Sendable {
    /// Finished operations remembered for replays; older ones are forgotten.
    public static let finishedOperationsMax = 256

    public private(set) var operations: [String: OperationEntry] = [:]
    /// Operation ids, oldest first.
    public private(set) var order: [String] = []
    /// The binary the last install replaced, kept in `previous/`.
    public private(set) var previous: BinaryRef?
    /// True when the images directory's tarballs of `previous` are kept aside too (an air-gapped
    /// install): whatever puts `previous` back puts them back. Nil in journals from before.
    public private(set) var previousImagesKept: Bool?
    /// A healthy install waiting for `commit`.
    public private(set) var watch: WatchRecord?
    /// Set while the node is cordoned by this agent: whether it was unschedulable before.
    public private(set) var cordonWasUnschedulable: Bool?

    public init() {}

    public init(records: some Sequence<JournalRecord>) {
        for record in records { apply(record) }
    }

    public func operation(_ id: String) -> OperationEntry? { operations[id] }

    /// Whether the binary with this digest is known to have run healthy here: an install or
    /// restore of it passed its probes, or nothing this agent did ever made it live (it was
    /// running before, as far as the journal knows). False only when every operation that
    /// made it live ended without passing its probes.
    public func wasHealthy(_ sha256: String) -> Bool {
        let madeLive = operations.values.filter { entry in
            [.install, .rollback, .restore, .rejoin].contains(entry.kind) && entry.plan?.target.sha256 == sha256 && !entry.isRunning
        }
        return madeLive.isEmpty || madeLive.contains { $0.outcome?.state == .succeeded }
    }

    /// Operations that began and did not finish.
    public var running: [OperationEntry] { order.compactMap { operations[$0] }.filter(\.isRunning) }

    /// The newest `limit` operations, newest first.
    public func recent(limit: Int) -> [OperationEntry] {
        order.suffix(limit).reversed().compactMap { operations[$0] }
    }

    public mutating func apply(_ record: JournalRecord) {
        switch record {
        case .began(let entry):
            if operations[entry.id] == nil { order.append(entry.id) }
            operations[entry.id] = entry
        case .step(let id, let step):
            guard var entry = operations[id] else { return }
            switch step {
            case .previousKept: break
            case .placed(let sha):
                // restartIssued stays: once any restart ran, the running k3s may differ from the live file.
                entry.placedSHA256 = sha
            case .restarting: entry.restartIssued = true
            case .reverting: entry.reverting = true
            case .probeFailed(let report): entry.failedProbe = report
            case .datastoreChanged: entry.datastoreChanged = true
            case .imagesKept:
                entry.imagesKept = true
                previousImagesKept = true
            }
            operations[id] = entry
        case .finished(let id, let outcome, let at):
            guard var entry = operations[id] else { return }
            entry.outcome = outcome
            entry.finishedAt = at
            operations[id] = entry
            forgetOldOperations()
        case .previousKept(let binary):
            previous = binary
            previousImagesKept = nil
        case .watchStarted(let record):
            watch = record
        case .watchReverting(let id):
            if watch?.installID == id { watch?.reverting = true }
        case .watchEnded(let id, let end):
            if watch?.installID == id { watch = nil }
            operations[id]?.watchEnd = end
        case .cordonNoted(let wasUnschedulable):
            if cordonWasUnschedulable == nil { cordonWasUnschedulable = wasUnschedulable }
        case .cordonCleared:
            cordonWasUnschedulable = nil
        case .snapshot(let state):
            self = state
        }
    }

    private mutating func forgetOldOperations() {
        var finished = order.count { operations[$0]?.isRunning == false }
        guard finished > Self.finishedOperationsMax else { return }
        order.removeAll { id in
            guard finished > Self.finishedOperationsMax, let entry = operations[id], !entry.isRunning,
                  watch?.installID != id else { return false }
            operations[id] = nil
            finished -= 1
            return true
        }
    }
}
