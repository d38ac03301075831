import NIOHTTP1
import NIOCore

/// One request as the caller describes it; the client adds `Host`, `Content-Length`,
/// `User-Agent` and conditional headers itself. A `Connection: close` header is honoured: the
/// connection is closed after the answer instead of going back to the pool.
public struct HTTPRequest: Sendable, CustomStringConvertible {
    public var method: HTTPMethod
    public var url: HTTPURL
    public var headers: HTTPHeaders
    public var body: [UInt8]
    /// Whether to follow redirects (and how many) or hand a 3xx back to the caller.
    public var redirects: RedirectPolicy
    /// Whether to use and fill the client's ETag cache for this GET.
    public var cache: CachePolicy
    /// At most this long for the whole request: waiting for a connection, connecting, every
    /// attempt and every wait between attempts. Nil: only the client's own bounds apply. A
    /// health probe or a failover between endpoints sets a short one.
    public var timeoutSeconds: Double?
    /// Safe to send twice: a retry cannot repeat a side effect. By default from the method
    /// (RFC 9110, section 9.2.2); a POST the server de-duplicates (a webhook delivery with an id)
    /// may say so.
    public var isIdempotent: Bool

    public init(method: HTTPMethod = .GET, url: HTTPURL, headers: HTTPHeaders = [:], body: [UInt8] = [],
                redirects: RedirectPolicy = .none, cache: CachePolicy = .none, timeoutSeconds: Double? = nil,
                idempotent: Bool? = nil)
    {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.redirects = redirects
        self.cache = cache
        self.timeoutSeconds = timeoutSeconds
        isIdempotent = idempotent ?? Self.isIdempotent(method)
    }

    /// Method and URL only: headers may carry credentials and are never printed.
    public var description: String { "\(method.rawValue) \(url)" }

    /// https://www.rfc-editor.org/rfc/rfc9110#section-9.2.2
    static func isIdempotent(_ method: HTTPMethod) -> Bool {
        switch method {
        case .GET, .HEAD, .OPTIONS, .PUT, .DELETE, .TRACE: true
        default: false
        }
    }

    /// The caller asked for the connection to end with this exchange.
    var closesConnection: Bool {
        headers[canonicalForm: "connection"].contains { $0.lowercased() == "close" }
    }
}

/// What to do with a 3xx answer.
public enum RedirectPolicy: Sendable, Equatable {
    /// Return it: the caller reads `HTTPResponse.location` (the k3s channel server's 302).
    case none
    /// Follow up to `max` redirects; `Authorization` is dropped when the origin changes and
    /// HTTPS is never downgraded to HTTP.
    case follow(max: Int)
}

/// Whether a GET goes through the client's ETag cache.
public enum CachePolicy: Sendable, Equatable {
    case none
    /// Send `If-None-Match` with a stored ETag; a 304 answer returns the stored body.
    case etag
}

/// A complete response.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]
    /// The URL that produced this answer (after redirects).
    public var url: HTTPURL
    /// The server answered 304 Not Modified and the body came from the ETag cache.
    public var fromCache: Bool
    /// How many times the request was sent (1 without retries).
    public var attempts: Int

    public init(status: Int, headers: HTTPHeaders, body: [UInt8], url: HTTPURL, fromCache: Bool = false, attempts: Int = 1) {
        self.status = status
        self.headers = headers
        self.body = body
        self.url = url
        self.fromCache = fromCache
        self.attempts = attempts
    }

    public var isSuccess: Bool { (200..<300).contains(status) }
    public var isRedirect: Bool { [301, 302, 303, 307, 308].contains(status) }

    /// The `Location` header resolved against the request URL; nil when absent or unusable.
    public var location: HTTPURL? {
        guard let value = headers.first(name: "location"), !value.isEmpty else { return nil }
        return try? url.resolving(value)
    }

    /// The rate-limit headers of this answer.
    public var rateLimit: RateLimitStatus { RateLimitStatus(headers: headers) }

    /// The body as UTF-8 text (invalid bytes replaced).
    public var text: String { String(decoding: body, as: UTF8.self) }
}

/// A streamed answer (`HTTPClient.stream`): the head, and the body as it arrives.
public struct HTTPStreamedResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    /// The body's pieces as they arrive; ends with the answer, or throws `HTTPClientError`.
    public var body: AsyncThrowingStream<[UInt8], any Error>
    public var url: HTTPURL
    let channel: any Channel

    /// Closes the connection: the body ends.
    public func close() {
        channel.close(promise: nil)
    }
}
