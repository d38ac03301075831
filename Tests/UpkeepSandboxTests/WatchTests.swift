import Foundation
import NIOCore
import NIOPosix
import Testing
import UpkeepHTTP
import UpkeepHTTPServer
import UpkeepKube
import UpkeepProcess
import UpkeepTestSupport
import UpkeepCore
@testable import UpkeepSandbox

/// The simulated API serves Kubernetes watches: the real kubectl follows one, and the stream
/// resumes, expires and is bounded as the apiserver's does.
@Suite(.timeLimit(.minutes(2)))
struct WatchTests {
    static let small = ClusterSpec(servers: 1, agents: 2, volumes: 1, replicas: 2)

    /// A watch's answer whole: with `timeoutSeconds` the server ends it, so the client reads
    /// every line it sent.
    static func watchLines(_ api: APIHarness, _ path: String, _ query: [(String, String)]) async throws -> (status: Int, lines: [JSON]) {
        let client = HTTPClient(configuration: HTTPClient.Configuration(retry: .never), tls: nil)
        defer { Task { await client.shutdown() } }
        let reply = try await client.get(try HTTPURL(api.baseURL + path).appending(query: [("watch", "true")] + query))
        let lines = reply.body.split(separator: UInt8(ascii: "\n")).compactMap { try? JSON.parse(bytes: Array($0)) }
        return (reply.status, lines)
    }

    static func cordon(_ api: APIHarness, _ node: String, _ value: Bool) {
        let response = api.cluster.handle(APIRequest(method: "PATCH", uri: "/api/v1/nodes/\(node)", contentType: "application/merge-patch+json",
                                                     body: (["spec": ["unschedulable": .bool(value)]] as JSON).serialized()))
        #expect(response.status == 200, "\(String(decoding: response.body, as: UTF8.self))")
    }

    static func listVersion(_ api: APIHarness) throws -> String {
        try listVersion(api.cluster)
    }

