import Foundation
import NIOPosix
import Testing
import UpkeepAgent
import UpkeepAgentCore
import UpkeepTestSupport

/// `etcdHealth` against a real three-member etcd cluster (Debian's etcd 3.4) on 127.0.0.1, with
/// `etcdctl endpoint health --cluster` as the second witness; and the verdict alone.
@Suite(.serialized) struct EtcdHealthTests {
    /// Three members started as one new cluster; each stopped (SIGKILL, after SIGCONT) at the end.
    final class Cluster {
        let directory: TemporaryDirectory
        let clientURLs: [String]
        let processes: [Process]

        init() throws {
            directory = try TemporaryDirectory()
            var ports: [(client: Int, peer: Int)] = []
            for _ in 0..<3 { ports.append((try unusedLoopbackPort(), try unusedLoopbackPort())) }
            clientURLs = ports.map { "http://127.0.0.1:\($0.client)" }
            let names = ["server-1-0a1b2c3d", "server-2-4e5f6a7b", "server-3-8c9d0e1f"]
            let initial = zip(names, ports).map { "\($0.0)=http://127.0.0.1:\($0.1.peer)" }.joined(separator: ",")
            var started: [Process] = []
            for (index, name) in names.enumerated() {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: "/usr/bin/etcd")
                process.arguments = ["--name", name, "--data-dir", directory.file(name),
                                     "--listen-client-urls", clientURLs[index], "--advertise-client-urls", clientURLs[index],
                                     "--listen-peer-urls", "http://127.0.0.1:\(ports[index].peer)",
                                     "--initial-advertise-peer-urls", "http://127.0.0.1:\(ports[index].peer)",
                                     "--initial-cluster", initial, "--initial-cluster-state", "new", "--initial-cluster-token", "upkeep-test"]
                process.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("ETCD") }
                process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
                process.standardError = FileHandle(forWritingAtPath: "/dev/null")
                try process.run()
                started.append(process)
            }
            processes = started
        }

        func signal(_ member: Int, _ signal: Int32) { kill(processes[member].processIdentifier, signal) }

        func stop() {
            for process in processes where process.isRunning {
                kill(process.processIdentifier, SIGCONT)
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
            }
        }

        /// `etcdctl endpoint health --cluster` through member 1: the members it calls healthy.
        func etcdctlHealthy() throws -> Int {
            let result = try runProcess("/usr/bin/env", ["ETCDCTL_API=3", "/usr/bin/etcdctl", "--endpoints", clientURLs[0],
                                                         "--command-timeout=2s", "endpoint", "health", "--cluster", "-w", "json"], timeoutSeconds: 30)
            let entries = (try? JSONSerialization.jsonObject(with: Data(result.output.utf8))) as? [[String: Any]] ?? []
            return entries.filter { $0["health"] as? Bool == true }.count
        }
    }

    @Test func everyMemberIsAskedAndAFrozenOneIsNotHealthy() async throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/etcd") else {
            Issue.record("etcd is not installed (scripts/install-deps installs etcd-server and etcd-client)")
            return
        }
        let cluster = try Cluster()
        defer { cluster.stop() }
        var config = EtcdConfig()
        config.endpoint = cluster.clientURLs[0]
        let reader = EtcdHealthReader(config: config, k3sDataDir: cluster.directory.path, group: MultiThreadedEventLoopGroup.singleton)

        // Until the cluster has formed (a leader elected), members answer unhealthy.
        var read = try? await reader.read(timeoutSeconds: 2)
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline, read.map({ $0.members.filter(\.healthy).count < 3 }) ?? true {
            try await Task.sleep(for: .milliseconds(200))
            read = try? await reader.read(timeoutSeconds: 2)
        }
        let healthy = try #require(read)
        #expect(Set(healthy.members.map(\.name)) == ["server-1-0a1b2c3d", "server-2-4e5f6a7b", "server-3-8c9d0e1f"])
        #expect(healthy.members.count == 3 && healthy.members.allSatisfy(\.healthy) && healthy.quorum, "\(healthy)")
        #expect(healthy.members.allSatisfy { $0.id.allSatisfy(\.isHexDigit) && $0.message == "health true" })
        #expect(try cluster.etcdctlHealthy() == 3)

        // Member 3 frozen: it takes connections and answers nothing.
        cluster.signal(2, SIGSTOP)
        // When it was the leader, the other two answer unhealthy until they elect one: asked
        // again (bounded) until they do; the frozen one never answers.
        var frozen = try await reader.read(timeoutSeconds: 3)
        let electedBy = Date().addingTimeInterval(20)
        while Date() < electedBy, frozen.members.filter(\.healthy).count < 2 {
            try await Task.sleep(for: .milliseconds(300))
            frozen = try await reader.read(timeoutSeconds: 3)
        }
        let third = try #require(frozen.members.first { $0.name == "server-3-8c9d0e1f" })
        #expect(!third.healthy && third.message == "no answer within 3 s", "\(third)")
        #expect(frozen.members.filter(\.healthy).count == 2 && frozen.quorum, "\(frozen)")
        #expect(try cluster.etcdctlHealthy() == 2, "etcdctl agrees")
        cluster.signal(2, SIGCONT)
    }

    @Test func theVerdictNeedsAHealthyAnswerAndMoreThanHalf() {
        let members = [EtcdHealthVerdict.Member(id: "10276657743932975437", name: "server-1-0a1b2c3d", clientURLs: ["https://10.0.0.1:2379"]),
                       EtcdHealthVerdict.Member(id: "2", name: "server-2-0a1b2c3d", clientURLs: ["https://10.0.0.2:2379"]),
                       EtcdHealthVerdict.Member(id: "3", name: "", clientURLs: [])]
        let judged = EtcdHealthVerdict.judge(members, answers: [
            "10276657743932975437": .answered(status: 200, health: "true", reason: ""),
            "2": .answered(status: 503, health: "false", reason: "RAFT NO LEADER"),
        ])
        #expect(judged.members.map(\.healthy) == [true, false, false])
        #expect(judged.members[0].id == "8e9e05c52164694d")
        #expect(judged.members[1].message == "answered 503: health false (RAFT NO LEADER)")
        #expect(judged.members[2].message == "not started: the member has no client URL yet")
        #expect(!judged.quorum, "1 of 3 is no quorum")
        #expect(EtcdHealthVerdict.judge([], answers: [:]).quorum == false)
    }
}
