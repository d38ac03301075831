import Foundation
import NIOConcurrencyHelpers
import NIOHTTP1
import UpkeepHTTP
import UpkeepKube

/// How the gateway client reaches one endpoint: an HTTP POST of a JSON body. Kept to this one
/// call so the HTTP client under it can change without touching the gateway's logic.
public protocol GatewayTransport: Sendable {
    /// POSTs `body` to `url`; any HTTP status is an answer. Throws when no answer came (refused,
    /// reset, the transport's own time bound).
    func post(_ url: String, body: [UInt8]) async throws -> (status: Int, body: [UInt8])
}

/// The gateway transport on Upkeep's HTTP/1.1 client (plain http: the sandbox's members listen
/// on the nodes' own addresses), one attempt per call (the gateway fails over between
/// members itself), connect and answer bounded.
public struct HTTPGatewayTransport: GatewayTransport {
    let client: HTTPClient

    public init(connectTimeoutSeconds: Double = 1, answerTimeoutSeconds: Double = 4) {
        client = HTTPClient(configuration: HTTPClient.Configuration(connectTimeoutSeconds: connectTimeoutSeconds,
                                                                    responseTimeoutSeconds: answerTimeoutSeconds,
                                                                    responseBytesMax: 64 << 20, connectionsPerOriginMax: 4,
                                                                    idleSecondsMax: 20, retry: .never,
                                                                    userAgent: "upkeep-sandbox"),
                            tls: nil)
    }

    public func post(_ url: String, body: [UInt8]) async throws -> (status: Int, body: [UInt8]) {
        var request = HTTPRequest(method: .POST, url: try HTTPURL(url), body: body)
        request.headers.add(name: "Content-Type", value: "application/json")
        let response = try await client.send(request)
        return (response.status, response.body)
    }

    public func shutdown() async { await client.shutdown() }
}

/// Why a datastore call failed, in words an operator can act on.
public enum DatastoreError: Error, Equatable, CustomStringConvertible {
    /// No endpoint answered within the bound: the members (or the fake kine) are down or unreachable.
    case unreachable(String)
    /// The datastore answered with an error (etcd's own message: no leader, request timed out).
    case failed(message: String, code: Int64)
    /// The answer was not what the etcd API defines.
    case malformed(String)

    public var description: String {
        switch self {
        case .unreachable(let detail): "the datastore is unreachable: \(detail)"
        case .failed(let message, _): message
        case .malformed(let detail): "the datastore answered something unexpected: \(detail)"
        }
    }

    /// The gRPC codes another member may not share (this one lost its leader, timed out, is
    /// being removed): worth asking the next endpoint.
    var triesAnotherMember: Bool {
        switch self {
        case .unreachable: true
        case .failed(_, let code): [1, 2, 4, 14].contains(code)
        case .malformed: false
        }
    }
}

/// Counters of a gateway client: the metric behind its rate-limited log lines.
public struct GatewayStats: Sendable, Equatable {
    public var calls = 0
    /// Calls that ended in an error (after trying every endpoint the bound allowed).
    public var failures = 0
    /// Endpoints given up on in favour of the next one.
    public var failovers = 0
    /// Calls that stopped because `callTimeoutSeconds` passed.
    public var deadlinesReached = 0

    public var json: JSON {
        ["calls": .int(Int64(calls)), "failures": .int(Int64(failures)), "failovers": .int(Int64(failovers)),
         "deadlinesReached": .int(Int64(deadlinesReached))]
    }
}

/// A client of the etcd v3 JSON gateway (https://etcd.io/docs/v3.4/dev-guide/api_grpc_gateway/)
/// as the sandbox uses it: the simulated API and the fake k3s talk to a server's etcd member, or
/// to the fake kine of a single SQLite server, through it. Each call goes to the endpoint that
/// last answered and fails over to the next on no answer or a member-local error, within
/// `callTimeoutSeconds` overall; what stopped it is a `DatastoreError`.
public final class EtcdGateway: Sendable {
    public let endpoints: [String]
    public let callTimeoutSeconds: Double
    /// One endpoint's share of a call: a member that does not answer within it is left for the next.
    public let attemptTimeoutSeconds: Double
    let transport: any GatewayTransport
    private let preferred = NIOLockedValueBox(0)
    private let counters = NIOLockedValueBox(GatewayStats())

