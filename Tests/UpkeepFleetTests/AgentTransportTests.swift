import Foundation
import Testing
import UpkeepAgent
import UpkeepAgentCore
import UpkeepRollout
import UpkeepCore
import UpkeepFleet
import UpkeepHTTP
import UpkeepKube
import UpkeepProtocol
import UpkeepSandbox
import UpkeepSandboxTestSupport
import UpkeepTestSupport

/// Collects progress lines.
final class Lines: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    var record: @Sendable (String) -> Void { { line in self.lock.withLock { self.lines.append(line) } } }
    var all: [String] { lock.withLock { lines } }
}

/// The controller's transport against real agents over mutual TLS.
@Suite(.serialized) struct AgentTransportTests {
    struct Rig {
        let api: SandboxAPI
        let node: AgentNodeFixture
        let pki: FleetPKI
        let fleet: AgentFleet
        let transport: ProtocolAgentTransport
        let state: TemporaryDirectory
        let mirror: TemporaryDirectory

        func close() async {
            await fleet.close()
            await node.shutdown()
            await api.close()
        }
    }

    /// agent-1 of a sandbox cluster, its real agent with its own certificate, and a transport
    /// whose artifacts come from a mirror directory holding this node's fake k3s `v2`.
    private func rig(identity: String = "agent-1") async throws -> Rig {
        let api = try await SandboxAPI(spec: ClusterSpec(servers: 1, agents: 1, volumes: 0, replicas: 1, k3sVersion: v1))
        let node = try AgentNodeFixture(name: identity, liveVersion: v1)
        let pki = try FleetPKI(in: node.directory.file("pki"))
        try await node.start(pki: pki, identity: try pki.agent(identity), kubeconfig: api.kubeconfig)
        let mirror = try TemporaryDirectory()
        try node.publish(v2, into: mirror.path)
        let state = try TemporaryDirectory()
        let cache = try ArtifactCache(stateDirectory: state.path, source: .directory(mirror.path), client: nil)
        let fleet = AgentFleet(security: try pki.controllerSecurity(), endpoints: ["agent-1": AgentEndpoint(host: "127.0.0.1", port: node.port)],
                               configuration: AgentFleet.Configuration(connectTimeoutSeconds: 5))
        return Rig(api: api, node: node, pki: pki, fleet: fleet, transport: ProtocolAgentTransport(fleet: fleet, artifacts: cache),
                   state: state, mirror: mirror)
    }

    private func send(_ rig: Rig, _ id: String, _ command: AgentCommand, lines: Lines = Lines(), deadlineSeconds: Int = 60) async throws -> AgentReply {
        try await rig.transport.send(AgentRequest(operationID: id, node: "agent-1", command: command), deadlineSeconds: deadlineSeconds,
                                     progress: lines.record)
    }

    @Test func cordonDrainStageInstallCommitUncordonRoundTrips() async throws {
        let rig = try await rig()
        let version2 = try K3sVersion(v2)
        #expect(try await send(rig, "r1:agent-1:cordon:1", .cordon) == .cordoned(wasUnschedulable: false))
        #expect(try await rig.api.client.get(Node.self, "agent-1").unschedulable)

        let drainLines = Lines()
        #expect(try await send(rig, "r1:agent-1:drain:1", .drain(timeoutSeconds: 60), lines: drainLines) == .drained)
        #expect(drainLines.all.contains { $0.hasPrefix("pod ") }, "no pod progress forwarded: \(drainLines.all)")

        let stageLines = Lines()
        #expect(try await send(rig, "r1:agent-1:stage:1", .stage(version: version2, arch: .amd64), lines: stageLines) == .staged)
        #expect(stageLines.all.last?.hasPrefix("sent ") == true, "\(stageLines.all)")

        let install = AgentCommand.install(version: version2, healthTimeoutSeconds: 30, watchdogTimeoutSeconds: 600)
        let installed = try await send(rig, "r1:agent-1:install:1", install)
        #expect(installed == .installed(version: version2))
        let restarts = rig.node.restarts
        // The same operation id again: the agent answers from its journal and restarts nothing.
        #expect(try await send(rig, "r1:agent-1:install:1", install) == installed)
        #expect(rig.node.restarts == restarts)

        #expect(try await send(rig, "r1:agent-1:commit:1", .commit(installOperationID: "r1:agent-1:install:1")) == .committed(version: version2))
        #expect(try await send(rig, "r1:agent-1:uncordon:1", .uncordon) == .uncordoned(true))
        #expect(try await rig.api.client.get(Node.self, "agent-1").unschedulable == false)
        await rig.close()
    }

