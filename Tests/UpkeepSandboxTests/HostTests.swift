import Foundation
import Testing
import UpkeepKube
@testable import UpkeepSandbox

/// Real processes: the fake k3s and the systemctl stand-in running sandbox nodes.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct HostTests {
    static var hostBinary: String {
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return SandboxRunner.hostBinaryNextTo(executable: executable)
    }

    static func directory() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("upkeep-sbx-\(UUID().uuidString.prefix(8))").path
    }

    @Test func fakeK3sVersionPrintsTheRealTwoLineFormat() async throws {
        let directory = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let script = "\(directory)/k3s"
        try JSONFiles.atomicWrite(Data(FakeK3s.script(version: "v1.31.4+k3s1", hostBinary: Self.hostBinary).utf8), to: script, mode: 0o755)
        let outcome = try await ProcessRun.run(script, ["--version"], timeoutSeconds: 20)
        #expect(outcome.status == 0)
        let lines = outcome.output.split(separator: "\n").map(String.init)
        #expect(lines.count == 2)
        // Parsed as the agent parses the real one: the third word of line 1.
        #expect(lines[0].split(separator: " ").map(String.init).prefix(3) == ["k3s", "version", "v1.31.4+k3s1"])
        #expect(lines[0].range(of: #"^k3s version v1\.31\.4\+k3s1 \([0-9a-f]{8}\)$"#, options: .regularExpression) != nil, "\(lines[0])")
        #expect(lines[1].hasPrefix("go version go1."))
        let bad = try await ProcessRun.run(script, ["frobnicate"], timeoutSeconds: 20)
        #expect(bad.status != 0 && bad.output.contains("Incorrect Usage"))
    }

    @Test(.disabled("WIP: hangs after the restart step (see the branch commit message)"))
    func replacingTheBinaryChangesTheVersionTheAPIReportsAfterARestart() async throws {
        let directory = Self.directory()
        let runner = try await SandboxRunner.start(SandboxOptions(
            directory: directory, spec: ClusterSpec(servers: 1, agents: 1, volumes: 2, replicas: 2), hostBinary: Self.hostBinary,
            timings: ModelTimings(nodeGraceSeconds: 6, podStartSeconds: 0.5), readyTimeoutSeconds: 60))
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let agent = try #require(runner.manifest.nodes.first { !$0.isServer })
        let server = try #require(runner.manifest.nodes.first { $0.isServer })

        // systemd's view through the stand-in, exactly as the agent asks for it.
        let active = try await ProcessRun.run(agent.systemctl, ["is-active", "k3s-agent"], timeoutSeconds: 20)
        #expect(active.status == 0 && active.output == "active\n")
        let show = try await ProcessRun.run(agent.systemctl, ["show", "-p", "ActiveState,SubState,MainPID,ExecMainStartTimestamp", "k3s-agent"],
                                            timeoutSeconds: 20)
        let properties = show.output.split(separator: "\n").map(String.init)
        #expect(properties.count == 4 && properties[0] == "ActiveState=active" && properties[1] == "SubState=running", "\(show.output)")
        #expect(properties[2].hasPrefix("MainPID=") && Int(properties[2].dropFirst(8)) ?? 0 > 0)
        #expect(properties[3].range(of: #"^ExecMainStartTimestamp=\w{3} \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$"#, options: .regularExpression) != nil)
        let wrongUnit = try await ProcessRun.run(agent.systemctl, ["restart", "k3s"], timeoutSeconds: 20)
        #expect(wrongUnit.status == 5 && wrongUnit.output.contains("Unit k3s.service not found."))

        // Health endpoints on the node's own address.
        let healthz = try await ProcessRun.run("curl", ["-sS", "--max-time", "5", agent.kubeletHealthzURL], timeoutSeconds: 20)
        #expect(healthz.output == "ok", "\(healthz.output)")
        let ping = try await ProcessRun.run("curl", ["-sS", "--max-time", "5", "--cacert", server.serverCAFile, server.supervisorPingURL],
                                            timeoutSeconds: 20)
        #expect(ping.output == "pong", "\(ping.output)")

        // The upgrade: a new file in place of the binary, then a restart through systemctl.
        let client = try KubeClient(kubeconfig: runner.manifest.kubeconfig)
        #expect(try await client.get(Node.self, agent.name).kubeletVersion == "v1.30.6+k3s1")
        try JSONFiles.atomicWrite(Data(FakeK3s.script(version: "v1.31.2+k3s1", hostBinary: Self.hostBinary).utf8), to: agent.k3sBinary, mode: 0o755)
        let restart = try await ProcessRun.run(agent.systemctl, ["restart", "k3s-agent"], timeoutSeconds: 60)
        #expect(restart.status == 0, "\(restart.output)")
        var version = ""
        for _ in 0..<100 {
            version = try await client.get(Node.self, agent.name).kubeletVersion
            if version == "v1.31.2+k3s1" { break }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        #expect(version == "v1.31.2+k3s1")
        let restarted = try await ProcessRun.run(agent.systemctl, ["show", "-p", "MainPID", "k3s-agent"], timeoutSeconds: 20)
        #expect(restarted.output != properties[2] + "\n", "a new main process")

        // A stopped k3s: inactive for systemd, NotReady for the API after the grace period.
        let stop = try await ProcessRun.run(agent.systemctl, ["stop", "k3s-agent"], timeoutSeconds: 60)
        #expect(stop.status == 0)
        let inactive = try await ProcessRun.run(agent.systemctl, ["is-active", "k3s-agent"], timeoutSeconds: 20)
        #expect(inactive.status == 3 && inactive.output == "inactive\n")
        var ready = true
        for _ in 0..<150 {
            ready = try await client.get(Node.self, agent.name).isReady
            if !ready { break }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        #expect(!ready, "NotReady after the grace period")
        await client.shutdown()
        await runner.stop()
        let leftovers = runner.manifest.nodes.map { SystemctlStandIn.currentState($0) }.filter { $0.activeState != "inactive" }
        #expect(leftovers.isEmpty)
        #expect(!FileManager.default.fileExists(atPath: SandboxManifest.path(in: directory)))
    }

    @Test(.disabled("WIP: not yet run green"))
    func faultsSnapshotsAndClusterReset() async throws {
        let directory = Self.directory()
        let runner = try await SandboxRunner.start(SandboxOptions(
            directory: directory, spec: ClusterSpec(servers: 2, agents: 0, volumes: 1, replicas: 2), hostBinary: Self.hostBinary,
            timings: ModelTimings(podStartSeconds: 0.5), readyTimeoutSeconds: 60))
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let server = runner.manifest.nodes[1]
        #expect(server.datastore == "etcd")

        // etcd-snapshot save names the file as real k3s does.
        let save = try await ProcessRun.run(server.k3sBinary, ["etcd-snapshot", "save", "--name", "pre-upgrade", "--dir", "\(directory)/snaps"],
                                            timeoutSeconds: 30)
        #expect(save.status == 0, "\(save.output)")
        let files = try FileManager.default.contentsOfDirectory(atPath: "\(directory)/snaps")
        #expect(files.count == 1 && files[0].range(of: #"^pre-upgrade-server-2-\d{10}$"#, options: .regularExpression) != nil, "\(files)")

        // A version that exits at start: systemctl start fails, the unit keeps auto-restarting.
        var faults = SandboxFaults.load(runner.manifest.faultsFile)
        faults.versions["v1.31.2+k3s1"] = K3sFault(exitAtStart: true)
        try JSONFiles.write(faults, to: runner.manifest.faultsFile)
        try JSONFiles.atomicWrite(Data(FakeK3s.script(version: "v1.31.2+k3s1", hostBinary: Self.hostBinary).utf8), to: server.k3sBinary, mode: 0o755)
        let failed = try await ProcessRun.run(server.systemctl, ["restart", "k3s"], timeoutSeconds: 60)
        #expect(failed.status == 1 && failed.output.contains("Job for k3s.service failed"), "\(failed.output)")
        let state = try await ProcessRun.run(server.systemctl, ["show", "-p", "ActiveState,SubState", "k3s"], timeoutSeconds: 20)
        #expect(state.output == "ActiveState=activating\nSubState=auto-restart\n", "\(state.output)")
        let log = try String(contentsOfFile: server.logFile, encoding: .utf8)
        #expect(log.contains("level=fatal"))

        // Stopped, the server can be reset from the snapshot.
        #expect(try await ProcessRun.run(server.systemctl, ["stop", "k3s"], timeoutSeconds: 60).status == 0)
        let reset = try await ProcessRun.run(server.k3sBinary, ["server", "--cluster-reset", "--cluster-reset-restore-path=\(directory)/snaps/\(files[0])"],
                                             timeoutSeconds: 30)
        #expect(reset.status == 0, "\(reset.output)")
        #expect(reset.output.contains("Managed etcd cluster membership has been reset, restart without --cluster-reset flag now."))
        let missing = try await ProcessRun.run(server.k3sBinary, ["server", "--cluster-reset", "--cluster-reset-restore-path=/nonexistent"],
                                               timeoutSeconds: 30)
        #expect(missing.status != 0)
        await runner.stop()
    }
}
