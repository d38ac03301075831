import Foundation
import NIOConcurrencyHelpers
import NIOCore
import UpkeepHTTPServer
import UpkeepKube

/// The model behind a lock, with the clock it runs on: what the API server and the real-time
/// driver share. With a manual clock nothing moves unless a test calls `advance`.
///
/// In memory (unit tests), requests change the model directly (`handle`, `advance`). With a
/// `ClusterStorage` (what `sandbox up` runs), the model is the API's view of the datastore, as
/// the apiserver's watch cache is of etcd: reads come from the view; every change (a request, a
/// step of the model's controllers) is made on a copy, its objects are written to the datastore
/// in one transaction guarded by the revisions the view knew, and only when the datastore has
/// accepted it does the copy become the view, its objects carrying the revisions the datastore
/// gave them as `resourceVersion`. A datastore that another cluster answers for (a restore) is
/// read back whole; an empty one is filled with the cluster (`seed`). What is not an object
/// (kubelet heartbeats, Longhorn's rebuild clocks, faults) carries on across both.
public final class SandboxCluster: Sendable {
    private let state: NIOLockedValueBox<ClusterModel>
    private let clock: @Sendable () -> Double
    /// The datastore, when the model is a view of one.
    public let storage: ClusterStorage?
    /// The recent changes and the open watches (`?watch=true`).
    public let watches: WatchCache
    /// Who asked what (`GET /sandbox/v1/audit`).
    public let audit: RequestAudit

    public init(model: ClusterModel, clock: @escaping @Sendable () -> Double, storage: ClusterStorage? = nil,
                watchBounds: WatchCache.Bounds = WatchCache.Bounds())
    {
        var model = model
        // In memory the store reports its own changes; behind a datastore they are what it confirmed.
        model.store.recordsEvents = storage == nil
        watches = WatchCache(revision: model.store.revision, bounds: watchBounds, clock: clock, log: storage?.log ?? ThrottledLog())
        audit = RequestAudit(log: storage?.log ?? ThrottledLog())
        state = NIOLockedValueBox(model)
        self.clock = clock
        self.storage = storage
    }

    /// A cluster on the wall clock.
    public convenience init(spec: ClusterSpec, timings: ModelTimings = ModelTimings(), storage: ClusterStorage? = nil,
                            watchBounds: WatchCache.Bounds = WatchCache.Bounds())
    {
        let now = Date().timeIntervalSince1970
        self.init(model: ClusterModel(spec: spec, timings: timings, now: now), clock: { Date().timeIntervalSince1970 }, storage: storage,
                  watchBounds: watchBounds)
    }

    public var now: Double { clock() }

    /// The simulated API's server bounds: the defaults, with room for every fake k3s node's and
    /// agent's keep-alive connections at `bench/sandbox-scale` sizes. Every client of a sandbox
    /// (controllers, kubectl, fake kubelets) comes from loopback, so the per-source handshake cap
    /// Upkeep's own listeners keep against floods would close a busy controller's handshakes here;
    /// the kube-apiserver bounds requests in flight (`--max-requests-inflight`, default 400,
    /// https://kubernetes.io/docs/reference/command-line-tools-reference/kube-apiserver/), not
    /// handshakes per address.
    public static let apiServerConfiguration = HTTPServer.Configuration(connectionsMax: 1_024, handshakesMax: 400, handshakesPerSourceMax: 400,
                                                                        handshakeTimeoutSeconds: 10)

    /// Answers one request, in memory.
    public func handle(_ request: APIRequest) -> APIResponse {
        precondition(storage == nil, "a cluster behind a datastore answers through respond(_:)")
        audit.record(request)
        if request.path == "/sandbox/v1/audit", request.method == "GET" { return .json(audit.summary) }
        if let answer = watchRequest(request) { return answer }
        let now = clock()
        return state.withLockedValue { model in
            defer { publish(&model) }
            return model.handle(request, now: now)
        }
    }

    /// In memory: sends the store's changes since the last call to the watches. Under the lock.
    private func publish(_ model: inout ClusterModel) {
        watches.record(model.store.takeEvents(), revision: model.store.revision)
    }

    /// A watch, or the watches' summary; nil for any other request.
    private func watchRequest(_ request: APIRequest) -> APIResponse? {
        if request.path == "/sandbox/v1/watches", request.method == "GET" { return .json(watches.summary) }
        guard ClusterModel.isWatch(request) else { return nil }
        guard let target = ClusterModel.target(of: request) else {
            return .error(KubeAPIError(code: 404, reason: "NotFound", message: "the server could not find the requested resource"))
        }
        let now = clock()
        return state.withLockedValue { model in
            model.now = max(model.now, now)
            return watches.open(request, target: target, table: model.wantsTable(request), revision: model.store.revision) {
                model.store.list(target.resource.type, namespace: target.namespace)
            }
        }
    }

