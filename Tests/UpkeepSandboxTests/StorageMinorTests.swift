import Foundation
import Testing
import UpkeepCore
import UpkeepKube
import UpkeepProcess
@testable import UpkeepSandbox

/// "If you cannot restore the database, you cannot roll back to a previous minor version"
/// (https://docs.k3s.io/upgrades/roll-back), as the sandbox models it: the datastore records the
/// newest minor that wrote it; an older fake k3s server refuses to start on it and starts on a
/// datastore restored from its own minor.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct StorageMinorTests {
    @Test func theVerdictIsTheNewerMinorWins() throws {
        #expect(StorageMinor.minor(of: "v1.31.4+k3s1") == 31 && StorageMinor.minor(of: "v1.9.0") == 9 && StorageMinor.minor(of: "2.0") == nil)
        #expect(StorageMinor.verdict(recorded: nil, version: "v1.30.6+k3s1", node: "s") == .start(record: StorageMinor.record(version: "v1.30.6+k3s1", node: "s")))
        let at31 = StorageMinor.record(version: "v1.31.2+k3s1", node: "server-1")
        #expect(StorageMinor.verdict(recorded: at31, version: "v1.31.4+k3s1", node: "s") == .start(record: nil), "a patch writes nothing")
        #expect(StorageMinor.verdict(recorded: at31, version: "v1.32.0+k3s1", node: "s") == .start(record: StorageMinor.record(version: "v1.32.0+k3s1", node: "s")))
        guard case .refuse(let message) = StorageMinor.verdict(recorded: at31, version: "v1.30.6+k3s1", node: "s") else {
            Issue.record("an older minor must refuse")
            return
        }
        #expect(message.contains("v1.31") && message.contains("v1.30.6+k3s1") && message.contains("https://docs.k3s.io/upgrades/roll-back"), "\(message)")
    }

    static func install(_ version: String, on node: SandboxNode) throws {
        try JSONFiles.atomicWrite(Data(FakeK3s.script(version: version, hostBinary: HostTests.hostBinary).utf8), to: node.k3sBinary, mode: 0o755)
    }

    /// The recorded minor, read from kine's table with the `sqlite3` tool.
    static func recordedMinor(sqlite node: SandboxNode) async throws -> Int64? {
        let row = try await ProcessRun.run("sqlite3", ["\(node.dataDir)/server/db/state.db",
                                                       "SELECT value FROM kine WHERE name = '\(StorageMinor.key)' ORDER BY id DESC LIMIT 1"],
                                           timeoutSeconds: 20)
        return (try? JSON.parse(row.output))?["minor"]?.int
    }

    /// The recorded minor, read from the etcd member of `node` with `etcdctl`.
    static func recordedMinor(etcd node: SandboxNode) async throws -> Int64? {
        let recorded = try await EtcdServerTests.etcdctl(node, ["get", StorageMinor.key, "--print-value-only"])
        return (try? JSON.parse(recorded.output))?["minor"]?.int
    }

    /// `k3s server` of `node` run by hand (its unit stopped), as an operator would after a
    /// downgrade: it must exit non-zero with the storage-version message.
    static func expectRefused(_ node: SandboxNode, recorded: String, running version: String) async throws {
        let run = try await ProcessRun.run(node.k3sBinary, ["server"], timeoutSeconds: 120)
        #expect(!run.timedOut && run.status == 1, "\(node.name): exit \(run.status): \(run.output)")
        #expect(run.output.contains("level=fatal") && run.output.contains("last written by Kubernetes v1.\(StorageMinor.minor(of: recorded) ?? 0) (\(recorded))")
                && run.output.contains("this is \(version)") && run.output.contains("https://docs.k3s.io/upgrades/roll-back"), "\(run.output)")
        let unit = try await EtcdServerTests.systemctl(node, "start")
        #expect(unit.status != 0 && unit.output.contains("Job for \(node.unit).service failed"), "\(unit.output)")
    }

    /// kubectl sees `node` Ready, its kubelet at `version`.
    static func readyAt(_ runner: SandboxRunner, _ node: SandboxNode, _ version: String) async throws -> Bool {
        try await HostTests.eventually(timeoutSeconds: 60) {
            let shown = try await EtcdServerTests.kubectl(runner, ["get", "node", node.name, "-o",
                                                                  #"jsonpath={.status.nodeInfo.kubeletVersion} {.status.conditions[?(@.type=="Ready")].status}"#])
            return shown.output == "\(version) True"
        }
    }

    @Test func aSQLiteServerOfAnOlderMinorRefusesTheDatastoreUntilItsOwnIsPutBack() async throws {
        try await HostTests.withSandbox(ClusterSpec(servers: 1, agents: 0, volumes: 0, replicas: 1), timings: ModelTimings()) { runner in
            let server = runner.manifest.nodes[0]
            let (old, new) = (runner.manifest.k3sVersion, "v1.31.2+k3s1")
            let db = "\(server.dataDir)/server/db"
            #expect(try await Self.recordedMinor(sqlite: server) == 30)
            #expect(try await EtcdServerTests.createEventually(runner, "at-30").status == 0)
            // The backup k3s documents for SQLite: the database and the token, k3s stopped.
            #expect(try await EtcdServerTests.systemctl(server, "stop").status == 0)
            try FileManager.default.copyItem(atPath: "\(db)/state.db", toPath: "\(runner.manifest.directory)/state.db.v1.30")
            try FileManager.default.copyItem(atPath: "\(server.dataDir)/server/token", toPath: "\(runner.manifest.directory)/token.v1.30")

            // A newer minor that never turns healthy writes nothing: the old one still starts.
            var faults = SandboxFaults.load(runner.manifest.faultsFile)
            faults.nodes[server.name] = K3sFault(neverHealthy: true, onlyVersion: new)
            try JSONFiles.write(faults, to: runner.manifest.faultsFile)
            try Self.install(new, on: server)
            #expect(try await EtcdServerTests.systemctl(server, "start").status == 0)
            try await Task.sleep(nanoseconds: 2_000_000_000)
            #expect(try await Self.recordedMinor(sqlite: server) == 30)
            #expect(try await EtcdServerTests.systemctl(server, "stop").status == 0)
            try JSONFiles.write(SandboxFaults(), to: runner.manifest.faultsFile)

            // Healthy at v1.31, it records its minor; back at v1.30 the server refuses.
            #expect(try await EtcdServerTests.systemctl(server, "start").status == 0)
            #expect(try await Self.recordedMinor(sqlite: server) == 31)
            #expect(try await Self.readyAt(runner, server, new))
            #expect(try await EtcdServerTests.createEventually(runner, "at-31").status == 0)
            #expect(try await EtcdServerTests.systemctl(server, "stop").status == 0)
            try Self.install(old, on: server)
            try await Self.expectRefused(server, recorded: new, running: old)
            let log = try String(contentsOfFile: server.logFile, encoding: .utf8)
            #expect(log.contains("level=fatal") && log.contains("last written by Kubernetes v1.31") && log.contains("https://docs.k3s.io/upgrades/roll-back"))

            // The restore k3s documents for SQLite, k3s stopped: state.db and the token put back.
            #expect(try await EtcdServerTests.systemctl(server, "stop").status == 0)
            for suffix in ["", "-wal", "-shm"] { unlink("\(db)/state.db\(suffix)") }
            try FileManager.default.copyItem(atPath: "\(runner.manifest.directory)/state.db.v1.30", toPath: "\(db)/state.db")
            try? FileManager.default.removeItem(atPath: "\(server.dataDir)/server/token")
            try FileManager.default.copyItem(atPath: "\(runner.manifest.directory)/token.v1.30", toPath: "\(server.dataDir)/server/token")
            let restored = try await EtcdServerTests.systemctl(server, "start")
            #expect(restored.status == 0, "\(restored.output)")
            #expect(try await Self.recordedMinor(sqlite: server) == 30)
            #expect(try await Self.readyAt(runner, server, old), "Ready at \(old) on its restored datastore")
            let gone = try await HostTests.eventually(timeoutSeconds: 30) {
                try await EtcdServerTests.kubectl(runner, ["get", "configmap", "at-31"]).output.contains("NotFound")
            }
            #expect(gone, "the object written at v1.31 is gone with the restore")
            #expect(try await EtcdServerTests.kubectl(runner, ["get", "configmap", "at-30"]).status == 0)
        }
    }

    @Test func anEtcdServerOfAnOlderMinorRefusesTheDatastoreAndStartsOnASnapshotOfItsMinor() async throws {
        try await HostTests.withSandbox(ClusterSpec(servers: 2, agents: 0, volumes: 0, replicas: 1), timings: ModelTimings()) { runner in
            let servers = runner.manifest.nodes
            let (old, new) = (runner.manifest.k3sVersion, "v1.31.2+k3s1")
            #expect(try await Self.recordedMinor(etcd: servers[0]) == 30)
            #expect(try await EtcdServerTests.createEventually(runner, "at-30").status == 0)
            let save = try await ProcessRun.run(servers[0].k3sBinary, ["etcd-snapshot", "save", "--name", "v1.30"], timeoutSeconds: 120)
            #expect(save.status == 0, "\(save.output)")
            let snapshot = try #require(try FileManager.default.contentsOfDirectory(atPath: servers[0].snapshotDir).first { $0.hasPrefix("v1.30-") })

            for server in servers {
                try Self.install(new, on: server)
                let restarted = try await EtcdServerTests.systemctl(server, "restart")
                #expect(restarted.status == 0, "\(server.name): \(restarted.output)")
            }
            #expect(try await Self.recordedMinor(etcd: servers[0]) == 31)
            for server in servers { #expect(try await Self.readyAt(runner, server, new), "\(server.name) at \(new)") }
            #expect(try await EtcdServerTests.createEventually(runner, "at-31").status == 0)

            // The binary alone swapped back a minor: the server refuses.
            #expect(try await EtcdServerTests.systemctl(servers[1], "stop").status == 0)
            try Self.install(old, on: servers[1])
            try await Self.expectRefused(servers[1], recorded: new, running: old)
            #expect(try String(contentsOfFile: servers[1].logFile, encoding: .utf8).contains("last written by Kubernetes v1.31"))

            // The restore k3s documents, with the old binary everywhere.
            for server in servers { #expect(try await EtcdServerTests.systemctl(server, "stop").status == 0) }
            try Self.install(old, on: servers[0])
            let reset = try await ProcessRun.run(servers[0].k3sBinary, ["server", "--cluster-reset",
                                                                        "--cluster-reset-restore-path=\(servers[0].snapshotDir)/\(snapshot)"],
                                                 timeoutSeconds: 120)
            #expect(reset.status == 0 && reset.output.contains(FakeK3s.resetLine), "\(reset.output)")
            #expect(try await EtcdServerTests.systemctl(servers[0], "start").status == 0)
            try FileManager.default.removeItem(atPath: "\(servers[1].dataDir)/server/db")
            let rejoined = try await EtcdServerTests.systemctl(servers[1], "start")
            #expect(rejoined.status == 0, "\(rejoined.output)")
            #expect(try await Self.recordedMinor(etcd: servers[1]) == 30)
            for server in servers { #expect(try await Self.readyAt(runner, server, old), "\(server.name) Ready at \(old) on the restored datastore") }
            let gone = try await HostTests.eventually(timeoutSeconds: 30) {
                try await EtcdServerTests.kubectl(runner, ["get", "configmap", "at-31"]).output.contains("NotFound")
            }
            #expect(gone, "the object written at v1.31 is gone with the restore")
            #expect(try await EtcdServerTests.kubectl(runner, ["get", "configmap", "at-30"]).status == 0)
        }
    }
}
