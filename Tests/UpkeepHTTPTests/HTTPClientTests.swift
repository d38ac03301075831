import Foundation
import NIOConcurrencyHelpers
import NIOHTTP1
import Testing
import UpkeepHTTP
import UpkeepTestSupport

/// Sleeps as asked, but shortened by `scale`, and remembers every wait the client asked for.
final class RecordingSleeps: Sendable {
    let waits = NIOLockedValueBox<[Double]>([])
    let scale: Double
    init(scale: Double = 0) { self.scale = scale }

    var clock: HTTPClock {
        HTTPClock(now: HTTPClock.system.now, sleep: { [self] seconds in
            waits.withLockedValue { $0.append(seconds) }
            try await Task.sleep(nanoseconds: UInt64(seconds * scale * 1e9))
        }, random: { 0.5 })
    }
}

func makeClient(attemptsMax: Int = 3, responseTimeoutSeconds: Double = 5, responseBytesMax: Int = 1 << 20,
                rateLimitWaitSecondsMax: Double = 60, cache: ETagCache? = nil, clock: HTTPClock = .system) throws -> HTTPClient
{
    let configuration = HTTPClient.Configuration(
        connectTimeoutSeconds: 2, responseTimeoutSeconds: responseTimeoutSeconds, responseBytesMax: responseBytesMax,
        retry: RetryPolicy(attemptsMax: attemptsMax, backoffBaseSeconds: 0.05, backoffMaxSeconds: 0.2,
                           rateLimitWaitSecondsMax: rateLimitWaitSecondsMax, secondaryLimitBackoffSeconds: 60))
    return try HTTPClient(configuration: configuration, cache: cache, clock: clock)
}

@Suite("HTTP client against a real local server", .timeLimit(.minutes(1)))
struct HTTPClientTests {
    @Test("keeps one connection alive across requests")
    func keepAlive() async throws {
        let server = try await ScriptedServer { _, index in .respond(status: 200, body: "answer \(index)".bytes) }
        let client = try makeClient()
        for index in 0..<3 {
            let response = try await client.get(HTTPURL("\(server.url)/r"))
            #expect(response.text == "answer \(index)")
        }
        #expect(server.connections == 1)
        #expect(server.requests.allSatisfy { $0.header("host") == "127.0.0.1:\(server.port)" })
        await client.shutdown()
        await server.close()
    }

    @Test("a 403 with x-ratelimit-remaining 0 waits until the reset, then succeeds")
    func primaryRateLimitWaitsForReset() async throws {
        let resetAt = NIOLockedValueBox<Double>(0)
        let server = try await ScriptedServer { request, index in
            if index == 0 {
                let reset = (request.atSeconds + 1).rounded(.up)
                resetAt.withLockedValue { $0 = reset }
                return .respond(status: 403, headers: [("x-ratelimit-limit", "60"), ("x-ratelimit-remaining", "0"),
                                                       ("x-ratelimit-used", "60"), ("x-ratelimit-reset", String(Int(reset)))],
                                body: #"{"message":"API rate limit exceeded for 127.0.0.1."}"#.bytes)
            }
            return .respond(status: 200, headers: [("x-ratelimit-remaining", "59")], body: "[]".bytes)
        }
        let client = try makeClient()
        let response = try await client.get(HTTPURL("\(server.url)/repos/k3s-io/k3s/releases"))
        #expect(response.status == 200)
        #expect(response.attempts == 2)
        #expect(response.rateLimit.remaining == 59)
        let requests = server.requests
        #expect(requests.count == 2)
        // The retry went out only once the limit had reset.
        #expect(requests[1].atSeconds >= resetAt.withLockedValue { $0 })
        await client.shutdown()
        await server.close()
    }

    @Test("a reset further away than allowed fails at once with a clear error")
    func primaryRateLimitBeyondBound() async throws {
        let server = try await ScriptedServer { request, _ in
            .respond(status: 403, headers: [("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", String(Int(request.atSeconds) + 3000))])
        }
        let client = try makeClient(rateLimitWaitSecondsMax: 30)
        await #expect {
            _ = try await client.get(HTTPURL("\(server.url)/repos/fluxcd/flux2/releases"))
        } throws: { error in
            guard case let .rateLimited(_, reset, wait, authenticated) = error as? HTTPClientError else { return false }
            return reset != nil && (wait ?? 0) > 2900 && !authenticated && "\(error)".contains("GITHUB_TOKEN")
        }
        #expect(server.requests.count == 1)
        await client.shutdown()
        await server.close()
    }

