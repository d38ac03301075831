import Foundation
import UpkeepKube

/// The part of etcd's v3 API the sandbox uses, as its JSON gateway carries it
/// (https://etcd.io/docs/v3.4/dev-guide/api_grpc_gateway/): keys and values base64, 64-bit
/// integers as decimal strings (proto3's JSON mapping), fields at their default value left out
/// (a `txn` that failed its compares has no `succeeded`). The client (`EtcdGateway`) and the fake
/// kine (`KineStore`, `GatewayService`) share these types, so both ends speak one encoding.
public enum Gateway {
    /// `header` of every answer (etcdserverpb.ResponseHeader). kine leaves `cluster_id` and
    /// `member_id` out (0); etcd gives a new `cluster_id` to a cluster restored from a snapshot.
    public struct Header: Sendable, Equatable {
        public var clusterID: UInt64
        public var memberID: UInt64
        public var revision: Int64
        public var raftTerm: UInt64

        public init(clusterID: UInt64 = 0, memberID: UInt64 = 0, revision: Int64, raftTerm: UInt64 = 0) {
            self.clusterID = clusterID
            self.memberID = memberID
            self.revision = revision
            self.raftTerm = raftTerm
        }
    }

    /// One key as a range answers it (mvccpb.KeyValue).
    public struct KeyValue: Sendable, Equatable {
        public var key: String
        public var value: [UInt8]
        public var createRevision: Int64
        public var modRevision: Int64
        public var version: Int64

        public init(key: String, value: [UInt8], createRevision: Int64, modRevision: Int64, version: Int64) {
            self.key = key
            self.value = value
            self.createRevision = createRevision
            self.modRevision = modRevision
            self.version = version
        }
    }

    /// `/v3/kv/range`: `key` alone, or [`key`, `rangeEnd`) (`rangeEnd` "\0" means every key from
    /// `key` on); at most `limit` keys (0: all); at `revision` (0: the newest).
    public struct RangeRequest: Sendable, Equatable {
        public var key: String
        public var rangeEnd: String?
        public var limit: Int64
        public var revision: Int64
        public var countOnly: Bool
        /// Answered by the member asked, without a quorum read (cheap; may be stale).
        public var serializable: Bool

        public init(key: String, rangeEnd: String? = nil, limit: Int64 = 0, revision: Int64 = 0, countOnly: Bool = false,
                    serializable: Bool = false)
        {
            self.key = key
            self.rangeEnd = rangeEnd
            self.limit = limit
            self.revision = revision
            self.countOnly = countOnly
            self.serializable = serializable
        }

        /// Every key that starts with `prefix` (etcd's `clientv3.WithPrefix`).
        public static func prefix(_ prefix: String, limit: Int64 = 0, countOnly: Bool = false) -> RangeRequest {
            RangeRequest(key: prefix, rangeEnd: Gateway.prefixEnd(prefix), limit: limit, countOnly: countOnly)
        }
    }

    public struct RangeResponse: Sendable, Equatable {
        public var header: Header
        public var kvs: [KeyValue]
        public var count: Int64
        /// More keys lie in the range beyond `limit`.
        public var more: Bool
    }

    /// A condition of a `txn` (etcdserverpb.Compare), always "equal", the only one the
    /// apiserver's storage uses: the key's `mod_revision` (0 for an absent key) or its
    /// `create_revision`.
    public struct Compare: Sendable, Equatable {
        public enum Target: Sendable, Equatable {
            case modRevision(Int64)
            case createRevision(Int64)
        }

        public var key: String
        public var target: Target

        public init(key: String, _ target: Target) {
            self.key = key
            self.target = target
        }
    }

    /// A request inside a `txn` (etcdserverpb.RequestOp).
    public enum Operation: Sendable, Equatable {
        case put(key: String, value: [UInt8])
        case deleteRange(key: String, rangeEnd: String?)
        case range(RangeRequest)
    }

    /// The answer to one `Operation` of a `txn`, with the revision it wrote at: the txn's for
    /// every operation on etcd, its own row's on kine.
    public enum OperationResponse: Sendable, Equatable {
        case put(revision: Int64)
        case deleteRange(deleted: Int64, revision: Int64)
        case range(RangeResponse)
    }

