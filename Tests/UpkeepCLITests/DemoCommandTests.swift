import Foundation
import Testing
import UpkeepTestSupport

/// `upkeep demo` as a new user runs it: the built binary against two real sandboxes (fake k3s,
/// real agents over mutual TLS), its output, and nothing left running afterwards.
@Suite struct DemoCommandTests {
    @Test func theDemoUpgradesThenRollsBackAndLeavesNothingRunning() throws {
        let directory = try TemporaryDirectory()
        let kept = directory.file("demo")
        let result = try UpkeepBinary.run(["demo", "--dir", kept], timeoutSeconds: 600)
        #expect(result.status == 0, "\(result.output.suffix(3000))\n\(result.error)")
        #expect(result.output.contains("Upgrade to v1.32.0+k3s1: 6 nodes in 2 hops"), "the plan is shown")
        #expect(result.output.contains("done: every node runs its target version"))
        #expect(result.output.contains("drains a disruption budget holds:") && result.output.contains("poddisruptionbudget default/web-strict allows 0"),
                "the rehearsal scene finds the budget")
        #expect(result.output.contains("the rehearsal exits 3") && result.output.contains("fixed before the window"))
        #expect(result.output.contains("Upgrade to v1.30.8+k3s1: 6 nodes in 1 hop"), "the failing run is a patch upgrade")
        #expect(result.output.contains("rollback: binaries"), "the plan says how its hop goes back")
        #expect(result.output.contains("did not become healthy on agent-2"))
        #expect(result.output.contains("failed and rolled back"))
        #expect(result.output.contains("done: Longhorn runs v1.8.2"), "the Longhorn update through Git")
        #expect(result.output.contains("done: Flux runs v2.5.1"), "the Flux update through Git")
        #expect(result.output.contains("hop 2: datastore backup r"), "a sealed datastore backup before each hop")
        #expect(result.output.contains("first run exit 0") && result.output.contains("second run exit 1"))
        // Each run ends with every node where the story says, as the API reports them.
        let afterwards = result.output.components(separatedBy: "nodes afterwards, as the API reports them:")
        #expect(afterwards.count == 3)
        if afterwards.count == 3 {
            #expect(afterwards[1].components(separatedBy: "v1.32.0+k3s1  Ready").count - 1 == 6, "\(afterwards[1].prefix(600))")
            #expect(afterwards[2].components(separatedBy: "v1.30.6+k3s1  Ready").count - 1 == 6, "\(afterwards[2].prefix(600))")
            #expect(!afterwards[2].contains("cordoned"))
        }
        // Every node enrolled with a token (`sandbox up --join`): its key is on the node, and the
        // controller's PKI holds none.
        for run in ["upgrade", "rollback"] {
            let agentKeys = (FileManager.default.enumerator(atPath: "\(kept)/\(run)/pki")?.allObjects as? [String] ?? [])
                .filter { $0.hasPrefix("agents/") && $0.hasSuffix(".key") }
            #expect(agentKeys.isEmpty, "agent keys in the controller's pki: \(agentKeys)")
            #expect(FileManager.default.fileExists(atPath: "\(kept)/\(run)/nodes/agent-2/etc/upkeep/tls/agent.key"))
        }
        // Both sandboxes are down: no process of theirs is left (the join servers included).
        for run in ["upgrade", "rollback"] {
            let leftovers = try runProcess("/usr/bin/pgrep", ["-f", "\(kept)/\(run)"])
            #expect(leftovers.output.isEmpty, "left running: \(leftovers.output)")
        }
    }
}