    /// `endpoints`: base URLs (`http://10.0.0.1:2379`), tried in this order from the preferred one.
    public init(endpoints: [String], transport: any GatewayTransport = HTTPGatewayTransport(), callTimeoutSeconds: Double = 6,
                attemptTimeoutSeconds: Double = 3)
    {
        precondition(!endpoints.isEmpty, "a gateway needs at least one endpoint")
        self.endpoints = endpoints
        self.transport = transport
        self.callTimeoutSeconds = callTimeoutSeconds
        self.attemptTimeoutSeconds = attemptTimeoutSeconds
    }

    public var stats: GatewayStats { counters.withLockedValue { $0 } }

    public func range(_ request: Gateway.RangeRequest) async throws(DatastoreError) -> Gateway.RangeResponse {
        try decode(await call("/v3/kv/range", request.json)) { json throws(GatewayDecodingError) in try Gateway.RangeResponse(json: json) }
    }

    /// The value of `key`, if it exists.
    public func get(_ key: String, serializable: Bool = false) async throws(DatastoreError) -> (Gateway.Header, Gateway.KeyValue?) {
        let response = try await range(Gateway.RangeRequest(key: key, serializable: serializable))
        return (response.header, response.kvs.first)
    }

    public func put(_ key: String, _ value: [UInt8]) async throws(DatastoreError) -> Gateway.Header {
        try decode(await call("/v3/kv/put", ["key": Gateway.base64(key), "value": Gateway.base64(value)])) {
            json throws(GatewayDecodingError) in try Gateway.Header(json: json["header"])
        }
    }

    public func txn(_ request: Gateway.TxnRequest) async throws(DatastoreError) -> Gateway.TxnResponse {
        try decode(await call("/v3/kv/txn", request.json)) { json throws(GatewayDecodingError) in try Gateway.TxnResponse(json: json) }
    }

    /// The members of the cluster, as the endpoint that answers sees them.
    public func members() async throws(DatastoreError) -> [Gateway.Member] {
        try decode(await call("/v3/cluster/member/list", [:])) { json throws(GatewayDecodingError) in
            var members: [Gateway.Member] = []
            for item in json["members"]?.array ?? [] { members.append(try Gateway.Member(json: item)) }
            return members
        }
    }

    /// Adds a member that will listen for peers at `peerURL` (it is unstarted until it joins).
    public func addMember(peerURL: String) async throws(DatastoreError) -> [Gateway.Member] {
        try decode(await call("/v3/cluster/member/add", ["peerURLs": [.string(peerURL)]])) { json throws(GatewayDecodingError) in
            var members: [Gateway.Member] = []
            for item in json["members"]?.array ?? [] { members.append(try Gateway.Member(json: item)) }
            return members
        }
    }

    public func removeMember(id: UInt64) async throws(DatastoreError) {
        _ = try await call("/v3/cluster/member/remove", ["ID": Gateway.number(id)])
    }

    /// `/v3/maintenance/status` of one endpoint: answered by the member itself, quorum or not,
    /// with what it lacks (`etcdserver: no leader`) in `errors`.
    public func status(of endpoint: String, timeoutSeconds: Double = 1) async throws(DatastoreError) -> (Gateway.Header, [String]) {
        let answer: (status: Int, body: [UInt8])
        do {
            answer = try await Self.bounded(seconds: timeoutSeconds) {
                try await self.transport.post(endpoint + "/v3/maintenance/status", body: Array("{}".utf8))
            }
        } catch {
            throw .unreachable("\(endpoint): \(error)")
        }
        guard answer.status == 200, let json = try? JSON.parse(bytes: answer.body), let header = try? Gateway.Header(json: json["header"]) else {
            throw .malformed("\(endpoint)/v3/maintenance/status answered HTTP \(answer.status)")
        }
        return (header, (json["errors"]?.array ?? []).compactMap(\.string))
    }

    // MARK: - Calls

    private func decode<T>(_ json: JSON, _ body: (JSON) throws(GatewayDecodingError) -> T) throws(DatastoreError) -> T {
        do { return try body(json) } catch { throw .malformed(error.description) }
    }

