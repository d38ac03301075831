import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import Testing
import UpkeepHTTP
import UpkeepHTTPServer
import UpkeepTestSupport

/// The one server's bounds, each reached by a real peer on a real socket.
@Suite("HTTP server bounds over real sockets", .timeLimit(.minutes(2)))
struct HTTPServerTests {
    /// A server answering `200 <path>` on the event loop, counting the requests it saw.
    final class Served: Sendable {
        let server: HTTPServer
        let seen = NIOLockedValueBox<[HTTPServerRequest]>([])

        init(_ configuration: HTTPServer.Configuration) async throws {
            let seen = seen
            server = try await HTTPServer.start(host: "127.0.0.1", port: 0, configuration: configuration, responder: .nonBlocking { request in
                seen.withLockedValue { $0.append(request) }
                return .text("answer for \(request.path)\n")
            })
        }

        var requests: [HTTPServerRequest] { seen.withLockedValue { $0 } }
        func peer() async throws -> RawPeer { try await RawPeer(port: server.port) }
    }

    static func seconds(since start: UInt64, _ end: UInt64?) -> Double {
        // Signed: a peer closed before `start` was read gives a negative figure, not an overflow trap.
        Double(Int64(bitPattern: (end ?? NIODeadline.now().uptimeNanoseconds) &- start)) / 1e9
    }

