import Foundation
import NIOConcurrencyHelpers
import UpkeepKube

/// Which datastore the API's view reflects, and whether an answer says it is another one now.
///
/// A datastore restored from a snapshot is another one: etcd gives a restored cluster a new
/// cluster ID (https://etcd.io/docs/v3.4/op-guide/recovery/), and kine, which has none, goes
/// back to the older revision of the restored `state.db` (a write to it lands at a revision
/// already seen, even when the revision has grown past the one seen by the time it answers).
/// Revisions only grow otherwise.
public struct DatastoreIdentity: Sendable, Equatable {
    public private(set) var clusterID: UInt64?
    public private(set) var revision: Int64 = 0

    public init() {}

    /// Takes in the header of an answer and, for a write, the first revision it wrote at; false
    /// when it comes from another datastore than the one seen so far (the view must be
    /// reloaded), after which that one is the one seen.
    public mutating func observe(_ header: Gateway.Header, writtenAt: Int64? = nil) -> Bool {
        let same = (clusterID.map { $0 == header.clusterID } ?? true) && header.revision >= revision
            && (writtenAt.map { $0 > revision } ?? true)
        clusterID = header.clusterID
        revision = same ? max(revision, header.revision) : header.revision
        return same
    }
}

/// The simulated API's storage layer, as the apiserver's: every object under `/registry/…` in
/// the cluster's datastore (the servers' etcd members, or the single server's fake kine),
/// reached through the etcd gateway; `SandboxCluster` keeps the view (the watch cache) and
/// changes it only after the datastore accepted a write.
///
/// Bounds: one write at a time and at most `waitingMax` waiting (`WriteQueue`); each call
/// bounded by the gateway (endpoint failover within `callTimeoutSeconds`); after a failed call,
/// writes fail at once with its error for `retrySeconds` before the datastore is asked again.
/// Failures go to `sandbox.log`, rate-limited (`ThrottledLog`), and are counted (`stats`, served
/// at `/sandbox/v1/datastore`).
public final class ClusterStorage: Sendable {
    public let gateway: EtcdGateway
    let queue: WriteQueue
    let log: ThrottledLog
    let retrySeconds: Double
    /// Objects per page when the view is read back, and per transaction when it seeds.
    static let pageSize: Int64 = 500

    struct State {
        var identity = DatastoreIdentity()
        /// The view holds what the datastore holds (or what it is seeded with).
        var synced = false
        /// Ever synced: a later empty datastore is one that was wiped, not a new one.
        var everSynced = false
        var failure: (error: DatastoreError, at: Double)?
        var stats = Stats()
        /// When the datastore last answered or failed (idle probes go out `probeSeconds` after).
        var lastCallAt: Double = 0
    }

    /// A quiet API asks its datastore this often whether it is still the one the view reflects.
    static let probeSeconds = 2.0

    /// Counters: the metric behind the log lines.
    public struct Stats: Sendable, Equatable {
        public var writes = 0
        /// Writes refused: the datastore failed, or failed less than `retrySeconds` ago, or
        /// too many were waiting.
        public var refused = 0
        /// Transactions whose compares failed (someone else wrote a key): the view is reloaded.
        public var conflicts = 0
        /// Views read back from the datastore (a restore, a conflict).
        public var reloads = 0
        /// Datastores filled with the cluster (the first one, or one that was wiped).
        public var seeds = 0
    }

    let state = NIOLockedValueBox(State())

    public init(gateway: EtcdGateway, log: ThrottledLog = ThrottledLog(), retrySeconds: Double = 1, waitingMax: Int = 256) {
        self.gateway = gateway
        self.log = log
        self.retrySeconds = retrySeconds
        queue = WriteQueue(waitingMax: waitingMax)
    }

    /// A storage on the datastore of servers at `addresses` (their `:2379`).
    public convenience init(serverAddresses: [String], log: ThrottledLog = ThrottledLog()) {
        self.init(gateway: EtcdGateway(endpoints: serverAddresses.map { "http://\($0):2379" }), log: log)
    }

