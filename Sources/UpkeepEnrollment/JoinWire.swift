import UpkeepKube

/// The join protocol's HTTP requests and answers, over TLS to the join server
/// (`upkeep join-server`, docs/enrollment.md):
///
///     GET  /v1/join/ca   → 200 the cluster CA certificate (PEM). Public: the node checks its
///                          hash against --ca-hash before it trusts it.
///     POST /v1/join      ← {"token": "<id>.<secret>", "csr": "<PEM>", "force": false}
///                        → 200 {"certificate": "<PEM>", "ca": "<PEM>"}
///                        → 4xx {"error": "<what went wrong and what to do>"}
///
/// The POST goes over a connection that verifies the server's certificate as a controller
/// identity under the pinned CA, so the token is never sent to anyone else.
public enum JoinWire {
    public static let caPath = "/v1/join/ca"
    public static let joinPath = "/v1/join"
    /// A request is a token, a CSR and a flag; an answer two certificates: both fit in this.
    public static let bodyBytesMax = 32 * 1024

    public struct Request: Equatable, Sendable {
        public var token: String
        public var csr: String
        public var force: Bool

        public init(token: String, csr: String, force: Bool) {
            self.token = token
            self.csr = csr
            self.force = force
        }

        public var body: [UInt8] { JSON.object(["token": .string(token), "csr": .string(csr), "force": .bool(force)]).serialized() }

        public init(body: [UInt8]) throws(JoinError) {
            guard let json = try? JSON.parse(bytes: body), let token = json["token"]?.string, let csr = json["csr"]?.string else {
                throw .malformedMessage("a join request is {\"token\": …, \"csr\": …, \"force\": …}")
            }
            self.init(token: token, csr: csr, force: json["force"]?.bool ?? false)
        }
    }

    public struct Response: Equatable, Sendable {
        public var certificate: String
        public var ca: String

        public init(certificate: String, ca: String) {
            self.certificate = certificate
            self.ca = ca
        }

        public var body: [UInt8] { JSON.object(["certificate": .string(certificate), "ca": .string(ca)]).serialized() }

        public init(body: [UInt8]) throws(JoinError) {
            guard let json = try? JSON.parse(bytes: body), let certificate = json["certificate"]?.string, let ca = json["ca"]?.string else {
                throw .malformedMessage("the join server's answer is not {\"certificate\": …, \"ca\": …}")
            }
            self.init(certificate: certificate, ca: ca)
        }
    }

    /// The body of a refusal.
    public static func errorBody(_ message: String) -> [UInt8] { JSON.object(["error": .string(message)]).serialized() }

    /// The message of a refusal's body, or its text when it is not one.
    public static func errorMessage(_ body: [UInt8]) -> String {
        (try? JSON.parse(bytes: body))?["error"]?.string ?? String(decoding: body.prefix(512), as: UTF8.self)
    }
}
