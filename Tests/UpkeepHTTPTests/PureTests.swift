import NIOHTTP1
import Testing
import UpkeepHTTP

@Suite("URLs, dates and the retry policy")
struct PureTests {
    @Test("URLs split into origin and target; credentials and bad ports are refused")
    func urls() throws {
        let url = try HTTPURL("https://API.github.com/repos/k3s-io/k3s/releases?per_page=100#frag")
        #expect(url.origin.description == "https://api.github.com:443")
        #expect(url.target == "/repos/k3s-io/k3s/releases?per_page=100")
        #expect(url.hostHeader == "api.github.com")
        #expect(try HTTPURL("http://[::1]:8080").hostHeader == "[::1]:8080")
        #expect(try HTTPURL("http://127.0.0.1:8080?x=1").target == "/?x=1")
        #expect(throws: HTTPClientError.self) { try HTTPURL("https://user:pw@github.com/") }
        #expect(throws: HTTPClientError.self) { try HTTPURL("ftp://github.com/") }
        #expect(throws: HTTPClientError.self) { try HTTPURL("http://host:70000/") }
        #expect(throws: HTTPClientError.self) { try HTTPURL("http://host/a b") }
        let base = try HTTPURL("https://update.k3s.io/v1-release/channels/stable")
        #expect(try base.resolving("latest").description == "https://update.k3s.io/v1-release/channels/latest")
        #expect(try base.resolving("/x?y").description == "https://update.k3s.io/x?y")
        #expect(try base.resolving("//github.com/a").description == "https://github.com/a")
        #expect(url.appending(query: [("page", "2"), ("q", "v1.33.4+k3s1")]).target
            == "/repos/k3s-io/k3s/releases?per_page=100&page=2&q=v1.33.4%2Bk3s1")
        #expect(HTTPURL.percentDecode("v1.33.4%2Bk3s1") == "v1.33.4+k3s1")
        #expect(HTTPURL.percentDecode("%zz") == nil)
    }

    @Test("HTTP dates parse and print in UTC")
    func dates() {
        #expect(HTTPDate.parseIMF("Sun, 06 Nov 1994 08:49:37 GMT") == 784_111_777)
        #expect(HTTPDate.parseIMF("Sunday, 06-Nov-94 08:49:37 GMT") == nil)
        #expect(HTTPDate.iso8601(784_111_777) == "1994-11-06T08:49:37Z")
        #expect(HTTPDate.parseISO8601("2025-08-20T12:00:00Z") == 1_755_691_200)
        #expect(HTTPDate.parseISO8601("2025-08-20T12:00:00.123Z") == 1_755_691_200)
        #expect(HTTPDate.parseISO8601("2025-13-20T12:00:00Z") == nil)
        #expect(HTTPDate.iso8601(HTTPDate.parseISO8601("2024-02-29T23:59:59Z") ?? 0) == "2024-02-29T23:59:59Z")
    }

    static func headers(_ pairs: [(String, String)]) -> HTTPHeaders { HTTPHeaders(pairs) }

    @Test("rate limits wait for the reset or retry-after within the bound, else fail")
    func rateLimitDecisions() {
        let policy = RetryPolicy(attemptsMax: 3, rateLimitWaitSecondsMax: 60)
        func decide(_ status: Int, _ pairs: [(String, String)], body: String = "", attempt: Int = 1) -> RetryPolicy.Decision {
            policy.decide(.response(status: status, headers: Self.headers(pairs), body: Array(body.utf8)), attempt: attempt,
                          idempotent: true, authenticated: false, url: "u", now: 1000, random: 0.5)
        }
        #expect(decide(403, [("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1030")]) == .retry(afterSeconds: 31, reason: "rate limited (HTTP 403)"))
        #expect(decide(403, [("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "5000")])
            == .fail(.rateLimited(url: "u", resetEpochSeconds: 5000, waitSeconds: 4001, authenticated: false)))
        #expect(decide(429, [("retry-after", "7")]) == .retry(afterSeconds: 7, reason: "rate limited (HTTP 429)"))
        #expect(decide(429, [("retry-after", "Thu, 01 Jan 1970 00:17:00 GMT")]) == .retry(afterSeconds: 20, reason: "rate limited (HTTP 429)"))
        #expect(decide(403, [], body: "secondary rate limit") == .retry(afterSeconds: 60, reason: "rate limited (HTTP 403)"))
        #expect(decide(403, [], body: "secondary rate limit", attempt: 2)
            == .fail(.rateLimited(url: "u", resetEpochSeconds: nil, waitSeconds: 120, authenticated: false)))
        #expect(decide(403, [("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1010")], attempt: 3)
            == .fail(.rateLimited(url: "u", resetEpochSeconds: 1010, waitSeconds: 11, authenticated: false)))
        #expect(decide(403, [("x-ratelimit-remaining", "12")], body: "forbidden") == .deliver)
        #expect(decide(404, []) == .deliver)
        #expect(decide(200, [("x-ratelimit-remaining", "0")]) == .deliver)
    }

    @Test("transient failures back off with jitter; unsafe ones are not retried")
    func failureDecisions() {
        let policy = RetryPolicy(attemptsMax: 3, backoffBaseSeconds: 1, backoffMaxSeconds: 3)
        #expect(policy.backoffSeconds(afterAttempt: 1, random: 0) == 0.5)
        #expect(policy.backoffSeconds(afterAttempt: 1, random: 0.999_999) > 0.999)
        #expect(policy.backoffSeconds(afterAttempt: 2, random: 0) == 1)
        #expect(policy.backoffSeconds(afterAttempt: 10, random: 1) == 3)
        let timeout = HTTPClientError.responseTimeout(url: "u", seconds: 1)
        #expect(policy.decide(.failure(timeout), attempt: 1, idempotent: true, authenticated: false, url: "u", now: 0, random: 0)
            == .retry(afterSeconds: 0.5, reason: timeout.description))
        #expect(policy.decide(.failure(timeout), attempt: 1, idempotent: false, authenticated: false, url: "u", now: 0, random: 0)
            == .fail(timeout))
        let refused = HTTPClientError.connectFailed(origin: "o", reason: "refused")
        #expect(policy.decide(.failure(refused), attempt: 1, idempotent: false, authenticated: false, url: "u", now: 0, random: 0)
            == .retry(afterSeconds: 0.5, reason: refused.description))
        #expect(policy.decide(.failure(refused), attempt: 3, idempotent: true, authenticated: false, url: "u", now: 0, random: 0)
            == .fail(.retriesExhausted(url: "u", attempts: 3, last: refused.description)))
        let tls = HTTPClientError.tls(origin: "o", reason: "bad certificate")
        #expect(policy.decide(.failure(tls), attempt: 1, idempotent: true, authenticated: false, url: "u", now: 0, random: 0) == .fail(tls))
    }
}
