/// A failed Kubernetes API call, read from (or, in the simulated API, written as) a `Status` body.
///
/// `reason` is the machine-readable cause (`NotFound`, `Conflict`, `TooManyRequests`, …); `code`
/// the HTTP status. Callers switch on `reason`, show `message` to people.
public struct KubeAPIError: Error, Equatable, Sendable, CustomStringConvertible {
    public var code: Int
    public var reason: String
    public var message: String
    /// `details.name`, `details.kind`, `details.group` when the server named the object.
    public var name: String?
    public var kind: String?
    public var group: String?
    /// `details.causes[].reason`/`message` (e.g. `DisruptionBudget` for a refused eviction).
    public var causes: [Cause]
    /// `details.retryAfterSeconds`.
    public var retryAfterSeconds: Int?

    public struct Cause: Equatable, Sendable {
        public var reason: String
        public var message: String
        public var field: String?
        public init(reason: String, message: String, field: String? = nil) {
            self.reason = reason
            self.message = message
            self.field = field
        }
    }

    public init(code: Int, reason: String, message: String, name: String? = nil, kind: String? = nil, group: String? = nil,
                causes: [Cause] = [], retryAfterSeconds: Int? = nil)
    {
        self.code = code
        self.reason = reason
        self.message = message
        self.name = name
        self.kind = kind
        self.group = group
        self.causes = causes
        self.retryAfterSeconds = retryAfterSeconds
    }

    public var description: String { "\(message) (\(code) \(reason))" }

    public var isNotFound: Bool { reason == "NotFound" }
    public var isConflict: Bool { reason == "Conflict" }
    public var isAlreadyExists: Bool { reason == "AlreadyExists" }
    public var isTooManyRequests: Bool { code == 429 }

    /// Reads a `Status` body; for a body that is not a Status (a proxy's HTML page, say) the
    /// error still carries the code and a short excerpt of the body.
    public init(code: Int, body: [UInt8]) {
        if let status = try? JSON.parse(bytes: body), status["kind"]?.string == "Status" {
            self.init(status: status, code: code)
        } else {
            let excerpt = String(decoding: body.prefix(200), as: UTF8.self)
            self.init(code: code, reason: KubeAPIError.reason(forCode: code), message: "the server answered \(code): \(excerpt)")
        }
    }

    public init(status: JSON, code: Int) {
        let details = status["details"] ?? .null
        self.init(
            code: status["code"]?.int.map(Int.init) ?? code,
            reason: status["reason"]?.string ?? KubeAPIError.reason(forCode: code),
            message: status["message"]?.string ?? "the server answered \(code)",
            name: details["name"]?.string, kind: details["kind"]?.string, group: details["group"]?.string,
            causes: (details["causes"]?.array ?? []).map {
                Cause(reason: $0["reason"]?.string ?? "", message: $0["message"]?.string ?? "", field: $0["field"]?.string)
            },
            retryAfterSeconds: details["retryAfterSeconds"]?.int.map(Int.init))
    }

    /// The `Status` body a Kubernetes API server sends for this error.
    public var status: JSON {
        var details: JSON = [:]
        if let name { details["name"] = .string(name) }
        if let group { details["group"] = .string(group) }
        if let kind { details["kind"] = .string(kind) }
        if !causes.isEmpty {
            details["causes"] = .array(causes.map { cause in
                var c: JSON = ["reason": .string(cause.reason), "message": .string(cause.message)]
                if let field = cause.field { c["field"] = .string(field) }
                return c
            })
        }
        if let retryAfterSeconds { details["retryAfterSeconds"] = .int(Int64(retryAfterSeconds)) }
        var body: JSON = [
            "kind": "Status", "apiVersion": "v1", "metadata": [:], "status": "Failure",
            "message": .string(message), "reason": .string(reason), "code": .int(Int64(code)),
        ]
        if details != [:] { body["details"] = details }
        return body
    }

    /// The `reason` Kubernetes uses for an HTTP status without a more precise one.
    public static func reason(forCode code: Int) -> String {
        switch code {
        case 400: "BadRequest"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "NotFound"
        case 405: "MethodNotAllowed"
        case 406: "NotAcceptable"
        case 409: "Conflict"
        case 410: "Expired"
        case 415: "UnsupportedMediaType"
        case 422: "Invalid"
        case 429: "TooManyRequests"
        case 500: "InternalError"
        case 503: "ServiceUnavailable"
        case 504: "Timeout"
        default: "Unknown"
        }
    }

    public static func notFound(_ resource: String, _ name: String, group: String = "") -> KubeAPIError {
        KubeAPIError(code: 404, reason: "NotFound", message: "\(resource)\(group.isEmpty ? "" : ".\(group)") \"\(name)\" not found",
                     name: name, kind: resource, group: group.isEmpty ? nil : group)
    }

    public static func alreadyExists(_ resource: String, _ name: String, group: String = "") -> KubeAPIError {
        KubeAPIError(code: 409, reason: "AlreadyExists",
                     message: "\(resource)\(group.isEmpty ? "" : ".\(group)") \"\(name)\" already exists",
                     name: name, kind: resource, group: group.isEmpty ? nil : group)
    }

    public static func conflict(_ resource: String, _ name: String, group: String = "") -> KubeAPIError {
        KubeAPIError(code: 409, reason: "Conflict",
                     message: "Operation cannot be fulfilled on \(resource)\(group.isEmpty ? "" : ".\(group)") \"\(name)\": the object has been modified; please apply your changes to the latest version and try again",
                     name: name, kind: resource, group: group.isEmpty ? nil : group)
    }

    public static func badRequest(_ message: String) -> KubeAPIError {
        KubeAPIError(code: 400, reason: "BadRequest", message: message)
    }

    public static func invalid(_ kind: String, _ name: String, _ message: String, group: String = "") -> KubeAPIError {
        KubeAPIError(code: 422, reason: "Invalid", message: "\(kind) \"\(name)\" is invalid: \(message)",
                     name: name, kind: kind, group: group.isEmpty ? nil : group)
    }
}
