import Foundation
import NIOCore
import NIOPosix
import Testing
import UpkeepCore
import UpkeepKube
import UpkeepProcess
@testable import UpkeepSandbox
import UpkeepPOSIX

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

    /// The cause of the old hang: a unit supervisor started by `systemctl restart` inherited the
    /// caller's descriptors (Foundation's per-process socket), so the caller waited for it forever.
    @Test func detachedProcessesInheritNoDescriptorsButTheirOwnThree() async throws {
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0)
        defer { close(ends[0]); close(ends[1]) }
        let log = Self.directory() + ".log"
        defer { unlink(log) }
        let pid = try Spawn.detached(["/bin/sleep", "30"], environment: [:], logFile: log)
        defer { Spawn.terminate(pid, graceSeconds: 5) }
        let descriptors = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").compactMap(Int.init).sorted()
        #expect(descriptors == [0, 1, 2], "the pipe \(ends) must not be inherited")
        // ProcessRun finishes when its child exits, whatever the child left running.
        let outcome = try await ProcessRun.run("/bin/sh", ["-c", "sleep 30 & echo $!"], timeoutSeconds: 20)
        let left = try #require(pid_t(outcome.output.trimmingCharacters(in: .whitespacesAndNewlines)), "\(outcome)")
        Spawn.terminate(left, graceSeconds: 5)
        #expect(outcome.status == 0 && !outcome.timedOut, "\(outcome)")
    }

    @Test func aSandboxSkipsLoopbackAddressesAnotherSandboxUses() async throws {
        let directory = Self.directory()
        let hashed = 16 + Int(StableHash.fnv1a(directory) % 200)
        let occupied = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.\(hashed).1.1", port: 10248).get()
        defer { occupied.close(promise: nil) }
        #expect(SandboxRunner.loopbackOctet(directory) != hashed)
        #expect(SandboxRunner.canBind(host: "127.\(hashed).1.2", port: 10248))
    }

    /// A `down` (SIGTERM) that reaches the sandbox process while it is still starting is kept,
    /// not lost: the process finishes its start, stops everything it started and exits 0. The
    /// signal goes as soon as the process has written its pid file, the first thing it does
    /// after it starts listening for signals (before that, SIGTERM's default action applies);
    /// a start takes far longer than that, so the signal lands in it. Fails when the listener is
    /// installed after the start (the process dies mid-start, its pid file and nodes left).
    /// The race inside `Signals.listen` itself is SignalsTests' to catch: this test sends too
    /// late for it.
    @Test func aSIGTERMDuringTheStartStopsTheSandboxOnceStartedAndLeavesNothingRunning() async throws {
        let directory = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try JSONFiles.write(SandboxOptions(directory: directory, spec: ClusterSpec(servers: 1, agents: 1, volumes: 0),
                                           hostBinary: Self.hostBinary, readyTimeoutSeconds: 60),
                            to: SandboxDaemon.optionsFile(directory))
        let pid = try Spawn.detached([Self.hostBinary, "serve", directory], environment: PosixSpawn.inheritedEnvironment(),
                                     logFile: SandboxDaemon.logFile(directory))
        var status: Int32?
        let startDeadline = Date().addingTimeInterval(30)
        while status == nil, !FileManager.default.fileExists(atPath: SandboxDaemon.pidFile(directory)), Date() < startDeadline {
            status = await ProcessRun.reap(pid, timeoutSeconds: 0)
            try await Task.sleep(nanoseconds: 1_000_000)
        }
        #expect(status == nil, "the sandbox process exited before it wrote its pid file:\n\(SandboxDaemon.logTail(directory))")
        #expect(FileManager.default.fileExists(atPath: SandboxDaemon.pidFile(directory)),
                "the sandbox process wrote no pid file within 30 s:\n\(SandboxDaemon.logTail(directory))")
        kill(pid, SIGTERM)
        if status == nil { status = await ProcessRun.reap(pid, timeoutSeconds: 120) }
        if status == nil {
            kill(pid, SIGKILL)
            _ = await ProcessRun.reap(pid, timeoutSeconds: 10)
        }
        let log = (try? String(contentsOfFile: SandboxDaemon.logFile(directory), encoding: .utf8)) ?? ""
        let exited = try #require(status, "the sandbox process did not exit within 120 s of SIGTERM (killed now):\n\(SandboxDaemon.logTail(directory))")
        #expect(WaitStatus(exited).shellCode == 0, "exit status \(WaitStatus(exited).shellCode):\n\(SandboxDaemon.logTail(directory))")
        #expect(log.contains("signal \(SIGTERM): stopping the sandbox") && log.hasSuffix("sandbox stopped\n"), "\(log)")
        #expect(log.contains("sandbox ready"), "the start was finished before stopping: \(log)")
        #expect(!FileManager.default.fileExists(atPath: SandboxDaemon.pidFile(directory))
                && !FileManager.default.fileExists(atPath: SandboxDaemon.stateFile(directory))
                && !FileManager.default.fileExists(atPath: SandboxManifest.path(in: directory)))
        let survivors = Self.processes(mentioning: directory)
        for survivor in survivors { kill(survivor, SIGKILL) }
        #expect(survivors.isEmpty, "still running after the sandbox process exited: \(survivors.sorted())")
    }

    /// Processes other than this one whose command line or environment contains `text` (the
    /// sandbox's directory: unit supervisors name their node's root, k3s has it in its environment).
    static func processes(mentioning text: String) -> [pid_t] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return names.compactMap(pid_t.init).filter { pid in
            pid != getpid() && ["cmdline", "environ"].contains { file in
                guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/\(file)") else { return false }
                return String(decoding: data, as: UTF8.self).contains(text)
            }
        }
    }

    /// Runs `body` against a fresh sandbox and always tears it down; then checks that every
    /// process the sandbox recorded (unit supervisors and k3s main processes) is gone.
    static func withSandbox(_ spec: ClusterSpec, timings: ModelTimings,
                            _ body: (SandboxRunner) async throws -> Void) async throws
    {
        let directory = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let runner = try await SandboxRunner.start(SandboxOptions(directory: directory, spec: spec, hostBinary: Self.hostBinary,
                                                                  timings: timings, readyTimeoutSeconds: 60))
        var recorded: Set<pid_t> = []
        func record() {
            for node in runner.manifest.nodes {
                let state = SystemctlStandIn.currentState(node)
                recorded.formUnion([state.supervisorPID, state.mainPID].filter { $0 > 0 })
                if let etcd = EtcdServerTests.etcdPID(node) { recorded.insert(etcd) }
            }
        }
        record()
        do {
            try await body(runner)
        } catch {
            await runner.stop()
            throw error
        }
        record()
        await runner.stop()
        #expect(!recorded.isEmpty)
        let survivors = recorded.filter { Spawn.isAlive($0) }
        #expect(survivors.isEmpty, "processes left after teardown: \(survivors.sorted())")
        let pgrep = try await ProcessRun.run("pgrep", ["-f", "unit-supervisor \(directory)"], timeoutSeconds: 20)
        #expect(pgrep.status == 1 && pgrep.output.isEmpty, "unit supervisors left: \(pgrep.output)")
        let units = runner.manifest.nodes.map { SystemctlStandIn.currentState($0).activeState }
        #expect(units.allSatisfy { $0 == "inactive" }, "\(units)")
        #expect(!FileManager.default.fileExists(atPath: SandboxManifest.path(in: directory)))
    }

    /// Polls `condition` every 100 ms until it holds or `timeoutSeconds` pass.
    static func eventually(timeoutSeconds: Double, _ condition: () async throws -> Bool) async throws -> Bool {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while Date() < deadline {
            if try await condition() { return true }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        return try await condition()
    }

    @Test func threeNodesComeUpRestartAtANewVersionTurnNotReadyOnAHealthFaultAndLeaveNothingBehind() async throws {
        try await Self.withSandbox(ClusterSpec(servers: 1, agents: 2, volumes: 2, replicas: 2),
                                   timings: ModelTimings(nodeGraceSeconds: 3, podStartSeconds: 0.5)) { runner in
            let manifest = runner.manifest
            let upgraded = try #require(manifest.nodes.first { $0.name == "agent-1" })
            let faulted = try #require(manifest.nodes.first { $0.name == "agent-2" })
            let server = try #require(manifest.nodes.first { $0.isServer })

            // The real kubectl, with the sandbox's client-certificate kubeconfig, sees three Ready nodes.
            let nodes = try await ProcessRun.run("kubectl", ["--kubeconfig", manifest.kubeconfig, "--cache-dir", "\(manifest.directory)/.kube-cache",
                                                             "get", "nodes", "--no-headers"], timeoutSeconds: 30)
            #expect(nodes.status == 0, "\(nodes.output)")
            let rows = nodes.output.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
            #expect(rows.map { $0.first ?? "" }.sorted() == ["agent-1", "agent-2", "server-1"], "\(nodes.output)")
            #expect(rows.allSatisfy { $0.count > 4 && $0[1] == "Ready" && $0[4] == "v1.30.6+k3s1" }, "\(nodes.output)")

            // systemd's view through the stand-in, exactly as the agent asks for it.
            let active = try await ProcessRun.run(upgraded.systemctl, ["is-active", "k3s-agent"], timeoutSeconds: 20)
            #expect(active.status == 0 && active.output == "active\n")
            let show = try await ProcessRun.run(upgraded.systemctl, ["show", "-p", "ActiveState,SubState,MainPID,ExecMainStartTimestamp", "k3s-agent"],
                                                timeoutSeconds: 20)
            let properties = show.output.split(separator: "\n").map(String.init)
            #expect(properties.count == 4 && properties[0] == "ActiveState=active" && properties[1] == "SubState=running", "\(show.output)")
            #expect(properties.count > 2 && properties[2].hasPrefix("MainPID=") && Int(properties[2].dropFirst(8)) ?? 0 > 0)
            #expect(properties.count > 3 && properties[3].range(of: #"^ExecMainStartTimestamp=\w{3} \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$"#,
                                                                options: .regularExpression) != nil)
            let wrongUnit = try await ProcessRun.run(upgraded.systemctl, ["restart", "k3s"], timeoutSeconds: 20)
            #expect(wrongUnit.status == 5 && wrongUnit.output.contains("Unit k3s.service not found."))

            // Health endpoints on the nodes' own addresses.
            let healthz = try await ProcessRun.run("curl", ["-sS", "--max-time", "5", upgraded.kubeletHealthzURL], timeoutSeconds: 20)
            #expect(healthz.output == "ok", "\(healthz.output)")
            let ping = try await ProcessRun.run("curl", ["-sS", "--max-time", "5", "--cacert", server.serverCAFile, server.supervisorPingURL],
                                                timeoutSeconds: 20)
            #expect(ping.output == "pong", "\(ping.output)")

            // The kubelet's API port: TLS with a certificate from the server CA, 401 without
            // credentials; closed by the kubelet-port fault (refused), open again once cleared.
            let kubeletAPI = "https://\(upgraded.address):\(SandboxNode.kubeletPort)/pods"
            func kubeletStatus() async throws -> ProcessRun.Outcome {
                try await ProcessRun.run("curl", ["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "--cacert", server.serverCAFile, kubeletAPI],
                                         timeoutSeconds: 20)
            }
            let unauthorized = try await kubeletStatus()
            #expect(unauthorized.status == 0 && unauthorized.output == "401", "\(unauthorized.output)")
            let closed = try await SandboxControl.setFault(directory: manifest.directory, node: upgraded.name, kind: "kubelet-port", value: nil,
                                                           version: nil, anyVersion: false)
            #expect(closed.contains("kubelet port 10250 of agent-1 is closed"), "\(closed)")
            let refused = try await kubeletStatus()
            #expect(refused.status == 7 && refused.output.contains("port 10250"), "curl exit 7, could not connect: \(refused.output)")
            _ = try await SandboxControl.setFault(directory: manifest.directory, node: upgraded.name, kind: "clear", value: nil, version: nil, anyVersion: false)
            let reopened = try await kubeletStatus()
            #expect(reopened.output == "401", "\(reopened.output)")

            // The upgrade: a new file in place of the binary, then a restart through systemctl,
            // which returns once the new k3s is up (Type=notify) even though it leaves a supervisor running.
            let client = try KubeClient(kubeconfig: manifest.kubeconfig)
            defer { Task { await client.shutdown() } }
            try JSONFiles.atomicWrite(Data(FakeK3s.script(version: "v1.31.2+k3s1", hostBinary: Self.hostBinary).utf8),
                                      to: upgraded.k3sBinary, mode: 0o755)
            let restart = try await ProcessRun.run(upgraded.systemctl, ["restart", "k3s-agent"], timeoutSeconds: 60)
            #expect(restart.status == 0 && !restart.timedOut, "\(restart.output)")
            let newVersion = try await Self.eventually(timeoutSeconds: 20) {
                try await client.get(Node.self, upgraded.name).kubeletVersion == "v1.31.2+k3s1"
            }
            #expect(newVersion, "the API reports the restarted node's new kubeletVersion")
            let restarted = try await ProcessRun.run(upgraded.systemctl, ["show", "-p", "MainPID", "k3s-agent"], timeoutSeconds: 20)
            #expect(restarted.output != (properties.count > 2 ? properties[2] : "") + "\n", "a new main process")
            #expect(try await client.get(Node.self, upgraded.name).isReady)

            // A node whose k3s is set to fail health: restarted, the unit is active but the
            // kubelet never becomes healthy and the API turns the node NotReady after the grace period.
            var faults = SandboxFaults.load(manifest.faultsFile)
            faults.nodes[faulted.name] = K3sFault(neverHealthy: true)
            try JSONFiles.write(faults, to: manifest.faultsFile)
            let faultRestart = try await ProcessRun.run(faulted.systemctl, ["restart", "k3s-agent"], timeoutSeconds: 60)
            #expect(faultRestart.status == 0, "\(faultRestart.output)")
            let notReady = try await Self.eventually(timeoutSeconds: 30) { try await !client.get(Node.self, faulted.name).isReady }
            #expect(notReady, "NotReady after the grace period")
            let unhealthy = try await ProcessRun.run("curl", ["-sS", "--max-time", "5", faulted.kubeletHealthzURL], timeoutSeconds: 20)
            #expect(unhealthy.output.contains("healthz check failed"), "\(unhealthy.output)")
            let started = try await ProcessRun.run(faulted.systemctl, ["is-active", "k3s-agent"], timeoutSeconds: 20)
            #expect(started.status == 0 && started.output == "active\n", "\(started.output)")
            #expect(try await client.get(Node.self, upgraded.name).isReady, "the other nodes stay Ready")

            // A stopped k3s: inactive for systemd.
            let stop = try await ProcessRun.run(upgraded.systemctl, ["stop", "k3s-agent"], timeoutSeconds: 60)
            #expect(stop.status == 0)
            let inactive = try await ProcessRun.run(upgraded.systemctl, ["is-active", "k3s-agent"], timeoutSeconds: 20)
            #expect(inactive.status == 3 && inactive.output == "inactive\n")
        }
    }

    /// A killed agent can leave its `systemctl restart` running while its successor issues
    /// another; systemd would run them one after the other, and so must the stand-in: however
    /// many restarts overlap, one supervisor runs the unit afterwards, the one the state names.
    @Test func overlappingRestartsLeaveOneSupervisor() async throws {
        try await Self.withSandbox(ClusterSpec(servers: 1, agents: 1, volumes: 0, replicas: 1),
                                   timings: ModelTimings(nodeGraceSeconds: 3, podStartSeconds: 0.5)) { runner in
            let node = try #require(runner.manifest.nodes.first { $0.name == "agent-1" })
            let first = SystemctlStandIn.currentState(node).supervisorPID
            let results = try await withThrowingTaskGroup(of: ProcessRun.Outcome.self) { group in
                for _ in 0..<4 {
                    group.addTask { try await ProcessRun.run(node.systemctl, ["restart", "k3s-agent"], timeoutSeconds: 120) }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(results.allSatisfy { $0.status == 0 && !$0.timedOut }, "\(results.map(\.output))")
            let supervisors = try await ProcessRun.run("pgrep", ["-f", "unit-supervisor \(node.root)$"], timeoutSeconds: 20)
            let pids = supervisors.output.split(separator: "\n").compactMap { pid_t($0) }
            let state = SystemctlStandIn.currentState(node)
            #expect(pids == [state.supervisorPID], "supervisors running: \(pids), recorded: \(state.supervisorPID)")
            #expect(state.supervisorPID != first && state.activeState == "active", "\(state)")
        }
    }

    @Test func faultsSnapshotsAndClusterReset() async throws {
        try await Self.withSandbox(ClusterSpec(servers: 2, agents: 0, volumes: 1, replicas: 2),
                                   timings: ModelTimings(podStartSeconds: 0.5)) { runner in
            let directory = runner.manifest.directory
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
            try JSONFiles.atomicWrite(Data(FakeK3s.script(version: "v1.31.2+k3s1", hostBinary: Self.hostBinary).utf8),
                                      to: server.k3sBinary, mode: 0o755)
            let failed = try await ProcessRun.run(server.systemctl, ["restart", "k3s"], timeoutSeconds: 60)
            #expect(failed.status == 1 && failed.output.contains("Job for k3s.service failed"), "\(failed.output)")
            let state = try await ProcessRun.run(server.systemctl, ["show", "-p", "ActiveState,SubState", "k3s"], timeoutSeconds: 20)
            #expect(state.output == "ActiveState=activating\nSubState=auto-restart\n", "\(state.output)")
            let log = try String(contentsOfFile: server.logFile, encoding: .utf8)
            #expect(log.contains("level=fatal"))

            // Stopped, the server can be reset from the snapshot.
            #expect(try await ProcessRun.run(server.systemctl, ["stop", "k3s"], timeoutSeconds: 60).status == 0)
            let snapshot = files.first ?? "missing"
            let reset = try await ProcessRun.run(server.k3sBinary, ["server", "--cluster-reset",
                                                                    "--cluster-reset-restore-path=\(directory)/snaps/\(snapshot)"],
                                                 timeoutSeconds: 30)
            #expect(reset.status == 0, "\(reset.output)")
            #expect(reset.output.contains("Managed etcd cluster membership has been reset, restart without --cluster-reset flag now."))
            let missing = try await ProcessRun.run(server.k3sBinary, ["server", "--cluster-reset", "--cluster-reset-restore-path=/nonexistent"],
                                                   timeoutSeconds: 30)
            #expect(missing.status != 0)
        }
    }
}
