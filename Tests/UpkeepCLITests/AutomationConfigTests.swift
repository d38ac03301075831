import Testing
import UpkeepCLI
import UpkeepCore
import UpkeepRollout

/// `automation:` of upkeep.yaml, with the names issue 17 fixed (docs/serve.md).
@Suite struct AutomationConfigTests {
    @Test func theIssuesNamesReadIntoThePolicy() throws {
        let config = try ControllerConfig.parse("automation:\n  checkInterval: 1h\n  k3s: minor\n  channel: stable\n", file: "/u.yaml")
        #expect(config.automation == AutomationPolicy(checkIntervalSeconds: 3600, k3s: .minor, goal: .channel("stable")))
        let pinned = try ControllerConfig.parse("automation:\n  checkInterval: 30m\n  k3s: patch\n  k3sVersion: v1.31.4+k3s1\n", file: "/u.yaml")
        #expect(pinned.automation == AutomationPolicy(checkIntervalSeconds: 1800, k3s: .patch, goal: .pinned(try K3sVersion("v1.31.4+k3s1"))))
        #expect(pinned.automation?.description == "automation.k3s: patch (k3sVersion v1.31.4+k3s1)")
    }

    @Test func withoutTheSectionServeRunsNoLoopAndAnEmptyOneChecksOnly() throws {
        #expect(try ControllerConfig.parse("agentPort: 9443\n", file: "/u.yaml").automation == nil)
        let empty = try ControllerConfig.parse("automation: {}\n", file: "/u.yaml")
        #expect(empty.automation == AutomationPolicy(checkIntervalSeconds: 3600, k3s: .none, goal: .channel("stable")))
    }
}
