import Foundation
import NIOPosix
import Testing
import UpkeepAgent
import UpkeepAgentCore
import UpkeepTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// The supervisor `/ping` check over HTTPS against the real `openssl s_server -WWW`, with a
/// serving certificate for 127.0.0.1 from a throwaway CA, as k3s serves :6443.
@Suite(.serialized) struct SupervisorProbeTests {
    @Test func supervisorPingPassesWithTheServerCAAndFailsWithAnother() async throws {
        let directory = try TemporaryDirectory()
        func openSSL(_ arguments: [String]) throws {
            let result = try openssl(arguments)
            try #require(result.status == 0, "openssl \(arguments.first ?? ""): \(result.error)")
        }
        for name in ["ca", "other-ca"] {
            try openSSL(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
                         "-subj", "/CN=k3s-server-ca", "-keyout", directory.file("\(name).key"), "-out", directory.file("\(name).crt")])
        }
        try openSSL(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=k3s",
                     "-keyout", directory.file("server.key"), "-out", directory.file("server.csr")])
        _ = try directory.write("subjectAltName=IP:127.0.0.1\n", to: "san.ext")
        try openSSL(["x509", "-req", "-in", directory.file("server.csr"), "-CA", directory.file("ca.crt"), "-CAkey", directory.file("ca.key"),
                     "-CAcreateserial", "-days", "1", "-extfile", directory.file("san.ext"), "-out", directory.file("server.crt")])
        _ = try directory.write("pong", to: "ping")
        // Port 0: s_server picks a free port and prints "ACCEPT 127.0.0.1:<port>" (no race for a port).
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        server.arguments = ["openssl", "s_server", "-accept", "127.0.0.1:0", "-cert", directory.file("server.crt"),
                            "-key", directory.file("server.key"), "-WWW"]
        server.currentDirectoryURL = URL(fileURLWithPath: directory.path)
        let output = Pipe()
        server.standardOutput = output
        server.standardError = FileHandle.nullDevice
        try server.run()
        // SIGKILL: a child started from a test thread inherits a signal mask that blocks SIGTERM.
        defer {
            kill(server.processIdentifier, SIGKILL)
            server.waitUntilExit()
        }
        var printed = ""
        while !printed.contains("ACCEPT") || !printed.hasSuffix("\n") {
            let piece = output.fileHandleForReading.availableData
            if piece.isEmpty { break }
            printed += String(decoding: piece, as: UTF8.self)
        }
        let port = try #require(printed.split(separator: "\n").first { $0.hasPrefix("ACCEPT") }?.split(separator: ":").last.flatMap { Int($0) },
                                "s_server printed: \(printed)")
        // Keep draining its stdout so it never blocks on a full pipe.
        let drain = output.fileHandleForReading
        Thread.detachNewThread { while !drain.availableData.isEmpty {} }

        func probe(ca: String) async throws -> ProbeReport.Check {
            var config = ProbeConfig()
            config.kubeletHealthzURL = ""
            config.containerdSocket = ""
            config.nodeReady = false
            config.supervisorPingURL = "https://127.0.0.1:\(port)/ping"
            config.supervisorCAFile = directory.file(ca)
            config.timeoutMs = 20_000  // correctness, not speed: the full suite loads both cores
            let systemctl = Systemctl(path: "/bin/true", unit: "k3s", timeoutSeconds: 5)
            let probes = HealthProbes(config: config, nodeName: "n1", isServer: true, systemctl: systemctl,
                                      group: MultiThreadedEventLoopGroup.singleton, readiness: nil)
            let report = await probes.run(expectedK3sVersion: nil)
            return try #require(report.checks.first { $0.name == "supervisor" })
        }
        #expect(await waitUntil(seconds: 10) { (try? await probe(ca: "ca.crt").ok) == true })
        let good = try await probe(ca: "ca.crt")
        #expect(good.ok, "\(good.message)")
        #expect(good.message.hasSuffix("answered pong"), "\(good.message)")
        let refused = try await probe(ca: "other-ca.crt")
        #expect(!refused.ok, "a serving certificate from another CA must fail the check")
        let missing = try await probe(ca: "absent.crt")
        #expect(!missing.ok && missing.message.contains("cannot load the k3s server CA"))
        // Agents (k3s-agent) have no supervisor check.
        let agentProbes = HealthProbes(config: ProbeConfig(), nodeName: "n1", isServer: false,
                                       systemctl: Systemctl(path: "/bin/true", unit: "k3s-agent", timeoutSeconds: 5),
                                       group: MultiThreadedEventLoopGroup.singleton, readiness: nil)
        #expect(!(await agentProbes.run(expectedK3sVersion: nil).checks.contains { $0.name == "supervisor" }))
    }
}
