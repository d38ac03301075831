import Foundation
import NIOConcurrencyHelpers
import UpkeepHTTPServer
import UpkeepKube

/// One change of an object, as a Kubernetes watch reports it.
public struct WatchEvent: Sendable {
    public enum Kind: String, Sendable {
        case added = "ADDED", modified = "MODIFIED", deleted = "DELETED"
    }

    public var type: ResourceType
    public var kind: Kind
    /// The object after the change, with its `resourceVersion`; for a deletion its last state
    /// with the deletion's revision, as the apiserver reports it.
    public var object: JSON
    /// Before the change; nil: it was created.
    public var previous: JSON?
    public var revision: Int64
}

/// The recent changes of every object and the watches open on them: what the simulated API
/// serves `?watch=true` from, as the apiserver serves watches from its watch cache
/// (https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes).
///
/// A watch streams one JSON line per event (`{"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":…}`),
/// starting after the `resourceVersion` it asks for (without one, or with "0", first an ADDED
/// for every object there is). One older than the changes kept gets a single ERROR event with a
/// 410 `Expired` Status, after which the client lists again
/// (https://kubernetes.io/docs/reference/using-api/api-concepts/#410-gone-responses). With a
/// label or field selector, an object that starts or stops matching is ADDED or DELETED, as
/// the apiserver's filtered watches report it. Everything is bounded (`Bounds`): the changes
/// kept, the watches open at once (429 beyond), each watch's length (`timeoutSeconds`); a
/// watcher that stops reading is cut by the server's outbound bounds (docs/http.md). Each bound
/// reached is counted (`counts`, `GET /sandbox/v1/watches`) and logged at most once per 10 s.
///
/// It never decides what changes: `SandboxCluster` records what the store (in memory) or the
/// datastore (behind one) changed, in revision order, under the model's lock.
public final class WatchCache: Sendable {
    public struct Bounds: Sendable {
        /// Changes kept for watches that resume from a `resourceVersion`.
        public var eventsMax: Int
        /// Watches open at once; one more is answered 429.
        public var watchesMax: Int
        /// A watch's length: its `timeoutSeconds` up to this, and this without one (the
        /// apiserver's `--min-request-timeout` default, 1,800 s).
        public var timeoutSecondsMax: Double
        /// Between BOOKMARK events of a watch that allows them (`allowWatchBookmarks`).
        public var bookmarkIntervalSeconds: Double

        public init(eventsMax: Int = 4_096, watchesMax: Int = 256, timeoutSecondsMax: Double = 1_800, bookmarkIntervalSeconds: Double = 60) {
            self.eventsMax = max(1, eventsMax)
            self.watchesMax = max(1, watchesMax)
            self.timeoutSecondsMax = max(1, timeoutSecondsMax)
            self.bookmarkIntervalSeconds = max(0.05, bookmarkIntervalSeconds)
        }
    }

    /// What happened to watches so far.
    public struct Counts: Sendable, Equatable {
        public var opened = 0
        public var open = 0
        /// Refused: `watchesMax` were open.
        public var refused = 0
        /// Answered 410 Expired: the `resourceVersion` was older than the changes kept.
        public var expired = 0
        /// Ended because the datastore was read back whole (a restore): each got a 410.
        public var reset = 0
    }

    struct Watcher {
        var type: ResourceType
        var namespace: String?
        var name: String?
        var labels: LabelSelector
        var fields: FieldSelector
        /// Set for `kubectl get -w`'s server-side printing: each object as a one-row Table.
        var table: ServedResource?
        var includeObject: String
        var stream: HTTPResponseStream
        var timer: Task<Void, Never>?

        func matches(_ object: JSON?) -> Bool {
            guard let object else { return false }
            if let namespace, type.namespaced, object[path: "metadata", "namespace"]?.string != namespace { return false }
            if let name, object[path: "metadata", "name"]?.string != name { return false }
            return labels.matches(object[path: "metadata", "labels"]?.stringMap ?? [:]) && fields.matches(object)
        }

        /// The event this watcher sees of `event`, if any: an object that starts matching is
        /// ADDED, one that stops matching DELETED.
        func sees(_ event: WatchEvent) -> WatchEvent.Kind? {
            guard event.type == type else { return nil }
            switch event.kind {
            case .added: return matches(event.object) ? .added : nil
            case .deleted: return matches(event.object) ? .deleted : nil
            case .modified:
                switch (matches(event.previous), matches(event.object)) {
                case (true, true): return .modified
                case (false, true): return .added
                case (true, false): return .deleted
                case (false, false): return nil
                }
            }
        }