    public var isSynced: Bool { state.withLockedValue { $0.synced } }
    public var stats: Stats { state.withLockedValue { $0.stats } }
    public var identity: DatastoreIdentity { state.withLockedValue { $0.identity } }

    /// What `/sandbox/v1/datastore` answers.
    var summary: JSON {
        let (state, gatewayStats) = (state.withLockedValue { $0 }, gateway.stats)
        var summary: JSON = [
            "endpoints": .array(gateway.endpoints.map { .string($0) }), "synced": .bool(state.synced),
            "revision": .int(state.identity.revision), "writes": .int(Int64(state.stats.writes)), "refused": .int(Int64(state.stats.refused)),
            "conflicts": .int(Int64(state.stats.conflicts)), "reloads": .int(Int64(state.stats.reloads)), "seeds": .int(Int64(state.stats.seeds)),
            "calls": gatewayStats.json, "waiting": .int(Int64(queue.waitingCount)),
        ]
        if let clusterID = state.identity.clusterID { summary["clusterID"] = .string(String(clusterID)) }
        if let failure = state.failure { summary["lastError"] = .string(failure.error.description) }
        return summary
    }

    // MARK: - Calls, observed

    /// Notes an answer's header; false when it is another datastore now (the view is out of date).
    func observe(_ header: Gateway.Header, writtenAt: Int64? = nil, now: Double) -> Bool {
        state.withLockedValue { state in
            state.lastCallAt = now
            let same = state.identity.observe(header, writtenAt: writtenAt)
            if !same { state.synced = false }
            state.failure = nil
            return same
        }
    }

    func failed(_ error: DatastoreError, now: Double) {
        state.withLockedValue { state in
            state.failure = (error, now)
            state.lastCallAt = now
        }
        log.note("datastore", "\(error) (writes answer 500/503 until it answers again)")
    }

    /// The datastore's last call failed and none has succeeded since: the apiserver cannot
    /// serve a read either (see `SandboxCluster.respond`).
    var unreachable: DatastoreError? { state.withLockedValue { $0.failure?.error } }

    /// The error to answer with at once, while a failure is recent.
    func recentFailure(now: Double) -> DatastoreError? {
        state.withLockedValue { state in
            guard let failure = state.failure, now - failure.at < retrySeconds else { return nil }
            return failure.error
        }
    }

    func count(_ change: (inout Stats) -> Void) { state.withLockedValue { change(&$0.stats) } }

    /// When nothing has been asked for `probeSeconds`, one quorum read: a restored or lost
    /// datastore is noticed (and shown) even when nothing writes.
    func probeIfIdle(now: Double) async {
        guard isSynced, now - state.withLockedValue({ $0.lastCallAt }) >= Self.probeSeconds else { return }
        do {
            let (header, _) = try await gateway.get(ServerDatastore.probeKey)
            _ = observe(header, now: now)
        } catch {
            failed(error, now: now)
        }
    }

    /// Writes `changes` in one transaction guarded by the revisions they had; a failure is noted
    /// (`failed`) and thrown.
    func commit(_ changes: [StoredChange], now: Double) async throws(DatastoreError) -> Gateway.TxnResponse {
        do {
            return try await gateway.txn(RegistryKeys.transaction(changes))
        } catch {
            failed(error, now: now)
            throw error
        }
    }

    /// Every object in the datastore at one revision, read page by page.
    func readAll() async throws(DatastoreError) -> (objects: [(ResourceType, JSON)], header: Gateway.Header) {
        var objects: [(ResourceType, JSON)] = []
        var request = Gateway.RangeRequest.prefix(RegistryKeys.root, limit: Self.pageSize)
        var first: Gateway.Header?
        while true {
            let page = try await gateway.range(request)
            if first == nil {
                first = page.header
                request.revision = page.header.revision
            }
            objects += page.kvs.compactMap(RegistryKeys.object)
            guard page.more, let last = page.kvs.last else { break }
            request.key = last.key + "\0"
        }
        return (objects, first ?? Gateway.Header(revision: 0))
    }
}