    public struct TxnRequest: Sendable, Equatable {
        public var compare: [Compare]
        public var success: [Operation]
        public var failure: [Operation]

        public init(compare: [Compare], success: [Operation], failure: [Operation] = []) {
            self.compare = compare
            self.success = success
            self.failure = failure
        }
    }

    public struct TxnResponse: Sendable, Equatable {
        public var header: Header
        public var succeeded: Bool
        public var responses: [OperationResponse]
    }

    /// A member as `/v3/cluster/member/list` and `/v3/cluster/member/add` give it; a member
    /// added but not started yet has no name.
    public struct Member: Sendable, Equatable {
        public var id: UInt64
        public var name: String
        public var peerURLs: [String]
        public var clientURLs: [String]
    }

    /// The error body the gateway answers with (a gRPC status: `code` 14 is Unavailable, 4
    /// DeadlineExceeded): `{"error": "...", "message": "etcdserver: request timed out", "code": 14}`.
    public struct ErrorBody: Sendable, Equatable {
        public var message: String
        public var code: Int64

        public init(message: String, code: Int64) {
            self.message = message
            self.code = code
        }
    }

    /// The smallest key greater than every key starting with `prefix`.
    public static func prefixEnd(_ prefix: String) -> String {
        var bytes = Array(prefix.utf8)
        while let last = bytes.last {
            if last < 0xFF {
                bytes[bytes.count - 1] = last + 1
                return String(decoding: bytes, as: UTF8.self)
            }
            bytes.removeLast()
        }
        return "\0"
    }
}

// MARK: - JSON encoding

extension Gateway {
    static func base64(_ text: String) -> JSON { .string(Data(text.utf8).base64EncodedString()) }
    static func base64(_ bytes: [UInt8]) -> JSON { .string(Data(bytes).base64EncodedString()) }

    static func bytes(_ json: JSON?) throws(GatewayDecodingError) -> [UInt8] {
        guard let json else { return [] }
        guard let text = json.string, let data = Data(base64Encoded: text) else { throw GatewayDecodingError("not base64: \(json)") }
        return Array(data)
    }

    static func text(_ json: JSON?) throws(GatewayDecodingError) -> String {
        String(decoding: try bytes(json), as: UTF8.self)
    }

    /// A 64-bit integer, as a decimal string (proto3 JSON) or a number; absent is 0.
    static func integer(_ json: JSON?) throws(GatewayDecodingError) -> Int64 {
        switch json {
        case nil: return 0
        case .string(let text)?:
            guard let value = Int64(text) else { throw GatewayDecodingError("not an integer: \(text)") }
            return value
        case let value?:
            guard let int = value.int else { throw GatewayDecodingError("not an integer: \(value)") }
            return int
        }
    }

    static func unsigned(_ json: JSON?) throws(GatewayDecodingError) -> UInt64 {
        switch json {
        case nil: return 0
        case .string(let text)?:
            guard let value = UInt64(text) else { throw GatewayDecodingError("not an unsigned integer: \(text)") }
            return value
        case let value?:
            guard let int = value.int, int >= 0 else { throw GatewayDecodingError("not an unsigned integer: \(value)") }
            return UInt64(int)
        }
    }

    static func number(_ value: Int64) -> JSON { .string(String(value)) }
    static func number(_ value: UInt64) -> JSON { .string(String(value)) }
}

/// An answer of the gateway that is not what etcd's API defines.
public struct GatewayDecodingError: Error, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { "malformed etcd gateway message: \(message)" }
}

extension Gateway.Header {
    public var json: JSON {
        var header: JSON = ["revision": Gateway.number(revision)]
        if clusterID != 0 { header["cluster_id"] = Gateway.number(clusterID) }
        if memberID != 0 { header["member_id"] = Gateway.number(memberID) }
        if raftTerm != 0 { header["raft_term"] = Gateway.number(raftTerm) }
        return header
    }

    public init(json: JSON?) throws(GatewayDecodingError) {
        guard let json, json.object != nil else { throw GatewayDecodingError("no header") }
        self.init(clusterID: try Gateway.unsigned(json["cluster_id"]), memberID: try Gateway.unsigned(json["member_id"]),
                  revision: try Gateway.integer(json["revision"]), raftTerm: try Gateway.unsigned(json["raft_term"]))
    }
}