    @Test("a 429 with retry-after is retried after that many seconds")
    func retryAfter() async throws {
        let server = try await ScriptedServer { _, index in
            index == 0 ? .respond(status: 429, headers: [("retry-after", "1")], body: "slow down".bytes)
                : .respond(status: 200, body: "ok".bytes)
        }
        let client = try makeClient()
        let response = try await client.get(HTTPURL(server.url + "/"))
        #expect(response.text == "ok")
        let requests = server.requests
        #expect(requests[1].atSeconds - requests[0].atSeconds >= 0.95)
        await client.shutdown()
        await server.close()
    }

    @Test("a secondary rate limit without hints backs off from a minute, within the bound")
    func secondaryRateLimit() async throws {
        let sleeps = RecordingSleeps()
        let server = try await ScriptedServer { _, index in
            index == 0 ? .respond(status: 403, body: #"{"message":"You have exceeded a secondary rate limit."}"#.bytes)
                : .respond(status: 200, body: "ok".bytes)
        }
        let client = try makeClient(rateLimitWaitSecondsMax: 120, clock: sleeps.clock)
        let response = try await client.get(HTTPURL(server.url + "/"))
        #expect(response.status == 200)
        #expect(sleeps.waits.withLockedValue { $0 } == [60])
        await client.shutdown()
        await server.close()
    }

    @Test("a 403 that is not a rate limit is handed back without retrying")
    func forbiddenIsNotRetried() async throws {
        let server = try await ScriptedServer { _, _ in .respond(status: 403, body: #"{"message":"Resource not accessible"}"#.bytes) }
        let client = try makeClient()
        let response = try await client.get(HTTPURL(server.url + "/"))
        #expect(response.status == 403)
        #expect(server.requests.count == 1)
        await client.shutdown()
        await server.close()
    }

    @Test("503 answers are retried with jittered backoff, bounded")
    func serverErrorsRetried() async throws {
        let sleeps = RecordingSleeps(scale: 1)
        let server = try await ScriptedServer { _, index in index < 2 ? .respond(status: 503) : .respond(status: 200, body: "up".bytes) }
        let client = try makeClient(attemptsMax: 3, clock: sleeps.clock)
        let response = try await client.get(HTTPURL(server.url + "/"))
        #expect(response.text == "up")
        #expect(response.attempts == 3)
        // base 0.05 s, random 0.5: 0.0375 then 0.075.
        let waits = sleeps.waits.withLockedValue { $0 }
        #expect(waits.count == 2)
        #expect(abs(waits[0] - 0.0375) < 1e-9 && abs(waits[1] - 0.075) < 1e-9)

        let failing = try await ScriptedServer { _, _ in .respond(status: 503) }
        let last = try await client.get(HTTPURL(failing.url + "/"))
        #expect(last.status == 503)
        #expect(last.attempts == 3)
        #expect(failing.requests.count == 3)
        await client.shutdown()
        await server.close()
        await failing.close()
    }

    @Test("a server that accepts and never answers times out, each attempt bounded")
    func neverAnswers() async throws {
        let server = try await ScriptedServer { _, _ in .hang }
        let client = try makeClient(attemptsMax: 2, responseTimeoutSeconds: 0.3)
        let started = Date()
        await #expect {
            _ = try await client.get(HTTPURL(server.url + "/v1-release/channels"))
        } throws: { error in
            guard case let .retriesExhausted(_, attempts, last) = error as? HTTPClientError else { return false }
            return attempts == 2 && last.contains("did not answer within 0.3 s")
        }
        // Bounded by the timeouts, not by the suite's time limit (generous: the machine may be loaded).
        #expect(Date().timeIntervalSince(started) < 30)
        #expect(server.requests.count == 2)
        await client.shutdown()
        await server.close()
    }

    @Test("a POST is not retried after the server closed without answering")
    func nonIdempotentNotRetried() async throws {
        let server = try await ScriptedServer { _, _ in .close }
        let client = try makeClient()
        await #expect(throws: HTTPClientError.connectionClosed(url: server.url + "/x")) {
            _ = try await client.send(HTTPRequest(method: .POST, url: HTTPURL(server.url + "/x"), body: "{}".bytes))
        }
        #expect(server.requests.count == 1)
        await client.shutdown()
        await server.close()
    }

    @Test("a connection refused is reported with the origin")
    func connectionRefused() async throws {
        let server = try await ScriptedServer { _, _ in .hang }
        let port = server.port
        await server.close()
        let client = try makeClient(attemptsMax: 1)
        await #expect {
            _ = try await client.get(HTTPURL("http://127.0.0.1:\(port)/"))
        } throws: { error in
            guard case let .connectFailed(origin, reason) = error as? HTTPClientError else { return false }
            return origin == "http://127.0.0.1:\(port)" && reason == "connection refused"
        }
        await client.shutdown()
    }

