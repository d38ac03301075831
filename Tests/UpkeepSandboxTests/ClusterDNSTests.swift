import Foundation
import NIOConcurrencyHelpers
import NIOPosix
import Testing
import UpkeepKube
import UpkeepProcess
import UpkeepTestSupport
@testable import UpkeepSandbox

/// The sandbox's Services and its cluster DNS: kubectl sees `default/kubernetes` and
/// `kube-system/kube-dns` at k3s's addresses, and a node's path to the cluster DNS answers over a
/// real UDP socket as CoreDNS and kube-proxy would, judged by a client written apart from the
/// project's codec (Python's `struct`, RFC 1035 by hand): the Service's clusterIP, NXDOMAIN in
/// the cluster domain, SERVFAIL outside it, and silence while CoreDNS has no Ready pod or the
/// node's path is broken.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct ClusterDNSTests {
    static let spec = ClusterSpec(servers: 1, agents: 1, volumes: 0)

    /// One A query for NAME to HOST:PORT; prints `RCODE addresses` or `TIMEOUT` after 1 s.
    static let client = #"""
        import socket, struct, sys
        host, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
        query = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
        for label in name.split("."):
            query += bytes([len(label)]) + label.encode()
        query += b"\x00" + struct.pack(">HH", 1, 1)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(1)
        s.sendto(query, (host, port))
        try:
            data = s.recv(512)
        except socket.timeout:
            print("TIMEOUT")
            sys.exit(0)
        qid, flags, qd, an = struct.unpack(">HHHH", data[:8])
        assert qid == 0x1234 and flags & 0x8000
        codes = {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN"}
        end = 12
        while data[end] != 0:
            end += 1 + data[end]
        offset = end + 5
        addresses = []
        for _ in range(an):
            offset += 2 if data[offset] & 0xC0 == 0xC0 else 0
            rtype, rclass, ttl, length = struct.unpack(">HHIH", data[offset:offset + 10])
            offset += 10
            if rtype == 1:
                addresses.append(".".join(str(b) for b in data[offset:offset + 4]))
            offset += length
        print(codes.get(flags & 0xF, str(flags & 0xF)), ",".join(addresses))
        """#

    static func ask(_ port: Int, _ name: String) async throws -> String {
        let outcome = try await ProcessRun.run("/usr/bin/python3", ["-c", client, "127.0.0.1", "\(port)", name], timeoutSeconds: 30)
        try #require(outcome.status == 0, "the DNS client failed: \(outcome.output)")
        return outcome.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Asks until the answer is `expected` (the model reacts within a tick or two), at most 60 s.
    static func waitFor(_ expected: String, _ port: Int, _ name: String) async throws -> Bool {
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            if try await ask(port, name) == expected { return true }
            try await Task.sleep(for: .milliseconds(200))
        }
        return false
    }

    static func scaleCoreDNS(_ api: APIHarness, to replicas: Int) async throws {
        let patched = try await api.kubectl("-n", "kube-system", "patch", "deployment", "coredns", "--type", "merge",
                                            "-p", #"{"spec":{"replicas":\#(replicas)}}"#)
        try #require(patched.status == 0, "\(patched.output)")
    }

    @Test func kubectlListsTheServicesAtK3sAddresses() async throws {
        let api = try await APIHarness(spec: Self.spec)
        defer { Task { await api.close() } }
        let listed = try await api.kubectl("get", "svc", "-A", "-o", "wide")
        #expect(listed.status == 0, "\(listed.output)")
        let lines = listed.output.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
        #expect(lines.first == ["NAMESPACE", "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"], "\(listed.output)")
        let api443 = lines.first { $0.count > 1 && $0[1] == "kubernetes" }
        #expect(api443.map { [$0[0], $0[2], $0[3], $0[5]] } == ["default", "ClusterIP", "10.43.0.1", "443/TCP"], "\(listed.output)")
        let dns = lines.first { $0.count > 1 && $0[1] == "kube-dns" }
        #expect(dns.map { [$0[0], $0[3], $0[5], $0.last ?? ""] } == ["kube-system", "10.43.0.10", "53/UDP,53/TCP,9153/TCP", "k8s-app=kube-dns"],
                "\(listed.output)")
        let clusterIP = try await api.kubectl("-n", "default", "get", "service", "kubernetes", "-o", "jsonpath={.spec.clusterIP}")
        #expect(clusterIP.output == "10.43.0.1", "\(clusterIP.output)")
    }

    @Test func aNodesPathAnswersAsCoreDNSAndFallsSilentWithoutEndpointsOrWhenBroken() async throws {
        let api = try await APIHarness(spec: Self.spec)
        defer { Task { await api.close() } }
        let port = try unusedLoopbackPort()
        let node = SandboxNode(name: "agent-1", role: "agent", address: "127.0.0.1", root: api.directory, netns: nil, apiURL: api.baseURL,
                               faultsFile: "\(api.directory)/faults.json", hostBinary: "/nonexistent", datastore: "sqlite",
                               clusterDNS: "127.0.0.1:\(port)")
        let lines = NIOLockedValueBox<[String]>([])
        let dns = try await SandboxClusterDNS.start(nodes: [node], cluster: api.cluster, log: ThrottledLog(write: { line in lines.withLockedValue { $0.append(line) } }),
                                                    group: MultiThreadedEventLoopGroup.singleton)
        defer { Task { await dns.close() } }
        let name = "kubernetes.default.svc.cluster.local"
        // CoreDNS's pod turns Ready shortly after the cluster starts.
        #expect(try await Self.waitFor("NOERROR 10.43.0.1", port, name))
        #expect(try await Self.ask(port, "KUBE-DNS.kube-system.svc.cluster.local") == "NOERROR 10.43.0.10")
        #expect(try await Self.ask(port, "absent.default.svc.cluster.local") == "NXDOMAIN")
        #expect(try await Self.ask(port, "kubernetes.default.pod.cluster.local") == "NXDOMAIN")
        #expect(try await Self.ask(port, "example.com") == "SERVFAIL")

        // The node's path broken: silence for it alone.
        api.cluster.withModel { $0.clusterDNSBroken = ["agent-1"] }
        #expect(try await Self.ask(port, name) == "TIMEOUT")
        api.cluster.withModel { $0.clusterDNSBroken = [] }
        #expect(try await Self.ask(port, name) == "NOERROR 10.43.0.1")

        // CoreDNS scaled to zero with kubectl: no ready endpoint, kube-proxy rejects, no answer.
        try await Self.scaleCoreDNS(api, to: 0)
        #expect(try await Self.waitFor("TIMEOUT", port, name))
        try await Self.scaleCoreDNS(api, to: 1)
        #expect(try await Self.waitFor("NOERROR 10.43.0.1", port, name))

        let counts = api.cluster.withModel { $0.summary()[path: "clusterDNS", "queries"] }
        #expect((counts?["answered"]?.int ?? 0) >= 6 && (counts?["path_broken"]?.int ?? 0) == 1 && (counts?["no_endpoints"]?.int ?? 0) >= 1,
                "\(String(describing: counts))")
        #expect(lines.withLockedValue { $0 }.isEmpty)
    }
}