        func line(_ kind: String, _ object: JSON, now: Double) -> [UInt8] {
            var shown = object
            if let table, kind != "ERROR", kind != "BOOKMARK" {
                shown = ClusterModel.table([object], table, includeObject: includeObject, now: now,
                                           revision: object[path: "metadata", "resourceVersion"]?.string ?? "")
            }
            let event: JSON = ["type": .string(kind), "object": shown]
            return event.serialized() + [UInt8(ascii: "\n")]
        }
    }

    private struct State {
        var events: [WatchEvent] = []
        /// Every change after this revision is in `events`.
        var oldest: Int64
        /// The revision of the newest change recorded.
        var current: Int64
        var watchers: [Int: Watcher] = [:]
        var nextID = 0
        var counts = Counts()
    }

    public let bounds: Bounds
    private let state: NIOLockedValueBox<State>
    private let clock: @Sendable () -> Double
    private let log: ThrottledLog

    public init(revision: Int64, bounds: Bounds = Bounds(), clock: @escaping @Sendable () -> Double, log: ThrottledLog) {
        self.bounds = bounds
        state = NIOLockedValueBox(State(oldest: revision, current: revision))
        self.clock = clock
        self.log = log
    }

    public var counts: Counts { state.withLockedValue { $0.counts } }

    /// `counts` and the window, for `GET /sandbox/v1/watches`.
    public var summary: JSON {
        let (counts, oldest, current, kept) = state.withLockedValue { ($0.counts, $0.oldest, $0.current, $0.events.count) }
        return ["open": .int(Int64(counts.open)), "opened": .int(Int64(counts.opened)), "refused": .int(Int64(counts.refused)),
                "expired": .int(Int64(counts.expired)), "reset": .int(Int64(counts.reset)),
                "window": ["oldestResourceVersion": .string(String(oldest)), "currentResourceVersion": .string(String(current)),
                           "events": .int(Int64(kept)), "eventsMax": .int(Int64(bounds.eventsMax))],
                "watchesMax": .int(Int64(bounds.watchesMax)), "timeoutSecondsMax": .double(bounds.timeoutSecondsMax)]
    }

    // MARK: - Recording

    /// Records changes (in revision order) and sends each open watch what it sees of them; the
    /// datastore stands at `revision` (at least the newest change's).
    public func record(_ events: [WatchEvent], revision: Int64) {
        guard !events.isEmpty else { return }
        let now = clock()
        state.withLockedValue { state in
            for event in events {
                for watcher in state.watchers.values {
                    if let kind = watcher.sees(event) { watcher.stream.send(watcher.line(kind.rawValue, event.object, now: now)) }
                }
            }
            state.events += events
            state.current = max(state.current, revision, events.last?.revision ?? 0)
            if state.events.count > bounds.eventsMax + bounds.eventsMax / 4 {
                let dropped = state.events.count - bounds.eventsMax
                state.oldest = max(state.oldest, state.events[dropped - 1].revision)
                state.events.removeFirst(dropped)
            }
        }
    }

    /// The view was read back whole from the datastore (first contact after a restore, or a
    /// conflict): the changes in between are unknown, so every watch ends with 410 and resumes
    /// only by listing again.
    public func reset(revision: Int64) {
        let now = clock()
        let ended: [Watcher] = state.withLockedValue { state in
            state.events = []
            state.oldest = revision
            state.current = revision
            let ended = Array(state.watchers.values)
            state.counts.reset += ended.count
            return ended
        }
        let status = Self.expired("the datastore was read back at revision \(revision); list again").status
        for watcher in ended {
            watcher.stream.send(watcher.line("ERROR", status, now: now))
            watcher.stream.finish()
        }
    }

    // MARK: - Watches