extension Gateway.KeyValue {
    public var json: JSON {
        ["key": Gateway.base64(key), "value": Gateway.base64(value), "create_revision": Gateway.number(createRevision),
         "mod_revision": Gateway.number(modRevision), "version": Gateway.number(version)]
    }

    public init(json: JSON) throws(GatewayDecodingError) {
        self.init(key: try Gateway.text(json["key"]), value: try Gateway.bytes(json["value"]),
                  createRevision: try Gateway.integer(json["create_revision"]), modRevision: try Gateway.integer(json["mod_revision"]),
                  version: try Gateway.integer(json["version"]))
    }
}

extension Gateway.RangeRequest {
    public var json: JSON {
        var request: JSON = ["key": Gateway.base64(key)]
        if let rangeEnd { request["range_end"] = Gateway.base64(rangeEnd) }
        if limit != 0 { request["limit"] = Gateway.number(limit) }
        if revision != 0 { request["revision"] = Gateway.number(revision) }
        if countOnly { request["count_only"] = true }
        if serializable { request["serializable"] = true }
        return request
    }

    public init(json: JSON) throws(GatewayDecodingError) {
        let end = json["range_end"] == nil ? nil : try Gateway.text(json["range_end"])
        self.init(key: try Gateway.text(json["key"]), rangeEnd: end, limit: try Gateway.integer(json["limit"]),
                  revision: try Gateway.integer(json["revision"]), countOnly: json["count_only"]?.bool ?? false,
                  serializable: json["serializable"]?.bool ?? false)
    }
}

extension Gateway.RangeResponse {
    public var json: JSON {
        var response: JSON = ["header": header.json]
        if !kvs.isEmpty { response["kvs"] = .array(kvs.map(\.json)) }
        if count != 0 { response["count"] = Gateway.number(count) }
        if more { response["more"] = true }
        return response
    }

    public init(json: JSON) throws(GatewayDecodingError) {
        var kvs: [Gateway.KeyValue] = []
        for item in json["kvs"]?.array ?? [] { kvs.append(try Gateway.KeyValue(json: item)) }
        self.init(header: try Gateway.Header(json: json["header"]), kvs: kvs, count: try Gateway.integer(json["count"]),
                  more: json["more"]?.bool ?? false)
    }
}

extension Gateway.Compare {
    public var json: JSON {
        switch target {
        case .modRevision(let revision):
            ["key": Gateway.base64(key), "target": "MOD", "result": "EQUAL", "mod_revision": Gateway.number(revision)]
        case .createRevision(let revision):
            ["key": Gateway.base64(key), "target": "CREATE", "result": "EQUAL", "create_revision": Gateway.number(revision)]
        }
    }

    public init(json: JSON) throws(GatewayDecodingError) {
        guard (json["result"]?.string ?? "EQUAL") == "EQUAL" else {
            throw GatewayDecodingError("only EQUAL compares are served, not \(json["result"] ?? .null)")
        }
        switch json["target"]?.string ?? "VERSION" {
        case "MOD": self.init(key: try Gateway.text(json["key"]), .modRevision(try Gateway.integer(json["mod_revision"])))
        case "CREATE": self.init(key: try Gateway.text(json["key"]), .createRevision(try Gateway.integer(json["create_revision"])))
        case let other: throw GatewayDecodingError("only MOD and CREATE compares are served, not \(other)")
        }
    }
}

extension Gateway.Operation {
    public var json: JSON {
        switch self {
        case .put(let key, let value): ["request_put": ["key": Gateway.base64(key), "value": Gateway.base64(value)]]
        case .deleteRange(let key, let rangeEnd):
            if let rangeEnd { ["request_delete_range": ["key": Gateway.base64(key), "range_end": Gateway.base64(rangeEnd)]] }
            else { ["request_delete_range": ["key": Gateway.base64(key)]] }
        case .range(let request): ["request_range": request.json]
        }
    }

