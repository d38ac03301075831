import Foundation
import NIOConcurrencyHelpers
import NIOPosix
import Testing
import UpkeepCore
import UpkeepHTTP
import UpkeepHTTPServer
import UpkeepKube
import UpkeepProcess
@testable import UpkeepSandbox
import UpkeepTestSupport

/// The simulated API behind a datastore, in-process against a real fake kine (SQLite, read back
/// with the `sqlite3` tool) on a loopback port, on a clock that moves only when told: it waits
/// for the datastore, seeds it, writes before it changes its view, refuses writes while the
/// datastore is down, and reads everything back when the datastore was restored.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct ClusterStorageTests {
    /// A kine on a fixed port that can be stopped and started again on another `state.db`.
    final class Kine: @unchecked Sendable {
        let directory: TemporaryDirectory
        let port: Int
        private var server: HTTPServer?
        private var store: KineStore?

        init() throws {
            directory = try TemporaryDirectory()
            port = try unusedLoopbackPort()
        }

        var database: String { directory.file("state.db") }
        var endpoint: String { "http://127.0.0.1:\(port)" }

        func start() async throws {
            let store = try KineStore(path: database)
            self.store = store
            server = try await HTTPServer.start(host: "127.0.0.1", port: port, responder: .blocking {
                GatewayService.respond($0, kine: store)
            })
        }

        /// Stops serving and closes the database, as a stopping k3s does.
        func stop() async {
            await server?.close()
            store?.close()
            server = nil
            store = nil
        }

        func sqlite(_ query: String) async throws -> String {
            try await ProcessRun.run("sqlite3", [database, query], timeoutSeconds: 20).output.trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }

    static func configMap(_ name: String) -> APIRequest {
        APIRequest(method: "POST", uri: "/api/v1/namespaces/default/configmaps", contentType: "application/json",
                   body: (["metadata": ["name": .string(name)], "data": ["k": "v"]] as JSON).serialized())
    }

    static func get(_ cluster: SandboxCluster, _ path: String) async -> APIResponse {
        await cluster.respond(APIRequest(method: "GET", uri: path))
    }

    @Test func theAPIWaitsSeedsWritesFirstRefusesWhileDownAndReloadsARestoredDatastore() async throws {
        let kine = try Kine()
        let lines = NIOLockedValueBox<[String]>([])
        let clock = ManualClock(1_800_000_000)
        let storage = ClusterStorage(gateway: EtcdGateway(endpoints: [kine.endpoint], callTimeoutSeconds: 20),
                                     log: ThrottledLog(intervalSeconds: 0, clock: { clock.now }, write: { line in lines.withLockedValue { $0.append(line) } }),
                                     retrySeconds: 0)
        let spec = ClusterSpec(servers: 1, agents: 1, volumes: 1, replicas: 1)
        let cluster = SandboxCluster(model: ClusterModel(spec: spec, now: clock.now), clock: { clock.now }, storage: storage)
        cluster.withModel { $0.virtualKubelets = Set(spec.nodeNames) }

        // No datastore yet: reads and writes wait (503), the model's step is not taken.
        #expect(await Self.get(cluster, "/api/v1/nodes").status == 503)
        #expect(await cluster.respond(Self.configMap("early")).status == 503)
        await cluster.tick()
        #expect(!storage.isSynced && lines.withLockedValue { $0 }.contains { $0.contains("datastore") && $0.contains("unreachable") })

        // The datastore comes: the first write seeds it with the cluster, each object a kine row
        // whose id is the object's resourceVersion.
        try await kine.start()
        clock.advance(by: 1)
        await cluster.tick()
        #expect(storage.isSynced && storage.stats.seeds == 1)
        let objects = cluster.withModel { $0.store.objectCount }
        #expect(Int(try await kine.sqlite("SELECT COUNT(DISTINCT name) FROM kine WHERE name LIKE '/registry/%'")) ?? 0 == objects)
        let node = try JSON.parse(bytes: await Self.get(cluster, "/api/v1/nodes/server-1").body)
        let nodeRow = try await kine.sqlite("SELECT MAX(id) FROM kine WHERE name = '/registry/minions/server-1'")
        #expect(node[path: "metadata", "resourceVersion"]?.string == nodeRow, "\(nodeRow)")

        let created = await cluster.respond(Self.configMap("before"))
        #expect(created.status == 201)
        let before = try JSON.parse(bytes: created.body)
        let beforeRow = try await kine.sqlite("SELECT id FROM kine WHERE name = '/registry/configmaps/default/before'")
        #expect(before[path: "metadata", "resourceVersion"]?.string == beforeRow, "the answer carries the datastore's revision")
        #expect(try await kine.sqlite("SELECT value FROM kine WHERE name = '/registry/configmaps/default/before'").contains("\"data\":{\"k\":\"v\"}"))

        // The backup of a SQLite datastore, taken while kine is stopped; then one more object.
        await kine.stop()
        try FileManager.default.copyItem(atPath: kine.database, toPath: kine.directory.file("backup.db"))
        #expect(await cluster.respond(Self.configMap("while-down")).status == 503, "no datastore, no write")
        // The apiserver lives beside its datastore: with it gone, reads are refused too, not
        // answered from a view nobody can confirm. The sandbox's own paths still answer.
        let down = await Self.get(cluster, "/api/v1/namespaces/default/configmaps/before")
        #expect(down.status == 503 && String(decoding: down.body, as: UTF8.self).contains("cannot read its datastore"),
                "\(String(decoding: down.body, as: UTF8.self))")
        #expect(await Self.get(cluster, "/sandbox/v1/datastore").status == 200)
        #expect(storage.stats.refused >= 1)
        try await kine.start()
        #expect(await cluster.respond(Self.configMap("after")).status == 201)
        #expect(await Self.get(cluster, "/api/v1/namespaces/default/configmaps/before").status == 200, "reads are back with the datastore")
        #expect(await Self.get(cluster, "/api/v1/namespaces/default/configmaps/while-down").status == 404, "the view changes only after the datastore")

        // Put back the backup, kine stopped (as k3s's SQLite restore does): the API reads the
        // older datastore back; what was written after the backup is gone, the model goes on.
        await kine.stop()
        for suffix in ["", "-wal", "-shm"] { unlink(kine.database + suffix) }
        try FileManager.default.copyItem(atPath: kine.directory.file("backup.db"), toPath: kine.database)
        try await kine.start()
        clock.advance(by: 1)
        await cluster.tick()
        await cluster.tick()
        #expect(storage.stats.reloads == 1, "\(storage.stats)")
        #expect(await Self.get(cluster, "/api/v1/namespaces/default/configmaps/after").status == 404)
        #expect(await Self.get(cluster, "/api/v1/namespaces/default/configmaps/before").status == 200)
        let again = await cluster.respond(Self.configMap("after"))
        #expect(again.status == 201, "\(String(decoding: again.body, as: UTF8.self))")
        await kine.stop()
    }

    /// Behind a datastore a watch reports what the datastore confirmed, each object at the
    /// revision kine gave it; a restore read back ends the watch with 410.
    @Test func aWatchBehindADatastoreCarriesTheDatastoresRevisionsAndEndsGoneOnARestore() async throws {
        let kine = try Kine()
        try await kine.start()
        let clock = ManualClock(1_800_000_000)
        let storage = ClusterStorage(gateway: EtcdGateway(endpoints: [kine.endpoint], callTimeoutSeconds: 20),
                                     log: ThrottledLog(intervalSeconds: 0, clock: { clock.now }, write: { _ in }), retrySeconds: 0)
        let spec = ClusterSpec(servers: 1, agents: 1, volumes: 0)
        let cluster = SandboxCluster(model: ClusterModel(spec: spec, now: clock.now), clock: { clock.now }, storage: storage)
        await cluster.tick()
        #expect(storage.isSynced)
        let server = try await HTTPServer.start(host: "127.0.0.1", port: 0, responder: .async(cluster.respond))
        let client = HTTPClient(configuration: HTTPClient.Configuration(retry: .never), tls: nil)
        let listed = try JSON.parse(bytes: await Self.get(cluster, "/api/v1/namespaces/default/configmaps").body)
        let version = try #require(listed[path: "metadata", "resourceVersion"]?.string)
        let watching = Task {
            try await client.get(try HTTPURL("http://127.0.0.1:\(server.port)/api/v1/namespaces/default/configmaps?watch=1"
                                              + "&resourceVersion=\(version)&timeoutSeconds=30"))
        }
        let deadline = Date().addingTimeInterval(30)
        while cluster.watches.counts.open == 0, Date() < deadline { try await Task.sleep(nanoseconds: 20_000_000) }
        #expect(await cluster.respond(Self.configMap("watched")).status == 201)
        #expect(await cluster.respond(APIRequest(method: "DELETE", uri: "/api/v1/namespaces/default/configmaps/watched")).status == 200)
        // A restore (here: the view read back after a conflict) ends the watch with 410.
        let revision = cluster.withModel { $0.store.revision }
        cluster.watches.reset(revision: revision)
        let answer = try await watching.value
        let lines = answer.body.split(separator: UInt8(ascii: "\n")).compactMap { try? JSON.parse(bytes: Array($0)) }
        #expect(lines.map { $0["type"]?.string ?? "" } == ["ADDED", "DELETED", "ERROR"], "\(lines)")
        let rows = try await kine.sqlite("SELECT id FROM kine WHERE name = '/registry/configmaps/default/watched' ORDER BY id")
            .split(separator: "\n").map(String.init)
        #expect(lines.prefix(2).map { $0[path: "object", "metadata", "resourceVersion"]?.string ?? "" } == rows,
                "each event at the revision of its kine row: \(rows)")
        #expect(lines.last?[path: "object", "code"]?.int == 410)
        await client.shutdown()
        await server.close()
        await kine.stop()
    }

    /// Nothing writes (no kubelet reports, the controllers have nothing to do): a quiet API
    /// still asks every couple of seconds, so a restore is read back and an outage shows.
    @Test func aQuietAPIProbesItsDatastoreAndNoticesARestore() async throws {
        let kine = try Kine()
        try await kine.start()
        let clock = ManualClock(1_800_000_000)
        let storage = ClusterStorage(gateway: EtcdGateway(endpoints: [kine.endpoint], callTimeoutSeconds: 20), log: ThrottledLog(write: { _ in }),
                                     retrySeconds: 0)
        let cluster = SandboxCluster(model: ClusterModel(spec: ClusterSpec(servers: 1, agents: 0, volumes: 0), now: clock.now),
                                     clock: { clock.now }, storage: storage)
        await cluster.tick()
        #expect(storage.isSynced && storage.stats.seeds == 1)
        await kine.stop()
        try FileManager.default.copyItem(atPath: kine.database, toPath: kine.directory.file("backup.db"))
        try await kine.start()
        #expect(await cluster.respond(Self.configMap("later")).status == 201)
        await kine.stop()
        for suffix in ["", "-wal", "-shm"] { unlink(kine.database + suffix) }
        try FileManager.default.copyItem(atPath: kine.directory.file("backup.db"), toPath: kine.database)
        try await kine.start()
        await cluster.tick()
        #expect(storage.isSynced, "no probe within \(ClusterStorage.probeSeconds) s of the last call")
        clock.advance(by: ClusterStorage.probeSeconds)
        await cluster.tick()
        #expect(!storage.isSynced, "the probe read an older revision: a restored datastore")
        await cluster.tick()
        let later = await Self.get(cluster, "/api/v1/namespaces/default/configmaps/later")
        #expect(storage.stats.reloads == 1 && later.status == 404)
        await kine.stop()
        clock.advance(by: ClusterStorage.probeSeconds)
        await cluster.tick()
        #expect(storage.summary["lastError"]?.string?.contains("unreachable") == true, "\(storage.summary)")
    }

    /// A running fake kine, and a cluster of `spec` on it with a driven clock.
    static func onKine(_ spec: ClusterSpec) async throws -> (Kine, ManualClock, ClusterStorage, SandboxCluster) {
        let kine = try Kine()
        try await kine.start()
        let clock = ManualClock(1_800_000_000)
        let storage = ClusterStorage(gateway: EtcdGateway(endpoints: [kine.endpoint]), log: ThrottledLog(write: { _ in }), retrySeconds: 0)
        let cluster = SandboxCluster(model: ClusterModel(spec: spec, now: clock.now), clock: { clock.now }, storage: storage)
        return (kine, clock, storage, cluster)
    }

    /// A datastore wiped and started empty is a new cluster: the model's objects are seeded anew
    /// (the repository Flux follows kept), nothing written since, with new uids.
    @Test func aWipedDatastoreIsSeededWithANewlyInstalledCluster() async throws {
        let (kine, clock, storage, cluster) = try await Self.onKine(ClusterSpec(servers: 1, agents: 1, volumes: 1))
        cluster.withModel { model in
            model.store.modify(.fluxGitRepositories, "flux-system", "flux-system") { $0[path: "spec", "url"] = "file:///sandbox/fleet.git" }
        }
        #expect(await cluster.respond(Self.configMap("written")).status == 201)
        let uid = cluster.withModel { $0.store.get(.nodes, nil, "server-1")?[path: "metadata", "uid"]?.string }
        await kine.stop()
        for suffix in ["", "-wal", "-shm"] { unlink(kine.database + suffix) }
        try await kine.start()
        clock.advance(by: ClusterStorage.probeSeconds)
        await cluster.tick()
        await cluster.tick()
        #expect(storage.stats.seeds == 2, "\(storage.stats)")
        #expect(await Self.get(cluster, "/api/v1/namespaces/default/configmaps/written").status == 404)
        let node = cluster.withModel { $0.store.get(.nodes, nil, "server-1") }
        #expect(node != nil && node?[path: "metadata", "uid"]?.string != uid)
        let source = cluster.withModel { $0.store.get(.fluxGitRepositories, "flux-system", "flux-system")?[path: "spec", "url"]?.string }
        #expect(source == "file:///sandbox/fleet.git")
        #expect(Int(try await kine.sqlite("SELECT COUNT(DISTINCT name) FROM kine WHERE name LIKE '/registry/minions/%'")) == 2)
        await kine.stop()
    }

    @Test func anotherClusterIDOrAWriteAtARevisionAlreadySeenIsAnotherDatastore() {
        var etcd = DatastoreIdentity()
        var seen: [Bool] = []
        seen.append(etcd.observe(Gateway.Header(clusterID: 7, revision: 10)))
        seen.append(etcd.observe(Gateway.Header(clusterID: 7, revision: 12), writtenAt: 11))
        seen.append(etcd.observe(Gateway.Header(clusterID: 8, revision: 40)))  // restored from a snapshot: a new cluster ID
        seen.append(etcd.observe(Gateway.Header(clusterID: 8, revision: 41), writtenAt: 41))  // the one seen from then on
        #expect(seen == [true, true, false, true])
        var kine = DatastoreIdentity()
        seen = []
        seen.append(kine.observe(Gateway.Header(revision: 50)))
        seen.append(kine.observe(Gateway.Header(revision: 52), writtenAt: 51))
        seen.append(kine.observe(Gateway.Header(revision: 55), writtenAt: 41))  // an older state.db grew past 52, but wrote at 41
        seen.append(kine.observe(Gateway.Header(revision: 30)))  // read at a revision lower than seen
        seen.append(kine.observe(Gateway.Header(revision: 30)))
        #expect(seen == [true, true, false, false, true])
    }

    @Test func aRevisionTheViewDoesNotKnowIsAConflictThatReadsTheViewBack() async throws {
        let (kine, _, storage, cluster) = try await Self.onKine(ClusterSpec(servers: 1, agents: 0, volumes: 0))
        #expect(await cluster.respond(Self.configMap("shared")).status == 201)
        // Another writer changes the object behind the API's back.
        let other = EtcdGateway(endpoints: [kine.endpoint])
        let (_, stored) = try await other.get("/registry/configmaps/default/shared")
        var changed = try JSON.parse(bytes: try #require(stored).value)
        changed["data"] = ["k": "changed elsewhere"]
        _ = try await other.put("/registry/configmaps/default/shared", changed.serialized())

        let patch = APIRequest(method: "PATCH", uri: "/api/v1/namespaces/default/configmaps/shared", contentType: "application/merge-patch+json",
                               body: (["metadata": ["labels": ["patched": "yes"]]] as JSON).serialized())
        let patched = await cluster.respond(patch)
        #expect(patched.status == 200, "\(String(decoding: patched.body, as: UTF8.self))")
        let result = try JSON.parse(bytes: patched.body)
        // The compare failed, the view was read back, and the patch applied to what the datastore held.
        #expect(result["data"]?["k"]?.string == "changed elsewhere" && result[path: "metadata", "labels", "patched"]?.string == "yes")
        #expect(storage.stats.conflicts == 1 && storage.stats.reloads == 1)
        await kine.stop()
    }
}
