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

    @Test func longhornAndFluxHaveAScopeAndAnOptionalCeiling() throws {
        let config = try ControllerConfig.parse("automation:\n  k3s: patch\n  longhorn: minor\n  longhornVersion: v1.9.1\n  flux: patch\n",
                                                file: "/u.yaml")
        let policy = try #require(config.automation)
        #expect(policy.longhorn == AutomationPolicy.GitOps(scope: .minor, pinned: try K3sVersion("v1.9.1")))
        #expect(policy.flux == AutomationPolicy.GitOps(scope: .patch, pinned: nil))
        #expect(policy.description(of: .longhorn) == "automation.longhorn: minor (longhornVersion v1.9.1)")
        #expect(policy.description(of: .flux) == "automation.flux: patch")
        #expect(policy.description == "automation.k3s: patch (channel stable)", "a rollout's policy names k3s alone, as before")
        let unset = try #require(try ControllerConfig.parse("automation: {k3s: minor}\n", file: "/u.yaml").automation)
        #expect(unset.longhorn.scope == .none && unset.flux.scope == .none, "nothing through Git unless asked for")
    }

    @Test func withoutTheSectionServeRunsNoLoopAndAnEmptyOneChecksOnly() throws {
        #expect(try ControllerConfig.parse("agentPort: 9443\n", file: "/u.yaml").automation == nil)
        let empty = try ControllerConfig.parse("automation: {}\n", file: "/u.yaml")
        #expect(empty.automation == AutomationPolicy(checkIntervalSeconds: 3600, k3s: .none, goal: .channel("stable")))
    }
}
