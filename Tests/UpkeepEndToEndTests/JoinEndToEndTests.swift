import Foundation
import Testing
import UpkeepProcess
import UpkeepRollout
import UpkeepSandbox
import UpkeepStore

/// `upkeep sandbox up --join`: every node enrolls through `upkeep join-server` with one bootstrap
/// token and `upkeep-agent join`, then a full `upkeep apply` runs on it, with kubectl as witness;
/// `pki status` and `pki revoke` see the enrolled nodes.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct JoinEndToEndTests {
    @Test func aSandboxWhoseNodesEnrolledByTokenRunsAFullApply() async throws {
        try await EndToEndSandbox.with(servers: 1, agents: 2, k3sVersion: EndToEndTests.start, join: true) { sandbox in
            let fm = FileManager.default
            // The controller's PKI holds the CA and the controller identity, and no agent key
            // (admin.key is the simulated API's admin, k3s's own).
            let pki = "\(sandbox.directory)/pki"
            let keys = (fm.enumerator(atPath: pki)?.allObjects as? [String] ?? []).filter { $0.hasSuffix(".key") }.sorted()
            #expect(keys == ["admin.key", "ca.key", "controllers/upkeep.key"], "keys in the controller's pki: \(keys)")
            // Each node made its own key, 0600, and runs on the agent.yaml join wrote.
            for node in sandbox.manifest.nodes {
                let key = "\(node.root)/etc/upkeep/tls/agent.key"
                let mode = (try? fm.attributesOfItem(atPath: key))?[.posixPermissions] as? Int
                #expect(mode == 0o600, "\(key): mode \(mode.map { String($0, radix: 8) } ?? "missing")")
                let config = (try? String(contentsOfFile: node.agentConfigFile, encoding: .utf8)) ?? ""
                #expect(config.contains("Written by `upkeep-agent join`") && config.contains("nodeName: \(node.name)\n"), "\(config)")
            }
            // One token, spent once per node.
            let tokens = try await sandbox.controller(["token", "list"])
            #expect(tokens.status == 0 && tokens.output.contains("used up   3/3"), "\(tokens.output)")

            let apply = try await sandbox.controller(["apply", "--to", EndToEndTests.nextMinor, "--yes", "--skip-backup"], timeoutSeconds: 240)
            #expect(apply.status == 0, "apply should complete:\n\(apply.output)")
            #expect(apply.output.contains("done: every node runs its target version"), "\(apply.output)")
            try await sandbox.expectAllNodes(at: EndToEndTests.nextMinor, "after the upgrade")
            #expect(try await sandbox.history().first?.outcome == .completed)

            // The join server kept each issued certificate: certificate upkeep sees every node
            // from its enrollment on, and a revoked one is refused in the handshake.
            let status = try await sandbox.controller(["pki", "status"])
            #expect(status.status == 0, "\(status.output)")
            for node in sandbox.manifest.nodes {
                let row = status.output.split(separator: "\n").first { $0.hasPrefix("upkeep://agent/\(node.name) ") } ?? ""
                #expect(row.contains(" 20") && row.hasSuffix("pki/agents/\(node.name).crt"), "pki status for \(node.name):\n\(status.output)")
            }
            let node = try #require(sandbox.manifest.nodes.last).name
            let revoke = try await sandbox.controller(["pki", "revoke", node])
            #expect(revoke.status == 0 && revoke.output.contains("Revoked upkeep://agent/\(node)"), "\(revoke.output)")
            let agents = try await sandbox.controller(["agents"])
            #expect(agents.status == 5 && agents.output.contains("was revoked"), "\(agents.output)")
            // `sandbox down` (in `with`) stops the join server too: its pid is among those checked.
            #expect(fm.fileExists(atPath: "\(sandbox.directory)/join-server.pid"))
        }
    }
}