    @Test("a head sent one byte at a time is cut at the header read deadline, though bytes keep coming")
    func slowHeadIsCut() async throws {
        let served = try await Served(HTTPServer.Configuration(headerReadTimeoutSeconds: 1, requestTimeoutSeconds: 30, idleTimeoutSeconds: 30))
        let peer = try await served.peer()
        let request = "GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: \(String(repeating: "a", count: 40))\r\n\r\n"
        let started = NIODeadline.now().uptimeNanoseconds
        // 80 bytes 100 ms apart would take 8 s: only a bound counted from the first byte ends it sooner.
        for character in request where !peer.isClosed {
            try? await peer.send(String(character))
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        #expect(try await peer.waitClosed(within: 25))
        let elapsed = Self.seconds(since: started, peer.closedAtNanoseconds)
        #expect(elapsed >= 0.9 && elapsed < 7, "closed after \(elapsed) s (the whole head takes 8 s)")
        #expect(peer.received.isEmpty, "no answer to an incomplete head: \(peer.received)")
        #expect(served.requests.isEmpty)
        #expect(served.server.limits.count(.headerReadTimeout) == 1)
        #expect(served.server.limits.count(.idleTimeout) == 0)
        await served.server.close()
    }

    @Test("Connection: close closes the socket right after the answer; keep-alive keeps it")
    func connectionCloseIsHonoured() async throws {
        let served = try await Served(HTTPServer.Configuration(idleTimeoutSeconds: 30))
        let closing = try await served.peer()
        let sent = NIODeadline.now().uptimeNanoseconds
        try await closing.send("GET /once HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        #expect(try await closing.waitClosed(within: 20))
        #expect(Self.seconds(since: sent, closing.closedAtNanoseconds) < 20, "the idle bound (30 s) did not close it")
        #expect(closing.received.hasPrefix("HTTP/1.1 200 OK\r\n") && closing.received.lowercased().contains("connection: close\r\n"))
        #expect(closing.received.hasSuffix("answer for /once\n"))

        let kept = try await served.peer()
        try await kept.send("GET /first HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        #expect(try await kept.waitFor("answer for /first\n"))
        try await Task.sleep(nanoseconds: 500_000_000)
        #expect(!kept.isClosed)
        try await kept.send("GET /second HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        #expect(try await kept.waitFor("answer for /second\n"))
        let connections = served.requests.map(\.connection)
        #expect(connections.count == 3 && connections[1] == connections[2] && connections[0] != connections[1])
        await kept.close()
        await served.server.close()
    }

    @Test("beyond the places only the reserve answers, only the health path, and closes; other requests get 503 and close")
    func connectionCap() async throws {
        let served = try await Served(HTTPServer.Configuration(idleTimeoutSeconds: 30, connectionsMax: 2, reservedConnections: 1,
                                                               reservedPaths: ["/healthz"]))
        var held: [RawPeer] = []
        for index in 0..<2 {
            let peer = try await served.peer()
            try await peer.send("GET /work\(index) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            #expect(try await peer.waitFor("answer for /work\(index)\n"))
            held.append(peer)
        }
        #expect(served.server.placedConnections == 2)

        let refused = try await served.peer()
        try await refused.send("GET /work HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        #expect(try await refused.waitClosed(within: 20), "closed right after its answer, not at the idle bound (30 s)")
        #expect(refused.received.hasPrefix("HTTP/1.1 503 Service Unavailable\r\n"), "\(refused.received)")
        #expect(refused.received.lowercased().contains("connection: close\r\n"))
        #expect(served.server.limits.count(.connections) == 1)

        let reserve = try await served.peer()
        try await reserve.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        #expect(try await reserve.waitFor("answer for /healthz\n"), "the health check answers on the reserve")
        #expect(try await reserve.waitClosed(within: 20), "a reserve place serves one request")
        #expect(reserve.received.lowercased().contains("connection: close\r\n"))
        #expect(!served.requests.contains { $0.path == "/work" })

        await held[0].close()
        try await Task.sleep(nanoseconds: 200_000_000)
        let later = try await served.peer()
        try await later.send("GET /again HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        #expect(try await later.waitFor("answer for /again\n"), "a freed place serves anything again")
        for peer in held + [later] { await peer.close() }
        await served.server.close()
    }

    @Test("/healthz answers while more slow clients than places and reserve hold connections; the oldest of them are closed")
    func healthAnswersThroughSlowClients() async throws {
        let served = try await Served(HTTPServer.Configuration(headerReadTimeoutSeconds: 30, requestTimeoutSeconds: 30, idleTimeoutSeconds: 30,
                                                               connectionsMax: 2, reservedConnections: 1, reservedPaths: ["/healthz"],
                                                               awaitingRequestMax: 8, awaitingRequestPerSourceMax: 8))
        var held: [RawPeer] = []
        for index in 0..<2 {  // every place taken by keep-alive clients
            let peer = try await served.peer()
            try await peer.send("GET /work\(index) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            #expect(try await peer.waitFor("answer for /work\(index)\n"))
            held.append(peer)
        }
        var slow: [RawPeer] = []
        for _ in 0..<20 {
            let peer = try await served.peer()
            try await peer.send("GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")  // one header byte at a time, never the end
            slow.append(peer)
            // "Oldest" is the server's accept order; children are set up on either event loop, so
            // the next peer connects only once this one is counted, or the order could differ.
            let accepted = 2 + slow.count
            let counted = NIODeadline.now() + .seconds(20)
            while served.server.acceptedConnections < accepted, NIODeadline.now() < counted { try await Task.sleep(nanoseconds: 2_000_000) }
            #expect(served.server.acceptedConnections == accepted)
        }
        let health = try await served.peer()
        let asked = NIODeadline.now().uptimeNanoseconds
        try await health.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        // Bounds well under the slow clients' 30 s header bound, generous for a loaded machine.
        #expect(try await health.waitFor("answer for /healthz\n", within: 20))
        #expect(Self.seconds(since: asked, nil) < 20, "answered before the slow clients' header bound (30 s) could free a place")
        #expect(try await health.waitClosed(within: 20), "answered on the reserve, then closed")
        for peer in slow.prefix(13) { #expect(try await peer.waitClosed(within: 20), "the oldest slow clients make room") }
        #expect(slow.suffix(7).allSatisfy { !$0.isClosed }, "the newest stay, within awaitingRequestMax")
        let displaced = served.server.limits.count(.awaitingRequest) + served.server.limits.count(.awaitingRequestPerSource)
        #expect(displaced == 13, "20 slow clients and a health check through 8 places awaiting a request")
        #expect(served.server.placedConnections == 2)
        for peer in held + slow + [health] { await peer.close() }
        await served.server.close()
    }

    @Test("a head beyond headerBytesMax is answered 431 and closed; one within it is served")
    func headerBytesBound() async throws {
        let served = try await Served(HTTPServer.Configuration(headerBytesMax: 1024))
        let small = try await served.peer()
        try await small.send("GET /small HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: \(String(repeating: "a", count: 900))\r\n\r\n")
        #expect(try await small.waitFor("answer for /small\n"))
        let large = try await served.peer()
        try await large.send("GET /large HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: \(String(repeating: "a", count: 4000))\r\n\r\n")
        #expect(try await large.waitClosed(within: 20))
        #expect(large.received.hasPrefix("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "\(large.received)")
        #expect(served.requests.map(\.path) == ["/small"])
        #expect(served.server.limits.count(.headerBytes) == 1)
        await small.close()
        await served.server.close()
    }

    @Test("a body beyond bodyBytesMax is answered 413 and closed, announced or chunked; one at the bound is read whole")
    func bodyBytesBound() async throws {
        let served = try await Served(HTTPServer.Configuration(bodyBytesMax: 1000))
        let exact = try await served.peer()
        try await exact.send("POST /exact HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n" + String(repeating: "b", count: 1000))
        #expect(try await exact.waitFor("answer for /exact\n"))
        #expect(served.requests.first?.body.count == 1000)

        let announced = try await served.peer()
        try await announced.send("POST /announced HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5000\r\n\r\n")
        #expect(try await announced.waitClosed(within: 20), "refused on the head, before any of the body")
        #expect(announced.received.hasPrefix("HTTP/1.1 413 Payload Too Large\r\n"), "\(announced.received)")

        let chunked = try await served.peer()
        let chunk = "258\r\n" + String(repeating: "c", count: 600) + "\r\n"
        try await chunked.send("POST /chunked HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk + chunk)
        #expect(try await chunked.waitClosed(within: 20))
        #expect(chunked.received.hasPrefix("HTTP/1.1 413 Payload Too Large\r\n"), "\(chunked.received)")
        #expect(served.requests.map(\.path) == ["/exact"])
        #expect(served.server.limits.count(.bodyBytes) == 2)
        await exact.close()
        await served.server.close()
    }

    @Test("a body that stops arriving is answered 408 at the request deadline")
    func slowBodyIsCut() async throws {
        let served = try await Served(HTTPServer.Configuration(headerReadTimeoutSeconds: 1, requestTimeoutSeconds: 1, idleTimeoutSeconds: 30))
        let peer = try await served.peer()
        let sent = NIODeadline.now().uptimeNanoseconds
        try await peer.send("POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\nabc")
        #expect(try await peer.waitClosed(within: 25))
        let elapsed = Self.seconds(since: sent, peer.closedAtNanoseconds)
        #expect(elapsed >= 0.9 && elapsed < 20, "closed after \(elapsed) s")
        #expect(peer.received.hasPrefix("HTTP/1.1 408 Request Timeout\r\n"), "\(peer.received)")
        #expect(served.server.limits.count(.requestTimeout) == 1)
        await served.server.close()
    }

    @Test("a blocking responder slower than the request bound gets its request answered 503")
    func slowResponderIsCut() async throws {
        let server = try await HTTPServer.start(host: "127.0.0.1", port: 0, configuration: HTTPServer.Configuration(requestTimeoutSeconds: 0.5),
                                                responder: .blocking { _ in
                                                    usleep(2_000_000)
                                                    return .text("too late\n")
                                                })
        let peer = try await RawPeer(port: server.port)
        try await peer.send("GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        #expect(try await peer.waitClosed(within: 25))
        #expect(peer.received.hasPrefix("HTTP/1.1 503 Service Unavailable\r\n"), "\(peer.received)")
        #expect(!peer.received.contains("too late"))
        #expect(server.limits.count(.requestTimeout) == 1)
        await server.close()
    }

    @Test("a new connection that sends nothing is closed at the header read deadline, not the idle one")
    func silentConnectionIsCut() async throws {
        let served = try await Served(HTTPServer.Configuration(headerReadTimeoutSeconds: 0.5, idleTimeoutSeconds: 30))
        let peer = try await served.peer()
        let opened = NIODeadline.now().uptimeNanoseconds
        #expect(try await peer.waitClosed(within: 25))
        let elapsed = Self.seconds(since: opened, peer.closedAtNanoseconds)
        #expect(elapsed >= 0.4 && elapsed < 20, "closed after \(elapsed) s")
        #expect(peer.received.isEmpty)
        #expect(served.server.limits.count(.headerReadTimeout) == 1 && served.server.limits.count(.idleTimeout) == 0)
        await served.server.close()
    }

    @Test("a keep-alive connection without a next request is closed quietly at the idle deadline")
    func idleIsClosed() async throws {
        let served = try await Served(HTTPServer.Configuration(idleTimeoutSeconds: 0.5))
        let peer = try await served.peer()
        try await peer.send("GET /once HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        #expect(try await peer.waitFor("answer for /once\n"))
        let answered = NIODeadline.now().uptimeNanoseconds
        #expect(try await peer.waitClosed(within: 25))
        let elapsed = Self.seconds(since: answered, peer.closedAtNanoseconds)
        #expect(elapsed >= 0.3 && elapsed < 20, "closed after \(elapsed) s")
        #expect(served.server.limits.count(.idleTimeout) == 1)
        await served.server.close()
    }

    @Test("a 400 from the responder closes the connection at once, keep-alive asked or not")
    func badRequestCloses() async throws {
        let server = try await HTTPServer.start(host: "127.0.0.1", port: 0, configuration: HTTPServer.Configuration(idleTimeoutSeconds: 30),
                                                responder: .nonBlocking { _ in .text("limit must be 1 to 500\n", status: 400) })
        let peer = try await RawPeer(port: server.port)
        let sent = NIODeadline.now().uptimeNanoseconds
        try await peer.send("GET /v1/rollouts?limit=0 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n")
        #expect(try await peer.waitClosed(within: 20))
        #expect(Self.seconds(since: sent, peer.closedAtNanoseconds) < 20, "the idle bound (30 s) did not close it")
        #expect(peer.received.hasPrefix("HTTP/1.1 400 Bad Request\r\n") && peer.received.lowercased().contains("connection: close\r\n"),
                "\(peer.received)")
        await server.close()
    }

    @Test("a request that is not HTTP/1.1 is answered 400 and closed")
    func malformedRequest() async throws {
        let served = try await Served(HTTPServer.Configuration())
        let peer = try await served.peer()
        try await peer.send("HELLO\r\n\r\n")
        #expect(try await peer.waitClosed(within: 20))
        #expect(peer.received.hasPrefix("HTTP/1.1 400 Bad Request\r\n"), "\(peer.received)")
        #expect(served.requests.isEmpty)
        await served.server.close()
    }

    @Test("a blocking responder may wait on the client for another server's answer")
    func blockingResponderWaitsOnTheClient() async throws {
        let backend = try await Served(HTTPServer.Configuration())
        let client = HTTPClient(configuration: .init(retry: .never), tls: nil)
        let backendURL = try HTTPURL("http://127.0.0.1:\(backend.server.port)/v3/kv/range")
        let front = try await HTTPServer.start(host: "127.0.0.1", port: 0, responder: .blocking { _ in
            do {
                let answer = try client.sendAndWait(HTTPRequest(method: .POST, url: backendURL, body: Array(#"{"key":"Zm9v"}"#.utf8),
                                                                timeoutSeconds: 5))
                return .text("backend said: \(answer.text)")
            } catch {
                return .text("\(error)\n", status: 502)
            }
        })
        let answer = try await client.get(HTTPURL("http://127.0.0.1:\(front.port)/"))
        #expect(answer.text == "backend said: answer for /v3/kv/range\n")
        #expect(backend.requests.first?.body == Array(#"{"key":"Zm9v"}"#.utf8))
        await client.shutdown()
        await front.close()
        await backend.server.close()
    }

    @Test("an async responder answers when it is done, or 503 at the request bound")
    func asyncResponder() async throws {
        let server = try await HTTPServer.start(host: "127.0.0.1", port: 0, configuration: HTTPServer.Configuration(requestTimeoutSeconds: 0.5),
                                                responder: .async { request in
                                                    try? await Task.sleep(nanoseconds: request.path == "/slow" ? 2_000_000_000 : 10_000_000)
                                                    return .text("waited for \(request.path)\n")
                                                })
        let quick = try await RawPeer(port: server.port)
        try await quick.send("GET /quick HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        #expect(try await quick.waitFor("waited for /quick\n"))
        let slow = try await RawPeer(port: server.port)
        try await slow.send("GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        #expect(try await slow.waitClosed(within: 25))
        #expect(slow.received.hasPrefix("HTTP/1.1 503 Service Unavailable\r\n") && !slow.received.contains("waited"), "\(slow.received)")
        await quick.close()
        await server.close()
    }

    /// Writing an answer's end hands the next pipelined request to the handler at once; it used
    /// to arrive while the connection still counted as responding, a precondition failure that
    /// took the whole process down (`upkeep serve`'s responder is async).
    @Test("pipelined requests to an async responder are answered, in order")
    func pipelinedRequestsToAnAsyncResponder() async throws {
        let server = try await HTTPServer.start(host: "127.0.0.1", port: 0, responder: .async { request in
            .text("answer for \(request.path)\n")
        })
        let peer = try await RawPeer(port: server.port)
        try await peer.send((1...5).map { "GET /p\($0) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" }.joined())
        #expect(try await peer.waitFor("answer for /p5\n"), "\(peer.received)")
        let positions = (1...5).compactMap { peer.received.range(of: "answer for /p\($0)\n")?.lowerBound }
        #expect(positions.count == 5 && positions == positions.sorted(), "\(peer.received)")
        await peer.close()
        await server.close()
    }

    @Test("closing the server closes its open connections too")
    func closeClosesConnections() async throws {
        let served = try await Served(HTTPServer.Configuration(idleTimeoutSeconds: 60))
        let peer = try await served.peer()
        try await peer.send("GET /kept HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        #expect(try await peer.waitFor("answer for /kept\n"))
        #expect(!peer.isClosed)
        await served.server.close()
        #expect(try await peer.waitClosed(within: 20))
        // The server counts it closed once the close has run on its side too.
        for _ in 0..<500 where served.server.openConnections > 0 { try await Task.sleep(nanoseconds: 10_000_000) }
        #expect(served.server.openConnections == 0)
    }
}