    /// Opens a watch of `target` for `request` (`?watch=true`). `snapshot` gives the objects
    /// there are now (for a watch without a `resourceVersion`), standing at `revision`; call it
    /// under the lock that orders `record`, so no change falls between the two.
    func open(_ request: APIRequest, target: ResourceTarget, table: Bool, revision: Int64, snapshot: () -> [JSON]) -> APIResponse {
        let labels: LabelSelector, fields: FieldSelector
        do {
            labels = try LabelSelector.parse(request.query["labelSelector"] ?? "")
            fields = try FieldSelector.parse(request.query["fieldSelector"] ?? "")
        } catch {
            return .error(.badRequest(error.description))
        }
        var timeout = bounds.timeoutSecondsMax
        if let asked = request.query["timeoutSeconds"] {
            guard let seconds = Double(asked), seconds >= 0 else {
                return .error(.badRequest("timeoutSeconds must be a whole number of seconds, not \"\(asked)\""))
            }
            if seconds > 0 { timeout = min(seconds, bounds.timeoutSecondsMax) }
        }
        let version = request.query["resourceVersion"] ?? ""
        var from: Int64?
        if !version.isEmpty && version != "0" {
            guard let number = Int64(version), number > 0 else {
                return .error(.badRequest("resourceVersion must be a revision the server gave, not \"\(version)\""))
            }
            from = number
        }
        let watcher = Watcher(type: target.resource.type, namespace: target.namespace, name: target.name, labels: labels, fields: fields,
                              table: table ? target.resource : nil, includeObject: request.query["includeObject"] ?? "Metadata",
                              stream: HTTPResponseStream())
        let bookmarks = request.query["allowWatchBookmarks"] == "true" && !table
        let now = clock()
        enum Opened {
            case refused(Int)
            case expired(Int64, Int64)
            case tooLarge(Int64, Int64)
            case watching(Int)
        }
        let opened: Opened = state.withLockedValue { state in
            // Another writer (a fake k3s recording its minor) moves the revision without a change of ours.
            state.current = max(state.current, revision)
            if let from, from < state.oldest {
                state.counts.expired += 1
                return .expired(from, state.oldest)
            }
            if let from, from > state.current { return .tooLarge(from, state.current) }
            guard state.watchers.count < bounds.watchesMax else {
                state.counts.refused += 1
                return .refused(state.watchers.count)
            }
            var initial: [UInt8] = []
            if let from {
                let start = state.events.firstIndex { $0.revision > from } ?? state.events.count
                for event in state.events[start...] {
                    if let kind = watcher.sees(event) { initial += watcher.line(kind.rawValue, event.object, now: now) }
                }
            } else {
                for object in snapshot() where watcher.matches(object) { initial += watcher.line("ADDED", object, now: now) }
            }
            if !initial.isEmpty { watcher.stream.send(initial) }
            state.nextID += 1
            state.watchers[state.nextID] = watcher
            state.counts.opened += 1
            state.counts.open = state.watchers.count
            return .watching(state.nextID)
        }
        switch opened {
        case .refused(let open):
            log.note("watch-limit", "refused a watch of \(target.resource.type.plural): \(open) watches open (watchesMax \(bounds.watchesMax))")
            return .error(KubeAPIError(code: 429, reason: "TooManyRequests",
                                       message: "too many watches open at once (\(bounds.watchesMax)); retry later", retryAfterSeconds: 1))
        case .expired(let asked, let oldest):
            log.note("watch-expired", "a watch of \(target.resource.type.plural) asked for resourceVersion \(asked), older than the oldest kept (\(oldest)): 410")
            watcher.stream.send(watcher.line("ERROR", Self.expired("too old resource version: \(asked) (\(oldest))").status, now: now))
            watcher.stream.finish()
            return .streamed(watcher.stream)
        case .tooLarge(let asked, let current):
            return .error(KubeAPIError(code: 504, reason: "Timeout", message: "Too large resource version: \(asked), current: \(current)",
                                       causes: [.init(reason: "ResourceVersionTooLarge", message: "Too large resource version")],
                                       retryAfterSeconds: 1))
        case .watching(let id):
            let timer = Task { [weak self] in
                var left = timeout
                while left > 0 {
                    let step = bookmarks ? min(left, self?.bounds.bookmarkIntervalSeconds ?? left) : left
                    try? await Task.sleep(nanoseconds: UInt64(step * 1e9))
                    if Task.isCancelled { return }
                    left -= step
                    if bookmarks && left > 0 { self?.bookmark(id) }
                }
                self?.end(id)
            }
            state.withLockedValue { $0.watchers[id]?.timer = timer }
            watcher.stream.onClose { [weak self] in self?.closed(id) }
            return .streamed(watcher.stream)
        }
    }

    private func bookmark(_ id: Int) {
        state.withLockedValue { state in
            guard let watcher = state.watchers[id] else { return }
            let object: JSON = ["kind": .string(watcher.type.kind), "apiVersion": .string(watcher.type.apiVersion),
                                "metadata": ["resourceVersion": .string(String(state.current))]]
            watcher.stream.send(watcher.line("BOOKMARK", object, now: 0))
        }
    }

    /// The watch's time is up: its answer ends (the client watches again from the last
    /// `resourceVersion` it saw).
    private func end(_ id: Int) {
        let stream = state.withLockedValue { $0.watchers[id]?.stream }
        stream?.finish()
    }

    private func closed(_ id: Int) {
        let timer: Task<Void, Never>?? = state.withLockedValue { state in
            guard let watcher = state.watchers.removeValue(forKey: id) else { return nil }
            state.counts.open = state.watchers.count
            return .some(watcher.timer)
        }
        if let timer { timer?.cancel() }
    }

    static func expired(_ message: String) -> KubeAPIError {
        KubeAPIError(code: 410, reason: "Expired", message: message)
    }
}
