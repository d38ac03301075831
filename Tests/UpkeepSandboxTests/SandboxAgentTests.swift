import Foundation
import NIOCore
import Testing
import UpkeepKube
import UpkeepPKI
import UpkeepProcess
import UpkeepProtocol
import UpkeepTLS
@testable import UpkeepSandbox

/// `upkeep sandbox up` runs a real upkeep-agent on every node; a controller reaches each over
/// mutual TLS with the sandbox's PKI and upgrades the node's fake k3s through it.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct SandboxAgentTests {
    /// Dials the agent of `node` as the controller `upkeep`, requiring the identity agent/<node>.
    static func connect(_ node: SandboxNode, directory: String) async throws -> ProtocolClient {
        let pki = PKIDirectory(path: "\(directory)/pki")
        let controller = try pki.loadIdentity(PeerIdentity(role: .controller, name: SandboxIdentities.controllerName))
        let context = try TLSContext.internal(ca: try Certificate.loadChain(pemFile: pki.caCertificatePath), chain: [controller.certificate],
                                              key: controller.key)
        let address = try #require(node.agentAddress.split(separator: ":").last.flatMap { Int($0) })
        return try await ProtocolClient.connect(host: node.address, port: address,
                                                security: .tls(context, expecting: .identity(try PeerIdentity(role: .agent, name: node.name))))
    }

    /// The fake k3s binary of `version` as the release server publishes it, checked against its
    /// `sha256sum-<arch>.txt` the way install.sh checks it.
    static func download(_ version: String, arch: String, releaseURL: String, into directory: String) async throws -> (bytes: [UInt8], sha256: String) {
        let asset = arch == "amd64" ? "k3s" : "k3s-\(arch == "arm" ? "armhf" : arch)"
        let tag = version.replacingOccurrences(of: "+", with: "%2B")
        let file = "\(directory)/\(asset)-\(version)"
        let fetched = try await ProcessRun.run("curl", ["-sSfL", "--max-time", "20", "-o", file,
                                                        "\(releaseURL)/k3s-io/k3s/releases/download/\(tag)/\(asset)"], timeoutSeconds: 30)
        #expect(fetched.status == 0, "\(fetched.output)")
        let sums = try await ProcessRun.run("curl", ["-sSfL", "--max-time", "20", "\(releaseURL)/k3s-io/k3s/releases/download/\(tag)/sha256sum-\(arch).txt"],
                                            timeoutSeconds: 30)
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: file)))
        let digest = SHA256.hex(bytes)
        #expect(sums.output.split(separator: "\n").contains { $0 == "\(digest)  \(asset)" }, "\(sums.output)")
        return (bytes, digest)
    }

    static func stageAndInstall(_ client: ProtocolClient, version: String, artifact: (bytes: [UInt8], sha256: String), id: String,
                                healthTimeoutSeconds: Int) async throws -> InstallResult
    {
        let sha = try #require(SHA256Hex(rawValue: artifact.sha256))
        let staged = try await client.call(StageRequest(operationID: OperationID(stringLiteral: "stage-\(id)"), k3sVersion: version, sha256: sha,
                                                        bytes: Int64(artifact.bytes.count)),
                                           upload: ChunkSource(bytes: ByteBuffer(bytes: artifact.bytes)), deadline: .now + .seconds(60))
        #expect(staged.sha256 == sha && !staged.alreadyStaged)
        return try await client.call(InstallRequest(operationID: OperationID(stringLiteral: "install-\(id)"), sha256: sha, k3sVersion: version,
                                                    healthTimeoutSeconds: healthTimeoutSeconds, watchdogTimeoutSeconds: 600),
                                     deadline: .now + .seconds(120))
    }

    @Test func everyNodeRunsAnAgentTheControllerCanReachAndUpgradeThrough() async throws {
        let old = "v1.30.6+k3s1"
        let new = "v1.31.2+k3s1"
        try await SandboxCLITests.withSandbox([]) { directory, manifest in
            let kube = try KubeClient(kubeconfig: manifest.kubeconfig)
            defer { Task { await kube.shutdown() } }

            // Each node's agent: found through its Node annotation, answering as that node.
            var arch = ""
            for node in manifest.nodes {
                let annotated = try await kube.get(Node.self, node.name).annotations[SandboxAgents.addressAnnotation]
                #expect(annotated == node.agentAddress)
                let client = try await Self.connect(node, directory: directory)
                #expect(client.hello.agent.nodeName == node.name && client.hello.agent.k3sVersion == old)
                #expect(client.hello.agent.role == (node.isServer ? .server : .agent))
                let status = try await client.call(StatusRequest(), deadline: .now + .seconds(30))
                #expect(status.agent.nodeName == node.name && status.unit.name == node.unit && status.unit.activeState == "active")
                #expect(status.binaryPath == node.k3sBinary)
                arch = client.hello.agent.arch
                await client.close()
            }
            let artifact = try await Self.download(new, arch: arch, releaseURL: manifest.releaseURL, into: directory)

            // An upgrade through the agent swaps the node's binary; the API sees the new version.
            let upgraded = try #require(manifest.nodes.first { $0.name == "agent-1" })
            let client = try await Self.connect(upgraded, directory: directory)
            let installed = try await Self.stageAndInstall(client, version: new, artifact: artifact, id: "a1", healthTimeoutSeconds: 30)
            #expect(installed.outcome == .installed && installed.previousK3sVersion == old && installed.k3sVersion == new, "\(installed)")
            #expect(installed.probe.healthy, "\(installed.probe)")
            #expect(FakeK3s.currentVersion(upgraded) == new)
            let version = try await ProcessRun.run(upgraded.k3sBinary, ["--version"], timeoutSeconds: 20)
            #expect(version.output.hasPrefix("k3s version \(new) "))
            let reported = try await kube.get(Node.self, upgraded.name)
            #expect(reported.kubeletVersion == new && reported.isReady)
            _ = try await client.call(CommitRequest(operationID: "commit-a1", installOperationID: "install-a1"), deadline: .now + .seconds(30))
            await client.close()

            // With k3s set to fail health after an upgrade, the agent reverts and says so.
            let fault = try await SandboxCLITests.upkeep(["sandbox", "fault", "--dir", directory, "agent-2", "unhealthy"])
            #expect(fault.status == 0, "\(fault.output)")
            let faulted = try #require(manifest.nodes.first { $0.name == "agent-2" })
            let faultedClient = try await Self.connect(faulted, directory: directory)
            let reverted = try await Self.stageAndInstall(faultedClient, version: new, artifact: artifact, id: "a2", healthTimeoutSeconds: 3)
            #expect(reverted.outcome == .reverted && reverted.k3sVersion == old, "\(reverted)")
            #expect(!reverted.probe.healthy && reverted.probe.checks.contains { $0.name == "kubelet" && !$0.ok }, "\(reverted.probe)")
            #expect(FakeK3s.currentVersion(faulted) == old, "the previous binary is back")
            let status = try await faultedClient.call(StatusRequest(), deadline: .now + .seconds(30))
            #expect(status.agent.k3sVersion == old)
            #expect(status.recentOperations.first { $0.operationID == "install-a2" }?.state == .reverted, "\(status.recentOperations)")
            await faultedClient.close()
            let backAtOld = try await HostTests.eventually(timeoutSeconds: 30) {
                let node = try await kube.get(Node.self, faulted.name)
                return node.isReady && node.kubeletVersion == old
            }
            #expect(backAtOld, "the reverted node is Ready at \(old) again")

            // agent-down stops an agent and keeps it down; clear brings it back (Restart=always).
            let stop = try await SandboxCLITests.upkeep(["sandbox", "fault", "--dir", directory, "agent-1", "agent-down"])
            #expect(stop.status == 0, "\(stop.output)")
            // The command returns once the agent is down: no waiting here.
            #expect(SandboxAgents.runningPID(upgraded) == nil, "the agent of agent-1 is stopped when `fault` returns")
            await #expect(throws: (any Error).self) { _ = try await Self.connect(upgraded, directory: directory) }
            let shown = try await SandboxCLITests.upkeep(["sandbox", "status", "--dir", directory])
            #expect(shown.output.split(separator: "\n").contains { $0.hasPrefix("agent-1 ") && $0.contains("stopped") && $0.contains("agent down") },
                    "\(shown.output)")
            let clear = try await SandboxCLITests.upkeep(["sandbox", "fault", "--dir", directory, "agent-1", "clear"])
            #expect(clear.status == 0, "\(clear.output)")
            // ... and `clear` returns once it listens again.
            let restarted = try await Self.connect(upgraded, directory: directory)
            let hello = restarted.hello.agent
            #expect(hello.k3sVersion == new, "the restarted agent answers at \(new): \(hello)")
            await restarted.close()
        }
    }
}
