import Foundation
import Testing
import UpkeepCore
import UpkeepFleet
import UpkeepHTTP
import UpkeepPKI
import UpkeepProtocol
import UpkeepRollout
import UpkeepTestSupport
import UpkeepTLS

/// An agent at its limit of authenticated connections answers `busy` on request id 0
/// (PROTOCOL.md 5.2), and the controller says so in words: `upkeep agents` shows "the agent is
/// at its connection limit", not a bare protocol error.
@Suite struct ConnectionLimitTests {
    struct Agent: RequestHandler {
        func agentInfo() -> AgentInfo {
            AgentInfo(agentVersion: "0.1.0-test", nodeName: "agent-1", arch: "amd64", role: .agent, k3sVersion: v1)
        }

        func handle(_ request: IncomingRequest) async throws -> Reply {
            throw ErrorResponse(.notImplemented, "not served here: \(request.method)")
        }
    }

    @Test func anAgentAtItsConnectionLimitIsReportedAsSuch() async throws {
        let directory = try TemporaryDirectory()
        let pki = try FleetPKI(in: directory.file("pki"))
        let context = try pki.agentContext("agent-1")
        var configuration = ServerConfiguration()
        configuration.connectionsMax = 1
        let server = try await ProtocolServer.bind(host: "127.0.0.1", port: 0, security: .tls(context, expecting: .roles([.controller])),
                                                   handler: Agent(), configuration: configuration)
        let endpoint = AgentEndpoint(host: "127.0.0.1", port: server.port)
        let fleet = AgentFleet(security: try pki.controllerSecurity(), endpoints: ["agent-1": endpoint],
                               configuration: AgentFleet.Configuration(connectTimeoutSeconds: 5))
        let node = InventoryNode(name: "agent-1", role: .agent, version: try K3sVersion(v1))
        // Another controller's connection (`upkeep serve`'s, say) holds the one place.
        let other = AgentFleet(security: try pki.controllerSecurity(), endpoints: ["agent-1": endpoint],
                               configuration: AgentFleet.Configuration(connectTimeoutSeconds: 5))
        _ = try await other.client(for: "agent-1").connection()
        let inspections = await fleet.inspect([node])
        guard case .unreachable(let reason) = inspections.first?.verdict else {
            Issue.record("expected unreachable, got \(inspections)")
            return
        }
        #expect(reason.contains("the agent at \(endpoint) is at its connection limit") && reason.contains("sport = :\(server.port)"), "\(reason)")
        #expect(server.limits.count(.connections) == 1)
        await other.close()
        // With the place free again, the agent answers.
        var verdict = await fleet.inspect([node]).first?.verdict
        for _ in 0..<50 where verdict != .reachable {
            try await Task.sleep(for: .milliseconds(100))
            verdict = await fleet.inspect([node]).first?.verdict
        }
        #expect(verdict == .reachable, "\(String(describing: verdict))")
        await fleet.close()
        await server.shutdown()
    }
}
