import Foundation
import NIOPosix
import Testing
import UpkeepCore
import UpkeepHTTPServer
import UpkeepKube
import UpkeepProcess
@testable import UpkeepSandbox
import UpkeepTestSupport

/// One gateway client for both datastores: the same calls, over real sockets, against a real
/// etcd 3.4 member and against the fake kine (SQLite, read back with the `sqlite3` tool), must
/// mean the same, but for kine's one revision per written row.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct GatewayTests {
    enum Backend: String, CaseIterable, Sendable {
        case etcd, kine
    }

    /// A running datastore and a client of it; `stop` ends it.
    final class Datastore: @unchecked Sendable {
        let gateway: EtcdGateway
        let directory: TemporaryDirectory
        let stop: () async -> Void

        init(gateway: EtcdGateway, directory: TemporaryDirectory, stop: @escaping () async -> Void) {
            self.gateway = gateway
            self.directory = directory
            self.stop = stop
        }

        var database: String { directory.file("state.db") }

        static func start(_ backend: Backend) async throws -> Datastore {
            let directory = try TemporaryDirectory()
            switch backend {
            case .kine:
                let kine = try KineStore(path: directory.file("state.db"))
                let server = try await HTTPServer.start(host: "127.0.0.1", port: 0, responder: .blocking {
                    GatewayService.respond($0, kine: kine)
                })
                return Datastore(gateway: EtcdGateway(endpoints: ["http://127.0.0.1:\(server.port)"]), directory: directory) { await server.close() }
            case .etcd:
                let client = try unusedLoopbackPort(), peer = try unusedLoopbackPort()
                let etcd = try #require(ProcessRun.locate("etcd"), "etcd 3.4 is installed by scripts/install-deps")
                let pid = try Spawn.detached([etcd, "--name", "test", "--data-dir", directory.file("etcd"),
                                              "--listen-client-urls", "http://127.0.0.1:\(client)", "--advertise-client-urls", "http://127.0.0.1:\(client)",
                                              "--listen-peer-urls", "http://127.0.0.1:\(peer)", "--initial-advertise-peer-urls", "http://127.0.0.1:\(peer)",
                                              "--initial-cluster", "test=http://127.0.0.1:\(peer)"],
                                             environment: EtcdMember.environment(), logFile: directory.file("etcd.log"))
                let gateway = EtcdGateway(endpoints: ["http://127.0.0.1:\(client)"])
                let ready = try await HostTests.eventually(timeoutSeconds: 30) { (try? await gateway.get("/ready")) != nil }
                try #require(ready, "etcd did not start: \((try? String(contentsOfFile: directory.file("etcd.log"), encoding: .utf8)) ?? "")")
                return Datastore(gateway: gateway, directory: directory) { Spawn.terminate(pid, graceSeconds: 10) }
            }
        }
    }

    @Test(arguments: Backend.allCases)
    func putRangeTxnAndDeleteMeanTheSameOnBoth(backend: Backend) async throws {
        let store = try await Datastore.start(backend)
        let gateway = store.gateway
        do {
            let first = try await gateway.put("/registry/configmaps/default/a", Array("one".utf8))
            let (header, value) = try await gateway.get("/registry/configmaps/default/a")
            #expect(header.revision == first.revision && value?.value == Array("one".utf8) && value?.modRevision == first.revision)
            #expect(value?.createRevision == first.revision && value?.version == 1)
            let second = try await gateway.put("/registry/configmaps/default/a", Array("two".utf8))
            #expect(second.revision == first.revision + 1)
            #expect(try await gateway.get("/registry/configmaps/default/a").1?.version == 2)

            // A guarded write: applied only while the key has the revision the writer knew.
            let stale = try await gateway.txn(Gateway.TxnRequest(compare: [Gateway.Compare(key: "/registry/configmaps/default/a", .modRevision(first.revision))],
                                                                 success: [.put(key: "/registry/configmaps/default/a", value: Array("lost".utf8))]))
            #expect(!stale.succeeded && stale.header.revision == second.revision && stale.responses.isEmpty)
            let both = try await gateway.txn(Gateway.TxnRequest(
                compare: [Gateway.Compare(key: "/registry/configmaps/default/a", .modRevision(second.revision)),
                          Gateway.Compare(key: "/registry/configmaps/default/b", .modRevision(0))],
                success: [.put(key: "/registry/configmaps/default/a", value: Array("three".utf8)),
                          .put(key: "/registry/configmaps/default/b", value: Array("new".utf8))]))
            #expect(both.succeeded && both.responses.count == 2)
            // etcd writes a transaction at one revision; kine appends a row, a revision, per write.
            let revisions = both.responses.map(\.revision)
            #expect(revisions == (backend == .etcd ? [second.revision + 1, second.revision + 1] : [second.revision + 1, second.revision + 2]),
                    "\(revisions)")
            #expect(both.header.revision == revisions.last)
            let b = try await gateway.get("/registry/configmaps/default/b").1
            #expect(b?.modRevision == revisions[1] && b?.createRevision == revisions[1])
            let created = try await gateway.txn(Gateway.TxnRequest(compare: [Gateway.Compare(key: "/registry/configmaps/default/b", .createRevision(0))],
                                                                   success: [.put(key: "/registry/configmaps/default/b", value: [])]))
            #expect(!created.succeeded, "b exists: its create_revision is not 0")

            for name in ["c", "d", "e"] { _ = try await gateway.put("/registry/configmaps/other/\(name)", Array(name.utf8)) }
            _ = try await gateway.put("/registry/configmapsx/x", [1])
            let page = try await gateway.range(.prefix("/registry/configmaps/", limit: 3))
            #expect(page.kvs.map(\.key) == ["/registry/configmaps/default/a", "/registry/configmaps/default/b", "/registry/configmaps/other/c"])
            #expect(page.more && page.count == 5, "\(page.count) \(page.more)")
            let counted = try await gateway.range(.prefix("/registry/configmaps/", countOnly: true))
            #expect(counted.count == 5 && counted.kvs.isEmpty)
            let everything = try await gateway.range(Gateway.RangeRequest(key: "/registry/configmaps/other/d", rangeEnd: "\0"))
            #expect(everything.kvs.map(\.key) == ["/registry/configmaps/other/d", "/registry/configmaps/other/e", "/registry/configmapsx/x"])

            let deleted = try await gateway.txn(Gateway.TxnRequest(compare: [Gateway.Compare(key: "/registry/configmaps/other/c", .modRevision(page.kvs[2].modRevision))],
                                                                   success: [.deleteRange(key: "/registry/configmaps/other/c", rangeEnd: nil)]))
            #expect(deleted.succeeded && deleted.responses == [.deleteRange(deleted: 1, revision: deleted.header.revision)])
            #expect(try await gateway.get("/registry/configmaps/other/c").1 == nil)
            #expect(try await gateway.range(.prefix("/registry/configmaps/", countOnly: true)).count == 4)
            let recreated = try await gateway.put("/registry/configmaps/other/c", Array("again".utf8))
            #expect(try await gateway.get("/registry/configmaps/other/c").1?.createRevision == recreated.revision)

            if backend == .kine {
                // kine's table, read by SQLite itself: a row per write, a deletion row, prev_revision chains.
                let rows = try await ProcessRun.run("sqlite3", [store.database, "SELECT id, name, created, deleted, prev_revision FROM kine WHERE name = '/registry/configmaps/other/c' ORDER BY id"],
                                                    timeoutSeconds: 20)
                let lines = rows.output.split(separator: "\n").map { $0.split(separator: "|").map(String.init) }
                #expect(lines.count == 3 && lines.map { $0.count > 3 ? $0[2] + $0[3] : "" } == ["10", "01", "10"], "\(rows.output)")
                #expect(lines.count == 3 && lines[1].last == lines[0].first && lines[2].last == lines[1].first, "\(rows.output)")
            }
        } catch {
            await store.stop()
            throw error
        }
        await store.stop()
    }

    /// A gateway whose first endpoint is down answers from the next, and says so in its counters;
    /// with none answering, the error names every endpoint.
    @Test func aCallFailsOverToTheNextEndpointAndIsBounded() async throws {
        let store = try await Datastore.start(.kine)
        defer { Task { await store.stop() } }
        let dead = "http://127.0.0.1:\(try unusedLoopbackPort())"
        let gateway = EtcdGateway(endpoints: [dead] + store.gateway.endpoints)
        _ = try await gateway.put("/k", [1])
        #expect(gateway.stats.failovers == 1 && gateway.stats.failures == 0)
        _ = try await gateway.get("/k")
        #expect(gateway.stats.failovers == 1, "the endpoint that answered is asked first from then on")
        let nobody = EtcdGateway(endpoints: [dead, "http://127.0.0.1:\(try unusedLoopbackPort())"], callTimeoutSeconds: 2)
        await #expect(throws: DatastoreError.self) { _ = try await nobody.get("/k") }
        do {
            _ = try await nobody.get("/k")
        } catch {
            #expect("\(error)".contains(dead), "\(error)")
        }
        #expect(nobody.stats.failures == 2)
    }
}