    @Test("an answer larger than the bound is refused")
    func responseTooLarge() async throws {
        let server = try await ScriptedServer { _, _ in .respond(status: 200, body: [UInt8](repeating: 65, count: 4096)) }
        let client = try makeClient(responseBytesMax: 1024)
        await #expect(throws: HTTPClientError.responseTooLarge(url: server.url + "/big", bytesMax: 1024)) {
            _ = try await client.get(HTTPURL(server.url + "/big"))
        }
        await client.shutdown()
        await server.close()
    }

    @Test("chunked answers (as GitHub sends them) are read whole and bounded like any other")
    func chunked() async throws {
        // Larger than the server's 64 KiB writes, so the answer comes in several chunks.
        let body = [UInt8]((0..<150_000).map { UInt8(truncatingIfNeeded: $0 % 26 + 65) })
        let server = try await ScriptedServer { _, _ in .respond(status: 200, headers: [("Transfer-Encoding", "chunked")], body: body) }
        let client = try makeClient(responseBytesMax: 160_000)
        #expect(try await client.get(HTTPURL(server.url + "/")).body == body)
        #expect(try await client.get(HTTPURL(server.url + "/")).body == body)
        #expect(server.connections == 1)
        let small = try makeClient(responseBytesMax: 140_000)
        await #expect(throws: HTTPClientError.responseTooLarge(url: server.url + "/", bytesMax: 140_000)) {
            _ = try await small.get(HTTPURL(server.url + "/"))
        }
        await client.shutdown()
        await small.shutdown()
        await server.close()
    }

    @Test("an answer without a length ends with the connection")
    func closeDelimited() async throws {
        let server = try await ScriptedServer { _, _ in
            .respond(status: 200, headers: [("Connection", "close"), ("Transfer-Encoding", "identity")], body: "until the end".bytes)
        }
        let client = try makeClient()
        #expect(try await client.get(HTTPURL(server.url + "/")).text == "until the end")
        await client.shutdown()
        await server.close()
    }

    @Test("a keep-alive connection the server closed while idle is replaced transparently")
    func staleConnectionReplaced() async throws {
        let server = try await ScriptedServer { _, index in
            .respond(status: 200, headers: index == 0 ? [("Connection", "close")] : [], body: "n\(index)".bytes)
        }
        let client = try makeClient(attemptsMax: 1)
        #expect(try await client.get(HTTPURL(server.url + "/")).text == "n0")
        try await Task.sleep(nanoseconds: 100_000_000)
        #expect(try await client.get(HTTPURL(server.url + "/")).text == "n1")
        #expect(server.connections == 2)
        await client.shutdown()
        await server.close()
    }

    @Test("a request's own timeout bounds every attempt and wait, well below the client's bounds")
    func requestTimeout() async throws {
        let server = try await ScriptedServer { _, _ in .hang }
        let client = try makeClient(attemptsMax: 4, responseTimeoutSeconds: 30)
        let started = Date()
        let before = HTTPClient.processLimits.count(.responseTimeout)
        await #expect(throws: HTTPClientError.responseTimeout(url: server.url + "/v3/kv/range", seconds: 0.5)) {
            _ = try await client.send(HTTPRequest(url: HTTPURL(server.url + "/v3/kv/range"), timeoutSeconds: 0.5))
        }
        #expect(Date().timeIntervalSince(started) < 5)
        #expect(client.limits.count(.responseTimeout) == 1)
        #expect(HTTPClient.processLimits.count(.responseTimeout) >= before + 1, "every client of the process adds to one tally")
        await client.shutdown()
        await server.close()
    }

    @Test("waiting for a busy origin's only connection ends at the request's timeout")
    func waitingForAConnectionIsBounded() async throws {
        let server = try await ScriptedServer { _, index in index == 0 ? .hang : .respond(status: 200) }
        let configuration = HTTPClient.Configuration(connectTimeoutSeconds: 2, responseTimeoutSeconds: 30, connectionsPerOriginMax: 1,
                                                     retry: .never)
        let client = try HTTPClient(configuration: configuration)
        let hung = Task { try await client.get(HTTPURL(server.url + "/hung")) }
        while server.requests.isEmpty { try await Task.sleep(nanoseconds: 10_000_000) }
        let started = Date()
        await #expect(throws: HTTPClientError.responseTimeout(url: server.url + "/queued", seconds: 0.3)) {
            _ = try await client.send(HTTPRequest(url: HTTPURL(server.url + "/queued"), timeoutSeconds: 0.3))
        }
        #expect(Date().timeIntervalSince(started) < 5)
        #expect(server.requests.count == 1, "the queued request never reached the server")
        hung.cancel()
        await client.shutdown()
        await server.close()
    }

    @Test("more waiting requests than the bound fail at once, counted")
    func waitingMax() async throws {
        let server = try await ScriptedServer { _, _ in .hang }
        let configuration = HTTPClient.Configuration(responseTimeoutSeconds: 30, connectionsPerOriginMax: 1, waitingMax: 1, retry: .never)
        let client = try HTTPClient(configuration: configuration)
        let first = Task { try await client.get(HTTPURL(server.url + "/1")) }
        while server.requests.isEmpty { try await Task.sleep(nanoseconds: 10_000_000) }
        let second = Task { try await client.get(HTTPURL(server.url + "/2")) }
        try await Task.sleep(nanoseconds: 200_000_000)
        await #expect(throws: HTTPClientError.tooManyWaiting(origin: "http://127.0.0.1:\(server.port)", max: 1)) {
            _ = try await client.get(HTTPURL(server.url + "/3"))
        }
        #expect(client.limits.count(.waiting) == 1)
        #expect(HTTPClient.processLimits.count(.waiting) >= 1, "counted for the process's metrics too")
        first.cancel()
        second.cancel()
        await client.shutdown()
        await server.close()
    }

    @Test("a thread of its own can wait on a request")
    func sendAndWaitFromAThread() async throws {
        let server = try await ScriptedServer { _, _ in .respond(status: 200, body: "waited".bytes) }
        let client = try makeClient()
        let url = try HTTPURL(server.url + "/")
        let answer = NIOLockedValueBox<String?>(nil)
        let thread = Thread {
            let text = (try? client.sendAndWait(HTTPRequest(url: url)))?.text ?? "failed"
            answer.withLockedValue { $0 = text }
        }
        thread.start()
        let end = Date().addingTimeInterval(10)
        while answer.withLockedValue({ $0 }) == nil, Date() < end { try await Task.sleep(nanoseconds: 10_000_000) }
        #expect(answer.withLockedValue { $0 } == "waited")
        await client.shutdown()
        await server.close()
    }
}