    public init(json: JSON) throws(GatewayDecodingError) {
        if let put = json["request_put"] {
            self = .put(key: try Gateway.text(put["key"]), value: try Gateway.bytes(put["value"]))
        } else if let delete = json["request_delete_range"] {
            self = .deleteRange(key: try Gateway.text(delete["key"]), rangeEnd: delete["range_end"] == nil ? nil : try Gateway.text(delete["range_end"]))
        } else if let range = json["request_range"] {
            self = .range(try Gateway.RangeRequest(json: range))
        } else {
            throw GatewayDecodingError("a txn operation must be request_put, request_delete_range or request_range")
        }
    }
}

extension Gateway.OperationResponse {
    /// The revision the operation wrote at (a range: the store's).
    public var revision: Int64 {
        switch self {
        case .put(let revision), .deleteRange(_, let revision): revision
        case .range(let range): range.header.revision
        }
    }

    var json: JSON {
        switch self {
        case .put(let revision): ["response_put": ["header": ["revision": Gateway.number(revision)]]]
        case .deleteRange(let deleted, let revision):
            deleted == 0 ? ["response_delete_range": ["header": ["revision": Gateway.number(revision)]]]
                : ["response_delete_range": ["header": ["revision": Gateway.number(revision)], "deleted": Gateway.number(deleted)]]
        case .range(let range): ["response_range": range.json]
        }
    }

    init(json: JSON, header: Gateway.Header) throws(GatewayDecodingError) {
        func revision(_ response: JSON) throws(GatewayDecodingError) -> Int64 {
            let own = try Gateway.integer(response[path: "header", "revision"])
            return own > 0 ? own : header.revision
        }
        if let put = json["response_put"] {
            self = .put(revision: try revision(put))
        } else if let delete = json["response_delete_range"] {
            self = .deleteRange(deleted: try Gateway.integer(delete["deleted"]), revision: try revision(delete))
        } else if let range = json["response_range"] {
            self = .range(try Gateway.RangeResponse(json: range))
        } else {
            throw GatewayDecodingError("unknown txn response \(json)")
        }
    }
}

extension Gateway.TxnRequest {
    public var json: JSON {
        var request: JSON = ["compare": .array(compare.map(\.json)), "success": .array(success.map(\.json))]
        if !failure.isEmpty { request["failure"] = .array(failure.map(\.json)) }
        return request
    }

    public init(json: JSON) throws(GatewayDecodingError) {
        var compare: [Gateway.Compare] = []
        for item in json["compare"]?.array ?? [] { compare.append(try Gateway.Compare(json: item)) }
        var success: [Gateway.Operation] = []
        for item in json["success"]?.array ?? [] { success.append(try Gateway.Operation(json: item)) }
        var failure: [Gateway.Operation] = []
        for item in json["failure"]?.array ?? [] { failure.append(try Gateway.Operation(json: item)) }
        self.init(compare: compare, success: success, failure: failure)
    }
}

extension Gateway.TxnResponse {
    public var json: JSON {
        var response: JSON = ["header": header.json, "responses": .array(responses.map(\.json))]
        if succeeded { response["succeeded"] = true }
        return response
    }

    public init(json: JSON) throws(GatewayDecodingError) {
        let header = try Gateway.Header(json: json["header"])
        var responses: [Gateway.OperationResponse] = []
        for item in json["responses"]?.array ?? [] { responses.append(try Gateway.OperationResponse(json: item, header: header)) }
        self.init(header: header, succeeded: json["succeeded"]?.bool ?? false, responses: responses)
    }
}

extension Gateway.Member {
    public init(json: JSON) throws(GatewayDecodingError) {
        self.init(id: try Gateway.unsigned(json["ID"]), name: json["name"]?.string ?? "",
                  peerURLs: (json["peerURLs"]?.array ?? []).compactMap(\.string),
                  clientURLs: (json["clientURLs"]?.array ?? []).compactMap(\.string))
    }
}

extension Gateway.ErrorBody {
    public var json: JSON { ["error": .string(message), "message": .string(message), "code": .int(code)] }

    /// The error of a gateway answer, if it is one.
    public init?(json: JSON) {
        guard let message = json["message"]?.string ?? json["error"]?.string else { return nil }
        self.init(message: message, code: json["code"]?.int ?? 2)
    }
}
