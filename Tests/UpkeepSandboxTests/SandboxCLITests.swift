import Foundation
import Testing
import UpkeepCLI
import UpkeepProcess
import UpkeepRollout
import UpkeepKube
import UpkeepPKI
@testable import UpkeepSandbox

/// `upkeep sandbox up|status|fault|down`, run as the built binary in a background process.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct SandboxCLITests {
    static var buildDirectory: String {
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return (executable as NSString).deletingLastPathComponent
    }

    static func upkeep(_ arguments: [String], timeoutSeconds: Double = 120) async throws -> ProcessRun.Outcome {
        try await ProcessRun.run("\(buildDirectory)/upkeep", arguments, timeoutSeconds: timeoutSeconds)
    }

    /// Every process a sandbox recorded: its own, the unit supervisors, k3s, the agents.
    static func recordedPIDs(_ directory: String) -> Set<pid_t> { SandboxDaemon.recordedPIDs(directory) }

    /// Runs `body` with a sandbox brought up by `upkeep sandbox up` and always brings it down,
    /// then checks nothing it started still runs and `--purge` removes the directory.
    static func withSandbox(_ extra: [String], _ body: (String, SandboxManifest) async throws -> Void) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("upkeep-sbx-cli-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let up = try await upkeep(["sandbox", "up", "--dir", directory, "--servers", "1", "--agents", "2", "--volumes", "2",
                                   "--node-grace", "3"] + extra)
        var pids = recordedPIDs(directory)
        do {
            #expect(up.status == 0 && !up.timedOut, "\(up.output)\n\(SandboxDaemon.logTail(directory))")
            let manifest = try SandboxManifest.load(directory: directory)
            try await body(directory, manifest)
        } catch {
            _ = try? await upkeep(["sandbox", "down", "--dir", directory])
            throw error
        }
        pids.formUnion(recordedPIDs(directory))
        let down = try await upkeep(["sandbox", "down", "--dir", directory])
        #expect(down.status == 0 && down.output.contains("is down"), "\(down.output)")
        #expect(pids.count >= 7, "sandbox, 3 supervisors, 3 k3s: \(pids.sorted())")
        let survivors = pids.filter { Spawn.isAlive($0) }
        #expect(survivors.isEmpty, "still running after down: \(survivors.sorted())")
        // down keeps the files; status says nothing runs; --purge removes the directory.
        #expect(FileManager.default.fileExists(atPath: "\(directory)/kubeconfig") && FileManager.default.fileExists(atPath: "\(directory)/pki/ca.crt"))
        let status = try await upkeep(["sandbox", "status", "--dir", directory])
        #expect(status.status == 1 && status.output.contains("no sandbox runs"), "\(status.output)")
        let purge = try await upkeep(["sandbox", "down", "--dir", directory, "--purge"])
        #expect(purge.status == 0 && !FileManager.default.fileExists(atPath: directory), "\(purge.output)")
    }

    @Test func upWritesKubeconfigPKIAndControllerConfigRefusesASecondUpAndDownLeavesNothingRunning() async throws {
        try await Self.withSandbox(["--no-agents", "--airgap", "agent-2"]) { directory, manifest in
            // An air-gapped node starts Ready: `up` placed its version's images tarball.
            let airgapped = try #require(manifest.nodes.first { $0.name == "agent-2" })
            #expect(airgapped.airgap == true && manifest.nodes.filter { $0.airgap == true }.count == 1)
            #expect(FileManager.default.fileExists(atPath: "\(AirGap.imagesDirectory(airgapped))/k3s-airgap-images-amd64.tar.zst"))
            // What the controller is handed: its configuration, in the schema it loads.
            let config = try ControllerConfig.load(path: "\(directory)/upkeep.yaml")
            #expect(config.kubeconfig == "\(directory)/kubeconfig")
            #expect(config.pki.ca == "\(directory)/pki/ca.crt")
            #expect(config.pki.certificate == "\(directory)/pki/controllers/upkeep.crt")
            #expect(config.pki.key == "\(directory)/pki/controllers/upkeep.key")
            #expect(config.agentPort == 9443)
            #expect(config.stateDir == "\(directory)/state")
            #expect(config.releases.githubAPI == manifest.releaseURL)
            #expect(config.releases.mirror == nil)
            #expect(config.concurrency == 1 && config.rollout.drainTimeoutSeconds == 120 && config.rollout.autoRollback == .binaries
                    && config.rollout.pollIntervalMilliseconds == 500)
            let keyMode = try FileManager.default.attributesOfItem(atPath: config.pki.key)[.posixPermissions] as? Int
            #expect(keyMode == 0o600)
            for node in manifest.nodes {
                let identity = try PKIDirectory(path: "\(directory)/pki").loadIdentity(PeerIdentity(role: .agent, name: node.name))
                #expect(try PeerIdentity.from(identity.certificate) == PeerIdentity(role: .agent, name: node.name))
            }
            // The release server named there answers like GitHub.
            let releases = try await ProcessRun.run("curl", ["-sS", "--max-time", "5", "\(manifest.releaseURL)/repos/k3s-io/k3s/releases"],
                                                    timeoutSeconds: 20)
            #expect(releases.output.contains("\"tag_name\""), "\(releases.output.prefix(300))")

            // The real kubectl with DIR/kubeconfig (client certificate over HTTPS).
            let nodes = try await ProcessRun.run("kubectl", ["--kubeconfig", "\(directory)/kubeconfig", "--cache-dir", "\(directory)/.kube-cache",
                                                             "get", "nodes", "--no-headers"], timeoutSeconds: 30)
            #expect(nodes.status == 0 && nodes.output.split(separator: "\n").filter { $0.contains(" Ready ") }.count == 3, "\(nodes.output)")

            let again = try await Self.upkeep(["sandbox", "up", "--dir", directory, "--no-agents"])
            #expect(again.status == 1 && again.output.contains("a sandbox already runs in \(directory)"), "\(again.output)")

            let status = try await Self.upkeep(["sandbox", "status", "--dir", directory])
            #expect(status.status == 0, "\(status.output)")
            #expect(status.output.contains("datastore kine (SQLite) on server-1 (http://\(manifest.nodes[0].address):2379), revision "), "\(status.output)")
            for node in manifest.nodes {
                let row = status.output.split(separator: "\n").first { $0.hasPrefix(node.name + " ") } ?? ""
                #expect(row.contains(node.address) && row.contains("v1.30.6+k3s1") && row.contains("True") && row.contains("active (pid"),
                        "\(status.output)")
            }

            // A health fault: the node's next k3s never becomes healthy, the API turns it NotReady.
            let fault = try await Self.upkeep(["sandbox", "fault", "--dir", directory, "agent-1", "unhealthy", "--any-version"])
            #expect(fault.status == 0 && fault.output.contains("never become healthy"), "\(fault.output)")
            let node = try #require(manifest.nodes.first { $0.name == "agent-1" })
            let restart = try await ProcessRun.run(node.systemctl, ["restart", "--no-block", "k3s-agent"], timeoutSeconds: 60)
            #expect(restart.status == 0, "\(restart.output)")
            var row = ""
            let deadline = Date().addingTimeInterval(30)
            while Date() < deadline {
                let shown = try await Self.upkeep(["sandbox", "status", "--dir", directory])
                row = shown.output.split(separator: "\n").first { $0.hasPrefix("agent-1 ") }.map(String.init) ?? ""
                if !row.contains("True") { break }
                try await Task.sleep(nanoseconds: 200_000_000)
            }
            #expect(!row.contains("True") && row.contains("active (pid") && row.contains("never healthy"), "\(row)")
            let unknown = try await Self.upkeep(["sandbox", "fault", "--dir", directory, "agent-9", "unhealthy"])
            #expect(unknown.status == 1 && unknown.output.contains("no node agent-9"), "\(unknown.output)")
        }
    }

    @Test func upAndDownCleanUpASandboxWhoseProcessWasKilled() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("upkeep-sbx-cli-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let arguments = ["sandbox", "up", "--dir", directory, "--servers", "1", "--agents", "0", "--volumes", "0", "--no-agents"]
        /// Starts the sandbox, kills its process with SIGKILL and returns what it had started.
        func upThenKill() async throws -> Set<pid_t> {
            let up = try await Self.upkeep(arguments)
            let pids = Self.recordedPIDs(directory)
            #expect(up.status == 0, "\(up.output)")
            let daemon = try #require(SandboxDaemon.runningPID(directory))
            kill(daemon, SIGKILL)
            let gone = try await HostTests.eventually(timeoutSeconds: 10) { !Spawn.isAlive(daemon) }
            #expect(gone)
            #expect(pids.count == 3 && pids.filter { Spawn.isAlive($0) }.count == 2, "the node's supervisor and k3s outlive the sandbox process")
            return pids
        }
        let first = try await upThenKill()
        let status = try await Self.upkeep(["sandbox", "status", "--dir", directory])
        #expect(status.status == 1 && status.output.contains("not running"), "\(status.output)")
        // A new up cleans up what the killed one left, then starts afresh.
        let second = try await upThenKill()
        #expect(first.filter { Spawn.isAlive($0) }.isEmpty, "up stopped the killed sandbox's node")
        let down = try await Self.upkeep(["sandbox", "down", "--dir", directory])
        #expect(down.status == 0 && down.output.contains("stopped k3s on server-1"), "\(down.output)")
        #expect(second.filter { Spawn.isAlive($0) }.isEmpty)
    }

    static var canCreateNetworkNamespaces: Bool { getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") }

    /// Network namespaces and links whose names carry `tag` (this sandbox's bridge name).
    static func networkObjects(_ tag: String) async throws -> [String] {
        let namespaces = try await ProcessRun.run("/usr/sbin/ip", ["netns", "list"], timeoutSeconds: 20).output
        let links = try await ProcessRun.run("/usr/sbin/ip", ["-o", "link"], timeoutSeconds: 20).output
        return (namespaces + links).split(separator: "\n").map(String.init).filter { $0.contains(tag) }
    }

    @Test(.enabled(if: canCreateNetworkNamespaces, "needs root and iproute2"))
    func netnsModePutsEachNodeInItsOwnNamespaceCanCutOneOffAndLeavesNothingBehind() async throws {
        var bridge = ""
        try await Self.withSandbox(["--netns", "--agents", "1"]) { directory, manifest in
            bridge = try #require(manifest.bridge)
            #expect(manifest.netns && manifest.nodes.allSatisfy { $0.address.hasPrefix("198.18.") && $0.netns != nil })
            #expect(try await Self.networkObjects(bridge).count >= 3, "a bridge and a namespace per node")
            let nodes = try await ProcessRun.run("kubectl", ["--kubeconfig", "\(directory)/kubeconfig", "--cache-dir", "\(directory)/.kube-cache",
                                                             "get", "nodes", "-o", "wide", "--no-headers"], timeoutSeconds: 30)
            for node in manifest.nodes {
                #expect(nodes.output.split(separator: "\n").contains { $0.hasPrefix(node.name + " ") && $0.contains(" Ready ") && $0.contains(node.address) },
                        "\(nodes.output)")
            }
            // The k3s of a node is reachable only through the node's namespace on the bridge.
            let agent = try #require(manifest.nodes.first { !$0.isServer })
            let healthz = try await ProcessRun.run("curl", ["-sS", "--max-time", "5", agent.kubeletHealthzURL], timeoutSeconds: 20)
            #expect(healthz.output == "ok", "\(healthz.output)")

            // Cut the node off: its heartbeats stop reaching the API, which turns it NotReady.
            let cut = try await ProcessRun.run("/usr/sbin/ip", ["-n", try #require(agent.netns), "link", "set", "eth0", "down"], timeoutSeconds: 20)
            #expect(cut.status == 0, "\(cut.output)")
            let kube = try KubeClient(kubeconfig: manifest.kubeconfig)
            defer { Task { await kube.shutdown() } }
            let notReady = try await HostTests.eventually(timeoutSeconds: 30) { try await !kube.get(Node.self, agent.name).isReady }
            #expect(notReady, "a node cut off turns NotReady")
            #expect(try await kube.get(Node.self, "server-1").isReady)
        }
        #expect(!bridge.isEmpty)
        let left = try await Self.networkObjects(bridge)
        #expect(left.isEmpty, "left behind: \(left)")
    }
}