    @Test func kubectlGetNodesWatchShowsACordonAsItHappens() async throws {
        let api = try await APIHarness(spec: Self.small, watchBounds: WatchCache.Bounds(timeoutSecondsMax: 8))
        defer { Task { await api.close() } }
        #expect(await api.waitUntil { api.cluster.withModel { $0.summary()["ready"] == true } })
        let watching = Task { try await api.kubectl("get", "nodes", "-w", "--output-watch-events") }
        #expect(await api.waitUntil(timeoutSeconds: 60) { api.cluster.watches.counts.open >= 1 }, "kubectl opened a watch")
        Self.cordon(api, "agent-1", true)
        let result = try await watching.value
        // kubectl prints the list first (ADDED rows), then each change as it comes; the server
        // ends the watch at its bound and kubectl returns.
        let lines = result.output.split(separator: "\n").map(String.init)
        #expect(lines.contains { $0.hasPrefix("ADDED") && $0.contains("server-1") }, "\(result.output)")
        #expect(lines.contains { $0.hasPrefix("MODIFIED") && $0.contains("agent-1") && $0.contains("SchedulingDisabled") },
                "the cordon arrived through the watch: \(result.output)")
    }

    @Test func aWatchResumesAfterTheListsResourceVersionAndSeesSelectorTransitions() async throws {
        let api = try await APIHarness(spec: Self.small)
        defer { Task { await api.close() } }
        let listed = try Self.listVersion(api)
        Self.cordon(api, "agent-1", true)
        Self.cordon(api, "agent-2", true)
        let all = try await Self.watchLines(api, "/api/v1/nodes", [("resourceVersion", listed), ("timeoutSeconds", "1")])
        #expect(all.status == 200)
        let modified = all.lines.filter { $0["type"]?.string == "MODIFIED" && $0[path: "object", "spec", "unschedulable"]?.bool == true }
            .compactMap { $0[path: "object", "metadata", "name"]?.string }
        #expect(Set(modified) == ["agent-1", "agent-2"], "\(all.lines)")
        let versions = all.lines.compactMap { $0[path: "object", "metadata", "resourceVersion"]?.string.flatMap { Int64($0) } }
        #expect(versions == versions.sorted() && versions.allSatisfy { $0 > Int64(listed)! }, "only what came after the list, in order")

        // A field selector: agent-1 leaves it when uncordoned (DELETED for this watch).
        let before = try Self.listVersion(api)
        Self.cordon(api, "agent-1", false)
        let filtered = try await Self.watchLines(api, "/api/v1/nodes", [("resourceVersion", before), ("timeoutSeconds", "1"),
                                                                         ("fieldSelector", "spec.unschedulable=true")])
        #expect(filtered.lines.contains { $0["type"]?.string == "DELETED" && $0[path: "object", "metadata", "name"]?.string == "agent-1" },
                "\(filtered.lines)")

        // Without a resourceVersion: every object first, as ADDED.
        let fresh = try await Self.watchLines(api, "/api/v1/nodes", [("timeoutSeconds", "1")])
        #expect(fresh.lines.filter { $0["type"]?.string == "ADDED" }.count == 3, "\(fresh.lines)")
    }

    @Test func aResourceVersionOlderThanTheWindowIsGone410() async throws {
        let api = try await APIHarness(spec: Self.small, watchBounds: WatchCache.Bounds(eventsMax: 2))
        defer { Task { await api.close() } }
        let old = try Self.listVersion(api)
        for round in 0..<4 {
            Self.cordon(api, "agent-1", round % 2 == 0)
            Self.cordon(api, "agent-2", round % 2 == 0)
        }
        let answer = try await Self.watchLines(api, "/api/v1/nodes", [("resourceVersion", old), ("timeoutSeconds", "5")])
        #expect(answer.status == 200)
        #expect(answer.lines.count == 1, "one ERROR event, then the end: \(answer.lines)")
        let error = try #require(answer.lines.first)
        #expect(error["type"]?.string == "ERROR")
        #expect(error[path: "object", "code"]?.int == 410 && error[path: "object", "reason"]?.string == "Expired", "\(error)")
        #expect(api.cluster.watches.counts.expired == 1)
    }

    @Test func watchesBeyondTheBoundAreRefused429AndCounted() async throws {
        let api = try await APIHarness(spec: Self.small, watchBounds: WatchCache.Bounds(watchesMax: 1))
        defer { Task { await api.close() } }
        let first = Task { try await Self.watchLines(api, "/api/v1/nodes", [("timeoutSeconds", "20")]) }
        #expect(await api.waitUntil(timeoutSeconds: 30) { api.cluster.watches.counts.open == 1 })
        let second = try await Self.watchLines(api, "/api/v1/pods", [("timeoutSeconds", "1")])
        #expect(second.status == 429, "\(second.lines)")
        #expect(api.cluster.watches.counts.refused == 1)
        let summary = try await api.kubectl("get", "--raw", "/sandbox/v1/watches")
        #expect(summary.output.contains("\"refused\":1"), "\(summary.output)")
        first.cancel()
        _ = try? await first.value
        #expect(await api.waitUntil(timeoutSeconds: 30) { api.cluster.watches.counts.open == 0 }, "a closed watch frees its place")
    }

    @Test func bookmarksCarryTheCurrentResourceVersion() async throws {
        let api = try await APIHarness(spec: Self.small, watchBounds: WatchCache.Bounds(bookmarkIntervalSeconds: 0.2))
        defer { Task { await api.close() } }
        let listed = try Self.listVersion(api)
        Self.cordon(api, "agent-1", true)
        let answer = try await Self.watchLines(api, "/api/v1/nodes", [("resourceVersion", listed), ("timeoutSeconds", "2"),
                                                                       ("allowWatchBookmarks", "true")])
        let bookmark = try #require(answer.lines.first { $0["type"]?.string == "BOOKMARK" }, "\(answer.lines)")
        #expect(bookmark[path: "object", "kind"]?.string == "Node")
        let version = try #require(bookmark[path: "object", "metadata", "resourceVersion"]?.string.flatMap { Int64($0) })
        #expect(version > Int64(listed)!)
    }

    /// A watcher that stops reading is cut at the server's outbound bound, counted, and its
    /// place among the watches is freed; the API goes on serving.
    @Test func aWatcherThatStopsReadingIsCutAndCounted() async throws {
        let spec = ClusterSpec(servers: 1, agents: 2, volumes: 0)
        let cluster = SandboxCluster(spec: spec)
        let bounds = OutboundBounds(highWaterMarkBytes: 16 << 10, lowWaterMarkBytes: 4 << 10, pendingBytesMax: 256 << 10, drainTimeout: .seconds(1))
        let server = try await HTTPServer.start(host: "127.0.0.1", port: 0, configuration: HTTPServer.Configuration(outbound: bounds),
                                                responder: .nonBlocking(cluster.handle))
        defer { Task { await server.close() } }
        let peer = try await RawPeer(port: server.port, receiveBufferBytes: 16 << 10)
        defer { Task { await peer.close() } }
        try await peer.send("GET /api/v1/nodes?watch=true&resourceVersion=\(try Self.listVersion(cluster)) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        let deadline = Date().addingTimeInterval(30)
        while cluster.watches.counts.open == 0, Date() < deadline { try await Task.sleep(nanoseconds: 20_000_000) }
        #expect(cluster.watches.counts.open == 1)
        try await peer.pauseReading()
        // Events of 64 KiB each, far more than the socket buffers and the outbound bound hold.
        let padding = String(repeating: "x", count: 64 << 10)
        for round in 0..<300 where server.limits.count(.outboundBytes) + server.limits.count(.drainTimeout) == 0 {
            let body: JSON = ["metadata": ["annotations": ["padding": .string("\(round)\(padding)")]]]
            _ = cluster.handle(APIRequest(method: "PATCH", uri: "/api/v1/nodes/agent-1", contentType: "application/merge-patch+json",
                                          body: body.serialized()))
            if round % 20 == 19 { try await Task.sleep(nanoseconds: 10_000_000) }
        }
        while server.limits.count(.outboundBytes) + server.limits.count(.drainTimeout) == 0, Date() < deadline {
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        #expect(server.limits.count(.outboundBytes) + server.limits.count(.drainTimeout) == 1, "\(server.limits.counts)")
        while cluster.watches.counts.open > 0, Date() < deadline { try await Task.sleep(nanoseconds: 20_000_000) }
        #expect(cluster.watches.counts.open == 0, "the cut watch left the cache")
        let list = cluster.handle(APIRequest(method: "GET", uri: "/api/v1/nodes"))
        #expect(list.status == 200)
    }

    static func listVersion(_ cluster: SandboxCluster) throws -> String {
        let list = cluster.handle(APIRequest(method: "GET", uri: "/api/v1/nodes"))
        return try #require(try JSON.parse(bytes: list.body)[path: "metadata", "resourceVersion"]?.string)
    }
}
