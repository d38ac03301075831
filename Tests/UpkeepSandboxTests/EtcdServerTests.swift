import Foundation
import Testing
import UpkeepCore
import UpkeepKube
import UpkeepProcess
@testable import UpkeepSandbox

/// The sandbox's servers run real etcd 3.4 members as k3s's embedded etcd, judged by the real
/// `etcdctl`: one cluster of every server, snapshots and the restore k3s documents
/// (https://docs.k3s.io/datastore/backup-restore), and members that live and die with k3s.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct EtcdServerTests {
    static func etcdctl(_ node: SandboxNode, _ arguments: [String], timeoutSeconds: Double = 30) async throws -> ProcessRun.Outcome {
        try await EtcdMember.etcdctl(["--endpoints", node.datastoreURL, "--dial-timeout", "3s", "--command-timeout", "10s"] + arguments,
                                     timeoutSeconds: timeoutSeconds)
    }

    /// `etcdctl member list -w json` through `node`: the cluster id and the members (name, peer URLs).
    static func members(_ node: SandboxNode) async throws -> (cluster: String, members: [(name: String, peers: [String])]) {
        let listed = try await etcdctl(node, ["member", "list", "-w", "json"])
        try #require(listed.status == 0, "\(listed.output)")
        let text = String(listed.output.drop { $0 != "{" })
        let json = try UpkeepKube.JSON.parse(text)
        let members = (json["members"]?.array ?? []).map { member in
            (member["name"]?.string ?? "", (member["peerURLs"]?.array ?? []).compactMap(\.string))
        }
        // A uint64 that may not fit an Int64: read as text.
        let cluster = text.range(of: #""cluster_id":\d+"#, options: .regularExpression).map { String(text[$0].dropFirst(13)) } ?? ""
        return (cluster, members)
    }

    static func systemctl(_ node: SandboxNode, _ verb: String) async throws -> ProcessRun.Outcome {
        try await ProcessRun.run(node.systemctl, [verb, node.unit], timeoutSeconds: 120)
    }

    static func etcdPID(_ node: SandboxNode) -> pid_t? { SandboxDaemon.etcdPID(node) }

    static func kubectl(_ runner: SandboxRunner, _ arguments: [String], timeoutSeconds: Double = 60) async throws -> ProcessRun.Outcome {
        try await ProcessRun.run("kubectl", ["--kubeconfig", runner.manifest.kubeconfig, "--cache-dir", "\(runner.manifest.directory)/.kube-cache",
                                             "--request-timeout", "30s"] + arguments, timeoutSeconds: timeoutSeconds)
    }

    /// `kubectl create configmap NAME`, tried every half second until it succeeds or `timeoutSeconds` pass.
    static func createEventually(_ runner: SandboxRunner, _ name: String, timeoutSeconds: Double = 60) async throws -> ProcessRun.Outcome {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while true {
            let created = try await kubectl(runner, ["create", "configmap", name, "--from-literal=k=\(name)"])
            if created.status == 0 || Date() >= deadline { return created }
            try await Task.sleep(nanoseconds: 500_000_000)
        }
    }

    @Test func threeServersKeepTheAPIsObjectsInOneEtcdClusterWithRealQuorumAndARestoreAsK3sDocuments() async throws {
        try await HostTests.withSandbox(ClusterSpec(servers: 3, agents: 0, volumes: 0, replicas: 1), timings: ModelTimings()) { runner in
            let servers = runner.manifest.nodes
            let (cluster, members) = try await Self.members(servers[0])
            // One cluster of three started members (an unstarted one has no name), each named
            // after its node as k3s names them, on the nodes' own peer addresses.
            #expect(members.count == 3 && members.allSatisfy { !$0.name.isEmpty }, "\(members)")
            for server in servers {
                #expect(members.contains { $0.name.hasPrefix("\(server.name)-") && $0.peers == ["http://\(server.address):2380"] },
                        "\(server.name) in \(members)")
                #expect(FileManager.default.fileExists(atPath: "\(server.dataDir)/server/db/etcd/member/wal"), "k3s's member path")
            }

            // What kubectl creates is in etcd, under the apiserver's key, at the revision the API reports.
            #expect(try await Self.kubectl(runner, ["create", "configmap", "before", "--from-literal=k=v"]).status == 0)
            let stored = try await Self.etcdctl(servers[1], ["get", "/registry/configmaps/default/before", "-w", "json"])
            let modRevision = stored.output.range(of: #""mod_revision":\d+"#, options: .regularExpression).map { String(stored.output[$0].dropFirst(15)) }
            let reported = try await Self.kubectl(runner, ["get", "configmap", "before", "-o", "jsonpath={.metadata.resourceVersion}"])
            #expect(modRevision != nil && reported.output == modRevision, "API \(reported.output), etcd \(stored.output)")
            let listed = try await Self.etcdctl(servers[2], ["get", "--prefix", "/registry/minions/", "--keys-only"])
            #expect(listed.output.split(separator: "\n").map(String.init) == servers.map { "/registry/minions/\($0.name)" }, "\(listed.output)")

            // Quorum is real: two of three servers down, no write; one back, writes again.
            for server in servers.dropFirst() { #expect(try await Self.systemctl(server, "stop").status == 0) }
            let refused = try await Self.kubectl(runner, ["create", "configmap", "without-quorum", "--from-literal=k=v"])
            #expect(refused.status != 0 && refused.output.contains("etcdserver"), "\(refused.output)")
            // A quorum read needs a quorum too (kubectl's get is one).
            let unread = try await Self.kubectl(runner, ["get", "configmap", "before"])
            #expect(unread.status != 0 && unread.output.contains("cannot read its datastore"), "\(unread.output)")
            #expect(try await Self.systemctl(servers[1], "start").status == 0)
            let quorate = try await Self.createEventually(runner, "with-quorum")
            #expect(quorate.status == 0, "\(quorate.output)")
            #expect(try await Self.systemctl(servers[2], "start").status == 0)

            let save = try await ProcessRun.run(servers[0].k3sBinary, ["etcd-snapshot", "save", "--name", "pre-restore"], timeoutSeconds: 120)
            #expect(save.status == 0, "\(save.output)")
            let snapshots = try FileManager.default.contentsOfDirectory(atPath: servers[0].snapshotDir)
            let snapshot = try #require(snapshots.first { $0.range(of: #"^pre-restore-server-1-\d{10}$"#, options: .regularExpression) != nil },
                                        "\(snapshots)")
            let path = "\(servers[0].snapshotDir)/\(snapshot)"
            let status = try await EtcdMember.etcdctl(["snapshot", "status", path, "-w", "json"])
            #expect(status.status == 0, "a real etcd snapshot: \(status.output)")
            #expect(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int == 0o600)
            #expect(try await Self.kubectl(runner, ["create", "configmap", "after", "--from-literal=k=v"]).status == 0)

            // k3s's restore: stop k3s on every server, reset one from the snapshot, start it,
            // delete server/db on the others and start them.
            for server in servers { #expect(try await Self.systemctl(server, "stop").status == 0) }
            for server in servers { #expect(Self.etcdPID(server) == nil, "\(server.name)'s etcd stopped with k3s") }
            let reset = try await ProcessRun.run(servers[0].k3sBinary, ["server", "--cluster-reset", "--cluster-reset-restore-path=\(path)"],
                                                 timeoutSeconds: 120)
            #expect(reset.status == 0, "\(reset.output)")
            #expect(reset.output.contains("Managed etcd cluster membership has been reset, restart without --cluster-reset flag now."))
            let moved = try FileManager.default.contentsOfDirectory(atPath: "\(servers[0].dataDir)/server/db")
            #expect(moved.contains { $0.hasPrefix("etcd-old-") }, "the old member moved aside: \(moved)")
            #expect(try await Self.systemctl(servers[0], "start").status == 0)
            let alone = try await Self.members(servers[0])
            #expect(alone.members.count == 1 && alone.cluster != cluster, "a new single-member cluster: \(alone)")
            for server in servers.dropFirst() {
                try FileManager.default.removeItem(atPath: "\(server.dataDir)/server/db")
                let started = try await Self.systemctl(server, "start")
                #expect(started.status == 0, "\(server.name): \(started.output)")
            }
            let after = try await Self.members(servers[2])
            #expect(after.cluster == alone.cluster && after.members.count == 3 && after.members.allSatisfy { !$0.name.isEmpty }, "\(after)")

            // The API read the restored datastore back: the snapshot's objects, not the later one.
            let reloaded = try await HostTests.eventually(timeoutSeconds: 90) {
                try await Self.kubectl(runner, ["get", "configmap", "after"]).output.contains("NotFound")
            }
            #expect(reloaded, "the object written after the snapshot is gone")
            #expect(try await Self.kubectl(runner, ["get", "configmap", "before", "with-quorum"]).status == 0)
            let datastore = try await Self.kubectl(runner, ["get", "--raw", "/sandbox/v1/datastore"])
            #expect((try? JSON.parse(datastore.output))?["reloads"]?.int ?? 0 >= 1, "\(datastore.output)")
            #expect(try await Self.createEventually(runner, "after-restore").status == 0)
            let ready = try await HostTests.eventually(timeoutSeconds: 90) {
                let nodes = try await Self.kubectl(runner, ["get", "nodes", "--no-headers"]).output
                return nodes.split(separator: "\n").count == 3 && nodes.split(separator: "\n").allSatisfy { $0.contains(" Ready ") }
            }
            #expect(ready, "the servers heartbeat into the restored cluster")
        }
    }

    @Test func anEtcdMemberDiesWithItsK3sAndAResetWithoutASnapshotKeepsTheData() async throws {
        try await HostTests.withSandbox(ClusterSpec(servers: 2, agents: 0, volumes: 0, replicas: 1), timings: ModelTimings()) { runner in
            let server = runner.manifest.nodes[1]
            #expect(try await Self.etcdctl(server, ["put", "/upkeep-test/kept", "yes"]).status == 0)
            let etcd = try #require(Self.etcdPID(server))
            let k3s = SystemctlStandIn.currentState(server).mainPID
            kill(k3s, SIGKILL)
            let gone = try await HostTests.eventually(timeoutSeconds: 60) { !Spawn.isAlive(etcd) }
            #expect(gone, "the member \(etcd) of a SIGKILLed k3s \(k3s) stops with it")

            // Both stopped: server-2 resets membership to a cluster of itself, its data kept.
            for node in runner.manifest.nodes { #expect(try await Self.systemctl(node, "stop").status == 0) }
            let reset = try await ProcessRun.run(server.k3sBinary, ["server", "--cluster-reset"], timeoutSeconds: 120)
            #expect(reset.status == 0 && reset.output.contains(FakeK3s.resetLine), "\(reset.output)")
            #expect(try await Self.systemctl(server, "start").status == 0)
            let (_, members) = try await Self.members(server)
            #expect(members.count == 1 && members[0].name.hasPrefix("server-2-"), "\(members)")
            let kept = try await Self.etcdctl(server, ["get", "/upkeep-test/kept", "--print-value-only"])
            #expect(kept.output == "yes\n", "\(kept.output)")
        }
    }

    @Test func aSingleSQLiteServerKeepsTheObjectsInKineAndIsRestoredByPuttingStateDBAndTokenBack() async throws {
        try await HostTests.withSandbox(ClusterSpec(servers: 1, agents: 0, volumes: 0, replicas: 1), timings: ModelTimings()) { runner in
            let server = runner.manifest.nodes[0]
            let db = "\(server.dataDir)/server/db"
            #expect(server.datastore == "sqlite" && FileManager.default.fileExists(atPath: "\(db)/state.db"))
            #expect(!FileManager.default.fileExists(atPath: "\(db)/etcd"), "no etcd directory: the agent backs up SQLite")
            let save = try await ProcessRun.run(server.k3sBinary, ["etcd-snapshot", "save"], timeoutSeconds: 60)
            #expect(save.status != 0 && save.output.contains("etcd datastore disabled"), "\(save.output)")

            #expect(try await Self.kubectl(runner, ["create", "configmap", "before", "--from-literal=k=v"]).status == 0)
            let row = try await ProcessRun.run("sqlite3", ["\(db)/state.db", "SELECT MAX(id) FROM kine WHERE name = '/registry/configmaps/default/before'"],
                                               timeoutSeconds: 20)
            let reported = try await Self.kubectl(runner, ["get", "configmap", "before", "-o", "jsonpath={.metadata.resourceVersion}"])
            #expect(!reported.output.isEmpty && reported.output + "\n" == row.output, "API \(reported.output), kine row \(row.output)")

            // The backup k3s documents for SQLite, k3s stopped: the database and the token.
            #expect(try await Self.systemctl(server, "stop").status == 0)
            let reset = try await ProcessRun.run(server.k3sBinary, ["server", "--cluster-reset"], timeoutSeconds: 60)
            #expect(reset.status != 0 && reset.output.contains("requires embedded etcd"), "\(reset.output)")
            let backup = runner.manifest.directory + "/backup"
            try FileManager.default.createDirectory(atPath: backup, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: "\(db)/state.db", toPath: "\(backup)/state.db")
            try FileManager.default.copyItem(atPath: "\(server.dataDir)/server/token", toPath: "\(backup)/token")
            #expect(try await Self.systemctl(server, "start").status == 0)
            #expect(try await Self.createEventually(runner, "after").status == 0)

            #expect(try await Self.systemctl(server, "stop").status == 0)
            for suffix in ["", "-wal", "-shm"] { unlink("\(db)/state.db\(suffix)") }
            unlink("\(server.dataDir)/server/token")
            try FileManager.default.copyItem(atPath: "\(backup)/state.db", toPath: "\(db)/state.db")
            try FileManager.default.copyItem(atPath: "\(backup)/token", toPath: "\(server.dataDir)/server/token")
            #expect(try await Self.systemctl(server, "start").status == 0)
            let reloaded = try await HostTests.eventually(timeoutSeconds: 90) {
                try await Self.kubectl(runner, ["get", "configmap", "after"]).output.contains("NotFound")
            }
            #expect(reloaded, "the object written after the backup is gone")
            #expect(try await Self.kubectl(runner, ["get", "configmap", "before"]).status == 0)
            #expect(try await Self.createEventually(runner, "after-restore").status == 0)
        }
    }
}