    /// POSTs `body` to `path` on the preferred endpoint, then on the others in turn, until one
    /// answers 200 or the call's time is up.
    private func call(_ path: String, _ body: JSON) async throws(DatastoreError) -> JSON {
        let bytes = body.serialized()
        let start = counters.withLockedValue { stats -> Int in
            stats.calls += 1
            return preferred.withLockedValue { $0 }
        }
        let deadline = Date().addingTimeInterval(callTimeoutSeconds)
        var problems: [String] = []
        var last = DatastoreError.unreachable("no endpoint tried")
        var memberError: DatastoreError?
        for offset in 0..<endpoints.count {
            let index = (start + offset) % endpoints.count
            let remaining = deadline.timeIntervalSinceNow
            if offset > 0 {
                guard remaining > 0 else {
                    counters.withLockedValue { $0.deadlinesReached += 1 }
                    break
                }
                counters.withLockedValue { $0.failovers += 1 }
            }
            let endpoint = endpoints[index]
            do {
                let answer = try await Self.bounded(seconds: min(attemptTimeoutSeconds, max(remaining, 0.05))) { try await self.transport.post(endpoint + path, body: bytes) }
                let json: JSON
                do { json = try JSON.parse(bytes: answer.body) } catch {
                    last = .malformed("\(endpoint)\(path) answered HTTP \(answer.status) with \(error)")
                    break
                }
                if answer.status == 200, json["header"] != nil || json["members"] != nil {
                    preferred.withLockedValue { $0 = index }
                    return json
                }
                if let error = Gateway.ErrorBody(json: json) {
                    last = .failed(message: error.message, code: error.code)
                    memberError = memberError ?? last
                    problems.append("\(endpoint): \(error.message)")
                } else {
                    last = .malformed("\(endpoint)\(path) answered HTTP \(answer.status): \(String(decoding: answer.body.prefix(200), as: UTF8.self))")
                }
            } catch let timedOut as TimedOut {
                // A member that takes this long usually waits for a quorum it lacks; its status
                // says so at once (etcd itself answers only after its own request timeout).
                if let (_, errors) = try? await status(of: endpoint, timeoutSeconds: 0.5), !errors.isEmpty {
                    last = .failed(message: errors.joined(separator: "; "), code: 14)
                    memberError = memberError ?? last
                    problems.append("\(endpoint): \(errors.joined(separator: "; "))")
                } else {
                    problems.append("\(endpoint): \(timedOut)")
                    last = .unreachable(problems.joined(separator: "; "))
                }
            } catch {
                problems.append("\(endpoint): \(error)")
                last = .unreachable(problems.joined(separator: "; "))
            }
            guard last.triesAnotherMember else { break }
        }
        counters.withLockedValue { $0.failures += 1 }
        // What a member said (etcd's own words) matters more than the members that said nothing.
        if let said = memberError { throw said }
        if case .unreachable = last { throw .unreachable(problems.joined(separator: "; ")) }
        throw last
    }

    /// `work`, or a `TimedOut` after `seconds`, whichever comes first (`work` is cancelled then,
    /// and its answer, should it still come, dropped).
    static func bounded<T: Sendable>(seconds: Double, _ work: @escaping @Sendable () async throws -> T) async throws -> T {
        let finished = NIOLockedValueBox(false)
        let tasks = NIOLockedValueBox<[Task<Void, Never>]>([])
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let finish: @Sendable (Result<T, any Error>) -> Void = { result in
                let first = finished.withLockedValue { done in
                    defer { done = true }
                    return !done
                }
                guard first else { return }
                continuation.resume(with: result)
                for task in tasks.withLockedValue({ $0 }) { task.cancel() }
            }
            let worker = Task {
                do { finish(.success(try await work())) } catch { finish(.failure(error)) }
            }
            let timer = Task {
                try? await Task.sleep(nanoseconds: UInt64(max(0, seconds) * 1e9))
                finish(.failure(TimedOut(seconds: seconds)))
            }
            tasks.withLockedValue { $0 = [worker, timer] }
            if finished.withLockedValue({ $0 }) {
                worker.cancel()
                timer.cancel()
            }
        }
    }

    struct TimedOut: Error, CustomStringConvertible {
        let seconds: Double
        var description: String { "no answer within \(String(format: "%.1f", seconds)) s" }
    }
}
