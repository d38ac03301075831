import UpkeepHTTP

/// One request, read whole off the wire (its body within the server's bound).
public struct HTTPServerRequest: Sendable {
    public var method: String
    /// The request target as sent (`/api/v1/pods?limit=500`).
    public var uri: String
    /// The target's path, percent-decoded (a `+` stays a `+`).
    public var path: String
    /// The query's names and values, form-decoded (`+` is a space); the last of a repeated name wins.
    public var query: [String: String]
    public var accept: String
    public var contentType: String
    public var body: [UInt8]
    /// Every header as received (names lowercased).
    public var headers: [(String, String)]
    /// The connection's serial number on its server (1 for the first accepted), to tell
    /// keep-alive reuse from new connections.
    public var connection: Int

    public init(method: String, uri: String, accept: String = "application/json", contentType: String = "", body: [UInt8] = [],
                headers: [(String, String)] = [], connection: Int = 0)
    {
        self.method = method
        self.uri = uri
        self.headers = headers
        self.connection = connection
        let parts = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let rawPath = String(parts.first ?? "")
        path = HTTPURL.percentDecode(rawPath) ?? rawPath
        var query: [String: String] = [:]
        if parts.count > 1 {
            for pair in parts[1].split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                func decode(_ text: Substring) -> String { HTTPURL.percentDecode(String(text), plusIsSpace: true) ?? String(text) }
                query[decode(kv[0])] = kv.count > 1 ? decode(kv[1]) : ""
            }
        }
        self.query = query
        self.accept = accept
        self.contentType = contentType
        self.body = body
    }

    public func header(_ name: String) -> String? {
        let name = name.lowercased()
        return headers.first { $0.0 == name }?.1
    }
}

/// A responder's answer.
public struct HTTPServerResponse: Sendable {
    /// Whether anything is written at all.
    public enum Delivery: Sendable, Equatable {
        case answer
        /// Keep the connection open and never answer (a hung peer, for fault injection); the
        /// server's request time bound still closes it.
        case withhold
        /// Close the connection without answering (a crashed peer, for fault injection).
        case closeWithoutAnswer
        /// The head now, the body as `stream` produces it (chunked); the request time bound
        /// stops counting once the head is written (the producer bounds the answer's length).
        case stream(HTTPResponseStream)
    }

    public var status: Int
    /// Sent as `Content-Type` unless empty.
    public var contentType: String
    public var body: [UInt8]
    /// Sent as given, after `Content-Type`. The server adds `Content-Length` unless these carry
    /// a `Content-Length` or `Transfer-Encoding`, and `Connection` unless they carry one; a
    /// `Connection: close` here closes the connection after the answer.
    public var headers: [(String, String)]
    public var delivery: Delivery = .answer

    /// No answer at all: the connection stays open until the client gives up.
    public static var withheld: HTTPServerResponse {
        var response = HTTPServerResponse(status: 0, body: [])
        response.delivery = .withhold
        return response
    }

    /// An answer whose body `stream` produces (a Kubernetes watch).
    public static func streamed(_ stream: HTTPResponseStream, status: Int = 200, contentType: String = "application/json",
                                headers: [(String, String)] = []) -> HTTPServerResponse
    {
        var response = HTTPServerResponse(status: status, contentType: contentType, body: [], headers: headers)
        response.delivery = .stream(stream)
        return response
    }

    /// The connection closes without an answer.
    public static var closedWithoutAnswer: HTTPServerResponse {
        var response = HTTPServerResponse(status: 0, body: [])
        response.delivery = .closeWithoutAnswer
        return response
    }

    /// `contentType` defaults to JSON: the sandbox's simulated APIs answer JSON almost always.
    public init(status: Int, contentType: String = "application/json", body: [UInt8], headers: [(String, String)] = []) {
        self.status = status
        self.contentType = contentType
        self.body = body
        self.headers = headers
    }

    public static func text(_ text: String, status: Int = 200) -> HTTPServerResponse {
        HTTPServerResponse(status: status, contentType: "text/plain; charset=utf-8", body: Array(text.utf8))
    }

    /// The connection must close after this answer.
    var closesConnection: Bool {
        headers.contains { $0.0.lowercased() == "connection" && $0.1.lowercased().contains("close") }
    }
}
