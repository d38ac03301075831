import NIOConcurrencyHelpers
import UpkeepHTTPServer
import UpkeepKube

/// What the simulated API was asked, by whom: a count per client (its `User-Agent`) and verb,
/// and the latest writes with their paths. `upkeep rehearse`'s tests read it
/// (`GET /sandbox/v1/audit`) to prove the live side saw only reads, as an apiserver's audit log
/// at the `Metadata` level records verb, resource and user agent of each request
/// (https://kubernetes.io/docs/tasks/debug/cluster-access/audit/). The sandbox's own paths
/// (`/sandbox/…`) are not counted.
///
/// Bounded: at most `writesMax` writes are kept (the oldest go first, `writesDropped` counts
/// them, one log line per 10 s says so), and at most `clientsMax` user agents are told apart
/// (others count under `other`).
public final class RequestAudit: Sendable {
    public struct Write: Sendable, Equatable {
        public var method: String
        public var path: String
        public var userAgent: String
    }

    struct State {
        var counts: [String: [String: Int]] = [:]
        var writes: [Write] = []
        var writesDropped = 0
    }

    public static let writesMax = 1_000
    public static let clientsMax = 64
    private let state = NIOLockedValueBox(State())
    private let log: ThrottledLog

    public init(log: ThrottledLog = ThrottledLog()) {
        self.log = log
    }

    /// A read never changes anything: GET and HEAD (a watch is a GET).
    public static func isRead(_ method: String) -> Bool { method == "GET" || method == "HEAD" }

    func record(_ request: APIRequest) {
        guard !request.path.hasPrefix("/sandbox/") else { return }
        let agent = request.header("user-agent") ?? ""
        let dropped: Bool = state.withLockedValue { state in
            let client = state.counts[agent] != nil || state.counts.count < Self.clientsMax ? agent : "other"
            state.counts[client, default: [:]][request.method, default: 0] += 1
            guard !Self.isRead(request.method) else { return false }
            state.writes.append(Write(method: request.method, path: request.path, userAgent: agent))
            guard state.writes.count > Self.writesMax else { return false }
            state.writes.removeFirst(state.writes.count - Self.writesMax)
            state.writesDropped += 1
            return true
        }
        if dropped { log.note("audit", "the request audit keeps the latest \(Self.writesMax) writes; older ones were dropped") }
    }

    /// `{"clients": {AGENT: {VERB: n}}, "writes": [{method, path, userAgent}], "writesDropped": n}`.
    public var summary: JSON {
        state.withLockedValue { state in
            ["clients": .object(state.counts.mapValues { .object($0.mapValues { .int(Int64($0)) }) }),
             "writes": .array(state.writes.map { ["method": .string($0.method), "path": .string($0.path), "userAgent": .string($0.userAgent)] }),
             "writesDropped": .int(Int64(state.writesDropped))]
        }
    }
}
