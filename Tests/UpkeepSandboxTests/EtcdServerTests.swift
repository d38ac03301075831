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

    static func etcdPID(_ node: SandboxNode) -> pid_t? {
        (try? String(contentsOfFile: node.etcdPIDFile, encoding: .utf8)).flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    @Test func threeServersFormOneEtcdClusterAndASnapshotRestoresAsK3sDocuments() async throws {
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

            #expect(try await Self.etcdctl(servers[1], ["put", "/upkeep-test/before", "1"]).status == 0)
            let save = try await ProcessRun.run(servers[0].k3sBinary, ["etcd-snapshot", "save", "--name", "pre-restore"], timeoutSeconds: 120)
            #expect(save.status == 0, "\(save.output)")
            let snapshots = try FileManager.default.contentsOfDirectory(atPath: servers[0].snapshotDir)
            let snapshot = try #require(snapshots.first { $0.range(of: #"^pre-restore-server-1-\d{10}$"#, options: .regularExpression) != nil },
                                        "\(snapshots)")
            let path = "\(servers[0].snapshotDir)/\(snapshot)"
            let status = try await EtcdMember.etcdctl(["snapshot", "status", path, "-w", "json"])
            #expect(status.status == 0, "a real etcd snapshot: \(status.output)")
            #expect(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int == 0o600)
            #expect(try await Self.etcdctl(servers[2], ["put", "/upkeep-test/after", "2"]).status == 0)

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
            let before = try await Self.etcdctl(servers[1], ["get", "/upkeep-test/before", "--print-value-only"])
            #expect(before.output == "1\n", "the snapshot's key: \(before.output)")
            let later = try await Self.etcdctl(servers[1], ["get", "/upkeep-test/after", "--print-value-only"])
            #expect(later.status == 0 && later.output.isEmpty, "written after the snapshot, gone: \(later.output)")
        }
    }

    @Test func anEtcdMemberDiesWithItsK3sAndAResetWithoutASnapshotKeepsTheData() async throws {
        try await HostTests.withSandbox(ClusterSpec(servers: 2, agents: 0, volumes: 0, replicas: 1), timings: ModelTimings()) { runner in
            let server = runner.manifest.nodes[1]
            #expect(try await Self.etcdctl(server, ["put", "/upkeep-test/kept", "yes"]).status == 0)
            let etcd = try #require(Self.etcdPID(server))
            let k3s = SystemctlStandIn.currentState(server).mainPID
            kill(k3s, SIGKILL)
            let gone = try await HostTests.eventually(timeoutSeconds: 15) { !Spawn.isAlive(etcd) }
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

    @Test func aSingleSQLiteServerRefusesEtcdSnapshotsAndClusterResetsAsK3sDoes() async throws {
        try await HostTests.withSandbox(ClusterSpec(servers: 1, agents: 0, volumes: 0, replicas: 1), timings: ModelTimings()) { runner in
            let server = runner.manifest.nodes[0]
            #expect(server.datastore == "sqlite" && FileManager.default.fileExists(atPath: "\(server.dataDir)/server/db/state.db"))
            #expect(!FileManager.default.fileExists(atPath: "\(server.dataDir)/server/db/etcd"), "no etcd directory: the agent backs up SQLite")
            let save = try await ProcessRun.run(server.k3sBinary, ["etcd-snapshot", "save"], timeoutSeconds: 60)
            #expect(save.status != 0 && save.output.contains("etcd datastore disabled"), "\(save.output)")
            #expect(try await Self.systemctl(server, "stop").status == 0)
            let reset = try await ProcessRun.run(server.k3sBinary, ["server", "--cluster-reset"], timeoutSeconds: 60)
            #expect(reset.status != 0 && reset.output.contains("requires embedded etcd"), "\(reset.output)")
        }
    }
}
