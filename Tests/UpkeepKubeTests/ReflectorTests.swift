import Foundation
import NIOConcurrencyHelpers
import Testing
import UpkeepHTTP
import UpkeepHTTPServer
import UpkeepKube
import UpkeepSandbox

/// The watch client and the reflector against the simulated API's watches, over real sockets:
/// a change arrives as an event, a watch that ends resumes from the last resourceVersion, and a
/// 410 Gone lists again.
@Suite(.timeLimit(.minutes(2)))
struct ReflectorTests {
    final class Served: Sendable {
        let cluster: SandboxCluster
        let server: HTTPServer
        let client: KubeClient

        init(watchBounds: WatchCache.Bounds = WatchCache.Bounds()) async throws {
            let spec = ClusterSpec(servers: 1, agents: 2, volumes: 1, replicas: 2)
            let clock = ManualClock(1_800_000_000)
            cluster = SandboxCluster(model: ClusterModel(spec: spec, now: clock.now), clock: { clock.now }, watchBounds: watchBounds)
            server = try await HTTPServer.start(host: "127.0.0.1", port: 0, responder: .nonBlocking(cluster.handle))
            client = try KubeClient(endpoint: KubeEndpoint(server: try #require(KubeEndpoint.ServerURL("http://127.0.0.1:\(server.port)"))))
        }

        func cordon(_ node: String, _ value: Bool) {
            let body: JSON = ["spec": ["unschedulable": .bool(value)]]
            let answer = cluster.handle(APIRequest(method: "PATCH", uri: "/api/v1/nodes/\(node)", contentType: "application/merge-patch+json",
                                                   body: body.serialized()))
            #expect(answer.status == 200)
        }

        func close() async {
            await client.shutdown()
            await server.close()
        }
    }

    /// What a reflector told its owner, and the node copy it keeps from that.
    final class Seen: Sendable {
        let updates = NIOLockedValueBox<[Reflector.Update]>([])
        let nodes = NIOLockedValueBox<[String: JSON]>([:])

        func handle(_ update: Reflector.Update) {
            updates.withLockedValue { $0.append(update) }
            nodes.withLockedValue { nodes in
                switch update {
                case .listed(let items, _):
                    nodes = Dictionary(items.map { ($0[path: "metadata", "name"]?.string ?? "", $0) }, uniquingKeysWith: { $1 })
                case .changed(let event):
                    let name = event.object[path: "metadata", "name"]?.string ?? ""
                    nodes[name] = event.kind == .deleted ? nil : event.object
                }
            }
        }

        func unschedulable(_ node: String) -> Bool? { nodes.withLockedValue { $0[node]?[path: "spec", "unschedulable"]?.bool } }
        var lists: Int { updates.withLockedValue { $0.filter { if case .listed = $0 { true } else { false } }.count } }
    }

    static func waitUntil(seconds: Double = 30, _ condition: () -> Bool) async -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
        return condition()
    }

    @Test func watchStreamsChangesAfterTheResourceVersionAndEndsAtTheServersTimeout() async throws {
        let served = try await Served()
        defer { Task { await served.close() } }
        let listed = try await served.client.listWithVersion(.nodes)
        #expect(listed.items.count == 3 && !listed.resourceVersion.isEmpty)
        served.cordon("agent-2", true)
        var seen: [KubeWatchEvent] = []
        for try await event in try await served.client.watch(.nodes, resourceVersion: listed.resourceVersion,
                                                             bounds: KubeWatchBounds(timeoutSeconds: 1)) {
            seen.append(event)
        }
        // The cordon, then the model's taint for it: each a MODIFIED of agent-2, newer than the list.
        #expect(!seen.isEmpty && seen.allSatisfy { $0.kind == .modified && $0.object[path: "metadata", "name"]?.string == "agent-2" }, "\(seen)")
        #expect(seen.allSatisfy { Int64($0.resourceVersion ?? "") ?? 0 > Int64(listed.resourceVersion) ?? 0 })
        #expect(seen.last?.object[path: "spec", "unschedulable"]?.bool == true)
    }

    @Test func aWatchFromAnExpiredVersionThrows410() async throws {
        let served = try await Served(watchBounds: WatchCache.Bounds(eventsMax: 1))
        defer { Task { await served.close() } }
        let listed = try await served.client.listWithVersion(.nodes)
        for round in 0..<3 { served.cordon("agent-1", round % 2 == 0) }
        var kinds: [KubeWatchEvent.Kind] = []
        for try await event in try await served.client.watch(.nodes, resourceVersion: listed.resourceVersion,
                                                             bounds: KubeWatchBounds(timeoutSeconds: 5)) {
            kinds.append(event.kind)
            #expect(event.object["code"]?.int == 410)
        }
        #expect(kinds == [.error])
    }