    /// Moves the model's clock, in memory.
    public func advance() {
        precondition(storage == nil, "a cluster behind a datastore moves through tick()")
        let now = clock()
        state.withLockedValue { model in
            model.advance(to: now)
            publish(&model)
        }
    }

    /// Reads the model, or changes it in memory. Behind a datastore, change it through `update`:
    /// objects changed here would never reach the datastore (before the first sync they are
    /// part of what seeds it).
    public func withModel<T>(_ body: (inout ClusterModel) -> T) -> T {
        state.withLockedValue { model in
            let result = body(&model)
            precondition(!model.store.hasChanges, "objects of a cluster behind a datastore change through update(_:)")
            publish(&model)
            return result
        }
    }

    /// Ticks the model on the wall clock every `interval` until the returned task is cancelled (in memory).
    public func startDriver(on loop: any EventLoop, interval: TimeAmount = .milliseconds(200)) -> RepeatedTask {
        loop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [self] _ in advance() }
    }

    // MARK: - Both ways

    /// Answers one request: in memory, or reading the view and writing through the datastore.
    public func respond(_ request: APIRequest) async -> APIResponse {
        if storage != nil { audit.record(request) }
        if let stall = state.withLockedValue({ $0.writeStallSeconds(request) }) {
            // A write the API server accepted and timed out: answered late, never applied.
            try? await Task.sleep(nanoseconds: UInt64(stall * 1e9))
            return .error(KubeAPIError(code: 504, reason: "Timeout", message: "the write was not applied in time (sandbox fault: api stall-writes)"))
        }
        guard let storage else { return handle(request) }
        if request.path == "/sandbox/v1/datastore", request.method == "GET" { return .json(storage.summary) }
        if request.path == "/sandbox/v1/audit", request.method == "GET" { return .json(audit.summary) }
        let now = clock()
        if request.method == "GET" || request.method == "HEAD" {
            guard storage.isSynced else { return .error(Self.waiting(storage)) }
            if request.path == "/sandbox/v1/watches" { return watchRequest(request) ?? .error(Self.waiting(storage)) }
            // A read without a resourceVersion is a quorum read from the datastore
            // (https://kubernetes.io/docs/reference/using-api/api-concepts/#semantics-for-get-and-list),
            // and the apiserver runs inside the k3s server process beside its datastore
            // (https://docs.k3s.io/architecture): with every server's k3s stopped, or etcd
            // without quorum, nothing answers. The sandbox's own paths stay open to its tools.
            if !request.path.hasPrefix("/sandbox/"), let down = storage.unreachable {
                return .error(Self.unreachable(down))
            }
            if let answer = watchRequest(request) { return answer }
            return state.withLockedValue { $0.handle(request, now: now) }
        }
        do {
            let (response, written) = try await write(storage) { $0.handle(request, now: now) }
            return Self.resourceVersions(in: response, from: written)
        } catch {
            return .error(Self.status(for: error))
        }
    }

    /// Moves the model's clock and lets its controllers act; behind a datastore, their changes
    /// are written first (and dropped if the datastore refuses them: the next tick tries again).
    public func tick() async {
        guard let storage else { return advance() }
        let now = clock()
        do {
            let (_, written) = try await write(storage) { $0.advance(to: now) }
            if written.changes.isEmpty { await storage.probeIfIdle(now: now) }
        } catch {
            storage.log.note("model", "the cluster's controllers could not write: \(error)")
        }
    }

    /// Changes the model: in memory, or through the datastore (`tick`'s rules).
    public func update<T: Sendable>(_ body: @Sendable (inout ClusterModel) -> T) async throws -> T {
        guard let storage else {
            return state.withLockedValue { model in
                defer { publish(&model) }
                return body(&model)
            }
        }
        return try await write(storage, body).result
    }

    /// Ticks the model every `intervalSeconds` until the task is cancelled (in memory or not).
    public func startDriverTask(intervalSeconds: Double = 0.2) -> Task<Void, Never> {
        Task { [self] in
            while !Task.isCancelled {
                await tick()
                try? await Task.sleep(nanoseconds: UInt64(intervalSeconds * 1e9))
            }
        }
    }

    // MARK: - Writing through the datastore

    /// What a write wrote: the changes and the revision each got.
    struct Written {
        var changes: [StoredChange]
        var revisions: [Int64]
    }

    /// Why a write through the datastore did not happen.
    enum WriteFailure: Error, CustomStringConvertible {
        case datastore(DatastoreError)
        case busy(String)
        case notSynced(DatastoreError?)
        case conflict

        var description: String {
            switch self {
            case .datastore(let error): "\(error)"
            case .busy(let reason): reason
            case .notSynced(let error): "the datastore is not ready yet" + (error.map { ": \($0)" } ?? "")
            case .conflict: "the datastore holds other versions of the objects than this view; it was read back, try again"
            }
        }
    }

    /// Runs `body` on a copy of the view, writes its object changes, then makes the copy the
    /// view; one at a time. A write whose compares fail (the view was out of date) reads the
    /// view back and runs once more, as the apiserver's GuaranteedUpdate retries.
    private func write<T>(_ storage: ClusterStorage, _ body: (inout ClusterModel) -> T) async throws -> (result: T, written: Written) {
        if let failure = storage.recentFailure(now: clock()) {
            storage.count { $0.refused += 1 }
            throw WriteFailure.datastore(failure)
        }
        do {
            return try await storage.queue.run {
                for attempt in 1...2 {
                    try await sync(storage)
                    var copy = state.withLockedValue { $0 }
                    copy.store.observe(revision: storage.identity.revision)
                    let result = body(&copy)
                    let changes = copy.store.takeChanges()
                    guard !changes.isEmpty else {
                        state.withLockedValue { $0 = copy }
                        return (result, Written(changes: [], revisions: []))
                    }
                    let answer: Gateway.TxnResponse
                    do throws(DatastoreError) {
                        answer = try await storage.commit(changes, now: clock())
                    } catch {
                        throw WriteFailure.datastore(error)
                    }
                    let same = storage.observe(answer.header, writtenAt: answer.succeeded ? answer.responses.map(\.revision).min() : nil,
                                               now: clock())
                    guard answer.succeeded, answer.responses.count == changes.count else {
                        storage.count { $0.conflicts += 1 }
                        storage.log.note("datastore", "a write's compares failed at revision \(answer.header.revision): reading the view back")
                        storage.state.withLockedValue { $0.synced = false }
                        if attempt == 2 { throw WriteFailure.conflict }
                        continue
                    }
                    let revisions = answer.responses.map(\.revision)
                    copy.store.confirm(changes, revisions: revisions, revision: answer.header.revision)
                    storage.count { $0.writes += 1 }
                    if same {
                        state.withLockedValue { view in
                            let events = Self.events(changes, revisions: revisions, before: view.store, after: copy.store)
                            view = copy
                            watches.record(events, revision: answer.header.revision)
                        }
                    }
                    // Otherwise it was written to a datastore the view does not reflect (restored
                    // meanwhile): the next write reads it back, this one included.
                    return (result, Written(changes: changes, revisions: revisions))
                }
                throw WriteFailure.conflict
            }
        } catch let full as WriteQueue.Full {
            storage.count { $0.refused += 1 }
            storage.log.note("datastore", "refusing a write: \(full)")
            throw WriteFailure.busy("\(full)")
        } catch {
            if case WriteFailure.datastore = error { storage.count { $0.refused += 1 } }
            throw error
        }
    }

    /// Makes the view reflect the datastore when it does not (first contact, a restore, a
    /// conflict): reads every object back, or fills an empty datastore with the cluster.
    private func sync(_ storage: ClusterStorage) async throws {
        guard !storage.isSynced else { return }
        let read: (objects: [(ResourceType, JSON)], header: Gateway.Header)
        do throws(DatastoreError) {
            read = try await storage.readAll()
        } catch {
            storage.failed(error, now: clock())
            throw WriteFailure.notSynced(error)
        }
        _ = storage.observe(read.header, now: clock())
        let everSynced = storage.state.withLockedValue { $0.everSynced }
        if !read.objects.isEmpty {
            state.withLockedValue { model in
                model.store = model.store.reloaded(read.objects, revision: read.header.revision)
                model.store.tracksChanges = true
            }
            storage.count { $0.reloads += 1 }
            storage.log.note("datastore-reload", "read \(read.objects.count) objects back from the datastore at revision \(read.header.revision)"
                             + (storage.identity.clusterID.map { $0 == 0 ? "" : " (cluster \(String($0, radix: 16)))" } ?? ""))
        } else {
            var seed = state.withLockedValue { $0 }
            if everSynced {
                // A wiped datastore is a newly installed cluster; its kubelets carry on.
                seed.reinstall(now: clock())
            }
            try await fill(storage, with: &seed)
            state.withLockedValue { $0 = seed }
            storage.count { $0.seeds += 1 }
            storage.log.note("datastore-seed", "the datastore was empty: wrote the cluster's \(seed.store.objectCount) objects")
        }
        // What changed in between is unknown: watches end with 410 and clients list again.
        watches.reset(revision: state.withLockedValue { $0.store.revision })
        storage.state.withLockedValue { state in
            state.synced = true
            state.everSynced = true
        }
    }

    /// Writes every object of `model` into an empty datastore, `pageSize` per transaction, each
    /// guarded by the key being absent.
    private func fill(_ storage: ClusterStorage, with model: inout ClusterModel) async throws {
        model.store.tracksChanges = true
        model.store.markAllCreated()
        let changes = model.store.takeChanges()
        var start = 0
        while start < changes.count {
            let batch = Array(changes[start..<min(changes.count, start + Int(ClusterStorage.pageSize))])
            let answer: Gateway.TxnResponse
            do throws(DatastoreError) {
                answer = try await storage.commit(batch, now: clock())
            } catch {
                throw WriteFailure.notSynced(error)
            }
            _ = storage.observe(answer.header, now: clock())
            guard answer.succeeded else { throw WriteFailure.conflict }
            model.store.confirm(batch, revisions: answer.responses.map(\.revision), revision: answer.header.revision)
            start += batch.count
        }
    }

    /// The watch events of a write the datastore confirmed, in revision order: `before` is
    /// the view it was made on, `after` the copy with the confirmed revisions.
    static func events(_ changes: [StoredChange], revisions: [Int64], before: ObjectStore, after: ObjectStore) -> [WatchEvent] {
        zip(changes, revisions).compactMap { change, revision -> WatchEvent? in
            let previous = before.get(change.type, change.namespace, change.name)
            if let object = after.get(change.type, change.namespace, change.name) {
                return WatchEvent(type: change.type, kind: previous == nil ? .added : .modified, object: object, previous: previous,
                                  revision: revision)
            }
            guard var gone = previous else { return nil }
            gone[path: "metadata", "resourceVersion"] = .string(String(revision))
            return WatchEvent(type: change.type, kind: .deleted, object: gone, previous: previous, revision: revision)
        }.sorted { $0.revision < $1.revision }
    }

    // MARK: - Answers

    static func waiting(_ storage: ClusterStorage) -> KubeAPIError {
        KubeAPIError(code: 503, reason: "ServiceUnavailable",
                     message: "the apiserver is waiting for its datastore (\(storage.gateway.endpoints.joined(separator: ", ")))")
    }

    /// A read while the datastore does not answer.
    static func unreachable(_ error: DatastoreError) -> KubeAPIError {
        KubeAPIError(code: 503, reason: "ServiceUnavailable", message: "the apiserver cannot read its datastore: \(error)")
    }

    /// A failed write as the apiserver answers it: etcd's own message with 500 when the
    /// datastore answered, 503 when it could not be reached or the queue is full.
    static func status(for error: any Error) -> KubeAPIError {
        switch error {
        case WriteFailure.datastore(.failed(let message, _)):
            KubeAPIError(code: 500, reason: "InternalError", message: message)
        case WriteFailure.datastore(let other):
            KubeAPIError(code: 503, reason: "ServiceUnavailable", message: "\(other)")
        case WriteFailure.conflict:
            KubeAPIError(code: 409, reason: "Conflict", message: "\(error)")
        default:
            KubeAPIError(code: 503, reason: "ServiceUnavailable", message: "\(error)")
        }
    }

    /// The object in a write's answer with the `resourceVersion` the datastore gave it (the view
    /// guessed one before the write).
    static func resourceVersions(in response: APIResponse, from written: Written) -> APIResponse {
        guard !written.changes.isEmpty, response.status < 300, var object = try? JSON.parse(bytes: response.body),
              let name = object[path: "metadata", "name"]?.string
        else { return response }
        let namespace = object[path: "metadata", "namespace"]?.string
        guard let index = written.changes.firstIndex(where: { change in
            change.object != nil && change.name == name && change.namespace == (change.type.namespaced ? namespace : nil)
                && change.type.kind == object["kind"]?.string && change.type.apiVersion == object["apiVersion"]?.string
        }) else { return response }
        object[path: "metadata", "resourceVersion"] = .string(String(written.revisions[index]))
        var fixed = response
        fixed.body = object.serialized()
        return fixed
    }
}

/// A clock that only moves when told to: for deterministic tests over real sockets.
public final class ManualClock: Sendable {
    private let value: NIOLockedValueBox<Double>
    public init(_ start: Double) { value = NIOLockedValueBox(start) }
    public var now: Double { value.withLockedValue { $0 } }
    public func advance(by seconds: Double) { value.withLockedValue { $0 += seconds } }
}
