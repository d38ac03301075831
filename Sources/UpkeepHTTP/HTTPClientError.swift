/// Why an HTTP exchange did not produce a response the caller can use.
///
/// Each case says what happened in words an operator can act on; none carries a credential.
public enum HTTPClientError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The URL cannot be used (wrong scheme, credentials in it, bad port, …).
    case invalidURL(String, String)
    /// No TCP connection could be made.
    case connectFailed(origin: String, reason: String)
    /// The TCP connection (and TLS handshake) did not complete within the bound.
    case connectTimeout(origin: String, seconds: Double)
    /// The TLS handshake or session failed (certificate refused, not TLS, …).
    case tls(origin: String, reason: String)
    /// The server accepted the request but did not answer completely within the bound.
    case responseTimeout(url: String, seconds: Double)
    /// The server closed the connection before a complete response.
    case connectionClosed(url: String)
    /// The response body exceeded the bound; the connection was closed.
    case responseTooLarge(url: String, bytesMax: Int)
    /// The bytes received are not a valid HTTP/1.1 response.
    case invalidResponse(url: String, reason: String)
    /// More redirects than allowed, or a redirect loop.
    case tooManyRedirects(url: String, max: Int)
    /// A redirect that would leave HTTPS, or that carries no usable `Location`.
    case redirectRefused(url: String, reason: String)
    /// An API rate limit is exhausted and its reset is further away than the client may wait.
    case rateLimited(url: String, resetEpochSeconds: Double?, waitSeconds: Double?, authenticated: Bool)
    /// Every attempt failed with a transient error; `last` is the final one.
    case retriesExhausted(url: String, attempts: Int, last: String)
    /// More requests than the bound were already waiting for a connection to this origin.
    case tooManyWaiting(origin: String, max: Int)
    /// The reader of a streamed answer fell further behind than the bound; the stream was cut.
    case streamBacklog(url: String, piecesMax: Int)
    /// The client was shut down.
    case shutDown

    public var description: String {
        switch self {
        case let .invalidURL(url, reason): "invalid URL \(url): \(reason)"
        case let .connectFailed(origin, reason): "cannot connect to \(origin): \(reason)"
        case let .connectTimeout(origin, seconds): "no connection to \(origin) within \(Self.seconds(seconds)); check the address and the network"
        case let .tls(origin, reason): "TLS with \(origin) failed: \(reason)"
        case let .responseTimeout(url, seconds): "\(url) did not answer within \(Self.seconds(seconds))"
        case let .connectionClosed(url): "the server closed the connection before answering \(url)"
        case let .responseTooLarge(url, bytesMax): "the answer from \(url) is larger than \(bytesMax) bytes"
        case let .invalidResponse(url, reason): "invalid HTTP response from \(url): \(reason)"
        case let .tooManyRedirects(url, max): "more than \(max) redirects from \(url)"
        case let .redirectRefused(url, reason): "refused the redirect from \(url): \(reason)"
        case let .rateLimited(url, reset, wait, authenticated):
            Self.rateLimitMessage(url: url, resetEpochSeconds: reset, waitSeconds: wait, authenticated: authenticated)
        case let .retriesExhausted(url, attempts, last): "\(url) failed \(attempts) times; last: \(last)"
        case let .tooManyWaiting(origin, max):
            "more than \(max) requests are waiting for a connection to \(origin); the server is slow or the caller sends too much at once"
        case let .streamBacklog(url, piecesMax):
            "the reader of the answer from \(url) fell \(piecesMax) pieces behind; the stream was cut (read it again from where it stopped)"
        case .shutDown: "the HTTP client was shut down"
        }
    }

    /// True for failures another attempt may not repeat (network trouble, timeouts, closed connections).
    public var isTransient: Bool {
        switch self {
        case .connectFailed, .connectTimeout, .responseTimeout, .connectionClosed: true
        default: false
        }
    }

    /// Nothing reached the server: trying again (or another server, in a failover) cannot
    /// repeat a side effect.
    public var happenedBeforeSending: Bool {
        switch self {
        case .connectFailed, .connectTimeout, .tooManyWaiting, .invalidURL, .shutDown: true
        default: false
        }
    }

    /// The client bound this error reports reaching, as `HTTPClient.limits` counts it.
    var limit: ClientLimit? {
        switch self {
        case .connectTimeout: .connectTimeout
        case .responseTimeout: .responseTimeout
        case .responseTooLarge: .responseBytes
        case .tooManyRedirects: .redirects
        case .rateLimited: .rateLimitWait
        case .retriesExhausted: .attempts
        case .tooManyWaiting: .waiting
        case .streamBacklog: .streamBacklog
        default: nil
        }
    }

    static func seconds(_ value: Double) -> String {
        value == value.rounded() ? "\(Int(value)) s" : "\(value) s"
    }

    private static func rateLimitMessage(url: String, resetEpochSeconds: Double?, waitSeconds: Double?, authenticated: Bool) -> String {
        var text = "rate limit exhausted at \(url)"
        if let resetEpochSeconds { text += "; it resets at \(HTTPDate.iso8601(resetEpochSeconds))" }
        if let waitSeconds { text += " (in \(Self.seconds(waitSeconds.rounded(.up))))" }
        text += authenticated
            ? "; wait for the reset or use a mirror (--mirror)"
            : "; set GITHUB_TOKEN (or --github-token-file, mode 0600) for 5,000 requests per hour instead of 60, or wait for the reset"
        return text
    }
}