    /// The agent restarts after answering an install whose answer the controller "lost": the
    /// same operation id, sent on a new connection to its new address, returns the journal's
    /// record and installs nothing again.
    @Test func aReplayedOperationIDAfterAnAgentRestartReturnsTheRecordedResult() async throws {
        let rig = try await rig()
        let version2 = try K3sVersion(v2)
        #expect(try await send(rig, "r1:agent-1:stage:1", .stage(version: version2, arch: .amd64)) == .staged)
        let install = AgentCommand.install(version: version2, healthTimeoutSeconds: 30, watchdogTimeoutSeconds: 600)
        let first = try await send(rig, "r1:agent-1:install:1", install)
        #expect(first == .installed(version: version2))
        let restarts = rig.node.restarts

        try await rig.node.restartAgent()
        await rig.fleet.setEndpoints(["agent-1": AgentEndpoint(host: "127.0.0.1", port: rig.node.port)])
        #expect(try await send(rig, "r1:agent-1:install:1", install) == first)
        #expect(rig.node.restarts == restarts)
        // Staging the same artifact again under a new id is answered without a second copy.
        #expect(try await send(rig, "r1:agent-1:stage:2", .stage(version: version2, arch: .amd64)) == .staged)
        // Restarted where it was: the fleet's connection is dead and is made again by itself.
        try await rig.node.restartAgent(samePort: true)
        #expect(try await send(rig, "r1:agent-1:commit:1", .commit(installOperationID: "r1:agent-1:install:1")) == .committed(version: version2))
        await rig.close()
    }

    /// A new version that never becomes healthy: the agent puts the old one back, and the reply
    /// says so with the restored binary's own health. Then a rollback of a healthy install.
    @Test func aRevertedInstallAndARollbackReportTheRestoredVersionAndItsHealth() async throws {
        let rig = try await rig()
        let version2 = try K3sVersion(v2)
        #expect(try await send(rig, "r1:agent-1:stage:1", .stage(version: version2, arch: .amd64)) == .staged)
        try "never".write(toFile: "\(rig.node.root)/faults/\(v2)", atomically: false, encoding: .utf8)
        let reverted = try await send(rig, "r1:agent-1:install:1", .install(version: version2, healthTimeoutSeconds: 3, watchdogTimeoutSeconds: 600))
        guard case .installReverted(let version, let healthy, let message) = reverted else {
            Issue.record("expected installReverted, got \(reverted)")
            return await rig.close()
        }
        #expect(version == (try K3sVersion(v1)) && healthy, "\(message)")
        #expect(message.contains("kubelet") && message.hasSuffix("restored \(v1), healthy") && !message.contains("\n"), "\(message)")

        try FileManager.default.removeItem(atPath: "\(rig.node.root)/faults/\(v2)")
        let install = AgentCommand.install(version: version2, healthTimeoutSeconds: 30, watchdogTimeoutSeconds: 600)
        #expect(try await send(rig, "r1:agent-1:install:2", install) == .installed(version: version2))
        let rolledBack = try await send(rig, "r1:agent-1:rollback:1", .rollback(healthTimeoutSeconds: 30))
        guard case .rolledBack(let back, let backHealthy, _) = rolledBack else {
            Issue.record("expected rolledBack, got \(rolledBack)")
            return await rig.close()
        }
        #expect(back == (try K3sVersion(v1)) && backHealthy)
        await rig.close()
    }

