import Foundation
import Testing
import UpkeepPKI
import UpkeepProcess
import UpkeepSandbox
import UpkeepTestSupport

/// `upkeep pki renew` against a sandbox's real agents, from outside: the agent's certificate is
/// replaced over its own connection, its key made on the node, and the cluster's agents answer
/// on new connections afterwards.
@Suite(.serialized, .timeLimit(.minutes(5))) struct PKIRenewEndToEndTests {
    @Test func renewReplacesAnAgentsCertificateOverItsConnection() async throws {
        try await EndToEndSandbox.with(servers: 1, agents: 1, k3sVersion: "v1.30.6+k3s1") { sandbox in
            let node = try #require(sandbox.manifest.nodes.last?.name)
            let pki = PKIDirectory(path: "\(sandbox.directory)/pki")
            let identity = try PeerIdentity(role: .agent, name: node)
            let before = try Certificate.loadChain(pemFile: pki.certificatePath(for: identity))[0]

            // The sandbox's certificates are 30 days old at most: none is due.
            let nothing = try await sandbox.controller(["pki", "renew"])
            #expect(nothing.status == 0 && nothing.output.contains("is due for renewal"), "\(nothing.output)")

            let renewed = try await sandbox.controller(["pki", "renew", node, "--days", "20"])
            #expect(renewed.status == 0 && renewed.output.contains("Renewed upkeep://agent/\(node)"), "\(renewed.output)")
            let after = try Certificate.loadChain(pemFile: pki.certificatePath(for: identity))[0]
            #expect(after != before)
            #expect(try PeerIdentity.from(after) == identity)
            // The sandbox agent reads its key from the same directory: the key there is the new one.
            #expect(after.matches(try PrivateKey(pemFile: pki.keyPath(for: identity))))
            #expect(abs(after.notAfter.timeIntervalSinceNow - 20 * 86_400) < 600)

            let agents = try await sandbox.controller(["agents"])
            #expect(agents.status == 0, "\(agents.output)")
            let unknown = try await sandbox.controller(["pki", "renew", "no-such-node", "--days", "20"])
            #expect(unknown.status != 0 && unknown.output.contains("no-such-node"), "\(unknown.output)")
        }
    }
}