    @Test func theReflectorFollowsResumesAfterTheWatchEndsAndListsAgainAfterGone() async throws {
        let served = try await Served()
        defer { Task { await served.close() } }
        let reflector = Reflector(client: served.client, type: .nodes,
                                  bounds: Reflector.Bounds(watch: KubeWatchBounds(timeoutSeconds: 1), backoffSecondsMin: 0.05))
        let seen = Seen()
        let running = Task { await reflector.run { seen.handle($0) } }
        defer { running.cancel() }
        #expect(await Self.waitUntil { seen.lists == 1 && served.cluster.watches.counts.open == 1 })
        #expect(seen.unschedulable("agent-1") == nil)

        served.cordon("agent-1", true)
        #expect(await Self.waitUntil { seen.unschedulable("agent-1") == true }, "the cordon arrived by watch")
        #expect(seen.lists == 1, "no list was needed for it")

        // The server ends each watch after a second; the reflector resumes where it was and
        // misses nothing.
        #expect(await Self.waitUntil { reflector.counts.resumes >= 2 && served.cluster.watches.counts.open == 1 })
        served.cordon("agent-2", true)
        #expect(await Self.waitUntil { seen.unschedulable("agent-2") == true })
        #expect(seen.lists == 1 && reflector.counts.expired == 0)

        // Forced 410: the API's window is gone (as after a datastore restore); the reflector lists again.
        served.cordon("agent-1", false)
        served.cluster.watches.reset(revision: served.cluster.withModel { $0.store.revision })
        #expect(await Self.waitUntil { reflector.counts.expired >= 1 && seen.lists >= 2 }, "\(reflector.counts)")
        #expect(await Self.waitUntil { seen.unschedulable("agent-1") == false })
        served.cordon("server-1", true)
        #expect(await Self.waitUntil { seen.unschedulable("server-1") == true }, "it watches again after the list")
    }

    @Test func theReflectorBacksOffWhileTheServerIsGoneAndCountsIt() async throws {
        let served = try await Served()
        let port = served.server.port
        await served.close()
        let client = try KubeClient(endpoint: KubeEndpoint(server: try #require(KubeEndpoint.ServerURL("http://127.0.0.1:\(port)"))))
        defer { Task { await client.shutdown() } }
        let reflector = Reflector(client: client, type: .nodes, bounds: Reflector.Bounds(backoffSecondsMin: 0.05, backoffSecondsMax: 0.2))
        let running = Task { await reflector.run { _ in } }
        #expect(await Self.waitUntil { reflector.counts.failures >= 3 })
        #expect(reflector.limits.count(.failed) == reflector.counts.failures)
        running.cancel()
        await running.value
    }

    @Test func aDroppedConnectionMidWatchResumesFromTheLastVersionWithoutAList() async throws {
        let served = try await Served()
        let port = served.server.port
        let reflector = Reflector(client: served.client, type: .nodes,
                                  bounds: Reflector.Bounds(watch: KubeWatchBounds(timeoutSeconds: 60), backoffSecondsMin: 0.05, backoffSecondsMax: 0.2))
        let seen = Seen()
        let running = Task { await reflector.run { seen.handle($0) } }
        #expect(await Self.waitUntil { seen.lists == 1 && served.cluster.watches.counts.open == 1 })
        served.cordon("agent-1", true)
        #expect(await Self.waitUntil { seen.unschedulable("agent-1") == true })

        // The API goes away mid-watch (every connection closed), a change happens meanwhile, and
        // the API comes back on the same port with the same datastore.
        await served.server.close()
        #expect(await Self.waitUntil { reflector.counts.failures >= 1 }, "\(reflector.counts)")
        served.cordon("agent-2", true)
        let again = try await HTTPServer.start(host: "127.0.0.1", port: port, responder: .nonBlocking(served.cluster.handle))
        #expect(await Self.waitUntil { seen.unschedulable("agent-2") == true }, "the change made while it was away arrived")
        #expect(seen.lists == 1 && reflector.counts.expired == 0, "resumed from the last resourceVersion, not listed again: \(reflector.counts)")
        running.cancel()
        await running.value
        await served.client.shutdown()
        await again.close()
    }

    @Test func aResourceTheAPIDoesNotServeIsNothingToWatchNotAFailure() async throws {
        let served = try await Served()
        defer { Task { await served.close() } }
        let absent = ResourceType(group: "example.invalid", version: "v1", plural: "widgets", kind: "Widget", namespaced: true)
        let reflector = Reflector(client: served.client, type: absent, namespace: "default",
                                  bounds: Reflector.Bounds(backoffSecondsMin: 0.01, backoffSecondsMax: 0.1))
        let seen = Seen()
        let running = Task { await reflector.run { seen.handle($0) } }
        #expect(await Self.waitUntil { reflector.counts.notServed >= 3 }, "\(reflector.counts)")
        running.cancel()
        await running.value
        #expect(seen.updates.withLockedValue { $0 } == [.listed([], resourceVersion: "")], "told once that there are none")
        #expect(reflector.counts.failures == 0 && reflector.counts.watches == 0)
        #expect(reflector.limits.count(.notServed) == reflector.counts.notServed)
    }
}