    /// The new version turns sick after its install and no commit comes in time: the agent's
    /// watchdog puts the old one back, and the late commit reports the version that stayed.
    @Test func aCommitAfterTheWatchdogRevertedReportsTheVersionThatStayed() async throws {
        let rig = try await rig()
        let version2 = try K3sVersion(v2)
        #expect(try await send(rig, "r1:agent-1:stage:1", .stage(version: version2, arch: .amd64)) == .staged)
        #expect(try await send(rig, "r1:agent-1:install:1", .install(version: version2, healthTimeoutSeconds: 3, watchdogTimeoutSeconds: 1))
                == .installed(version: version2))
        try "sick".write(toFile: "\(rig.node.root)/faults/\(v2)", atomically: false, encoding: .utf8)
        let service = try #require(rig.node.service)
        let reverted = await rig.api.waitUntil(seconds: 60) {
            let status = await service.status()
            return status.watch == nil && status.live?.k3sVersion == v1
        }
        #expect(reverted, "the watchdog did not put \(v1) back")
        let reply = try await send(rig, "r1:agent-1:commit:1", .commit(installOperationID: "r1:agent-1:install:1"))
        #expect(reply == .committed(version: try K3sVersion(v1)), "\(reply)")
        await rig.close()
    }

    @Test func agentErrorsBecomeRefusedReplies() async throws {
        let rig = try await rig()
        // Nothing was installed under this id: the agent's typed error comes back as a reply.
        let reply = try await send(rig, "r1:agent-1:commit:1", .commit(installOperationID: "r1:agent-1:install:9"))
        guard case .refused(let code, let message) = reply else {
            Issue.record("expected a refusal, got \(reply)")
            return await rig.close()
        }
        #expect(!code.isEmpty && !message.isEmpty)
        // Installing a version this node never staged: notFound from the agent, nothing restarted.
        let restarts = rig.node.restarts
        let install = try await send(rig, "r1:agent-1:install:1", .install(version: try K3sVersion(v2), healthTimeoutSeconds: 10, watchdogTimeoutSeconds: 60))
        if case .refused(let installCode, _) = install { #expect(installCode == "notFound") } else { Issue.record("expected notFound, got \(install)") }
        #expect(rig.node.restarts == restarts)
        // A release whose binary does not match its checksum file never reaches the agent.
        let corrupt = "v1.31.4+k3s1"
        try rig.node.publish(corrupt, into: rig.mirror.path, corrupt: true)
        let stage = try await send(rig, "r1:agent-1:stage:2", .stage(version: try K3sVersion(corrupt), arch: .amd64))
        if case .refused(let stageCode, let stageMessage) = stage {
            #expect(stageCode == "digestMismatch" && stageMessage.contains("k3s"), "\(stageMessage)")
        } else {
            Issue.record("expected digestMismatch, got \(stage)")
        }
        let staged = await (try #require(rig.node.service)).status().staged
        #expect(staged.isEmpty, "\(staged)")
        await rig.close()
    }

    @Test func anAgentPresentingAnotherNodesCertificateIsRefused() async throws {
        // The agent listening where agent-1 is expected holds agent-2's certificate.
        let rig = try await rig(identity: "agent-2")
        await #expect { try await send(rig, "r1:agent-1:cordon:1", .cordon, deadlineSeconds: 20) } throws: { error in
            guard let error = error as? AgentTransportError else { return false }
            return error.node == "agent-1" && error.description.contains("agent-2")
        }
        #expect(try await rig.api.client.get(Node.self, "agent-1").unschedulable == false)
        let node = InventoryNode(name: "agent-1", role: .agent, version: try K3sVersion(v1))
        let inspections = await rig.fleet.inspect([node])
        guard case .wrongNode(let detail) = inspections.first?.verdict else {
            Issue.record("expected wrongNode, got \(inspections)")
            return await rig.close()
        }
        #expect(detail.contains("agent-2") && inspections[0].blocksRollout)
        await rig.close()
    }

    @Test func anUnreachableAgentThrowsAndIsFlagged() async throws {
        let directory = try TemporaryDirectory()
        let pki = try FleetPKI(in: directory.file("pki"))
        let port = try unusedLoopbackPort()
        let fleet = AgentFleet(security: try pki.controllerSecurity(), endpoints: ["agent-1": AgentEndpoint(host: "127.0.0.1", port: port)],
                               configuration: AgentFleet.Configuration(connectTimeoutSeconds: 2,
                                                                        backoff: .init(initialDelay: .milliseconds(50), maximumDelay: .milliseconds(200), attemptsMax: 3)))
        let state = try TemporaryDirectory()
        let transport = ProtocolAgentTransport(fleet: fleet, artifacts: try ArtifactCache(stateDirectory: state.path, source: .directory(state.path), client: nil))
        let gaveUpBefore = ProtocolClient.limits.count(.attempts)
        await #expect {
            try await transport.send(AgentRequest(operationID: "r1:agent-1:cordon:1", node: "agent-1", command: .cordon), deadlineSeconds: 20,
                                     progress: { _ in })
        } throws: { error in
            (error as? AgentTransportError)?.description.contains("connection refused at 127.0.0.1:\(port)") == true
        }
        // Given up by each connection's retries and then by the request's: one request, counted once.
        #expect(ProtocolClient.limits.count(.attempts) == gaveUpBefore + 1)
        // A node the fleet has no address for throws too, without dialling anything.
        await #expect(throws: AgentTransportError.self) {
            try await transport.send(AgentRequest(operationID: "r1:agent-9:cordon:1", node: "agent-9", command: .cordon), deadlineSeconds: 20,
                                     progress: { _ in })
        }
        let inspections = await fleet.inspect([InventoryNode(name: "agent-1", role: .agent, version: try K3sVersion(v1)),
                                               InventoryNode(name: "agent-9", role: .agent, version: try K3sVersion(v1))])
        #expect(inspections.map(\.node) == ["agent-1", "agent-9"])
        #expect(inspections.allSatisfy { if case .unreachable = $0.verdict { true } else { false } }, "\(inspections)")
        #expect(inspections[0].message.contains("connection refused at 127.0.0.1:\(port)"), "\(inspections[0].message)")
        await fleet.close()
    }

    @Test func helloCrossCheckReportsReachableAndVersionMismatch() async throws {
        let rig = try await rig()
        let matching = InventoryNode(name: "agent-1", role: .agent, version: try K3sVersion(v1))
        let reachable = await rig.fleet.inspect([matching])
        #expect(reachable.first?.verdict == .reachable, "\(reachable)")
        #expect(reachable.first?.agent?.nodeName == "agent-1" && reachable.first?.latencyMilliseconds != nil)
        let stale = InventoryNode(name: "agent-1", role: .agent, version: try K3sVersion("v1.29.9+k3s1"))
        let mismatch = await rig.fleet.inspect([stale])
        #expect(mismatch.first?.verdict == .versionMismatch(agent: v1, kubelet: "v1.29.9+k3s1"), "\(mismatch)")
        let otherArch = InventoryNode(name: "agent-1", role: .agent, arch: .arm64, version: try K3sVersion(v1))
        let wrongArch = await rig.fleet.inspect([otherArch])
        guard case .wrongNode(let detail) = wrongArch.first?.verdict else {
            Issue.record("expected wrongNode for the architecture, got \(wrongArch)")
            return await rig.close()
        }
        #expect(detail.contains("arm64"))
        await rig.close()
    }
}
