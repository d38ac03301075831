import Foundation
import Testing
import UpkeepAgent
import UpkeepProtocol
import UpkeepTestSupport
import Yams

/// The repository's `deploy/` directory, found from this source file.
private let deployDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("deploy").path

@Suite struct DeployFilesTests {
    /// `systemd-analyze verify` on the unit as shipped, with only ExecStart's binary pointed at the
    /// built agent (verify checks that it exists). Any warning fails the test.
    @Test func agentUnitPassesSystemdAnalyzeVerify() throws {
        let unit = try String(contentsOfFile: "\(deployDirectory)/upkeep-agent.service", encoding: .utf8)
        #expect(unit.contains("\nExecStart=/usr/local/bin/upkeep-agent run --config /etc/upkeep/agent.yaml\n"))
        for line in ["Type=notify", "Restart=always", "WatchdogSec=60s", "ReadWritePaths=/usr/local/bin", "ProtectSystem=strict",
                     "NoNewPrivileges=yes", "StateDirectory=upkeep-agent"] {
            #expect(unit.contains("\n\(line)\n"), "missing \(line)")
        }
        let directory = try TemporaryDirectory()
        let path = try directory.write(unit.replacingOccurrences(of: "/usr/local/bin/upkeep-agent", with: try AgentBinary.path()),
                                       to: "upkeep-agent.service")
        let result = try runProcess("systemd-analyze", ["verify", path], timeoutSeconds: 60)
        #expect(result.status == 0, "\(result.output)\(result.error)")
        #expect(result.output.isEmpty && result.error.isEmpty, "systemd-analyze warned: \(result.output)\(result.error)")
    }

    @Test func systemdAnalyzeCatchesABrokenUnit() throws {
        let directory = try TemporaryDirectory()
        let path = try directory.write("[Service]\nType=notify\nExecStart=\(try AgentBinary.path()) run\nRestartt=always\n", to: "broken.service")
        let result = try runProcess("systemd-analyze", ["verify", path], timeoutSeconds: 60)
        #expect(result.error.contains("Unknown key 'Restartt'"))
    }

    /// The Debian package's example agent.yaml reads, and the limits it writes out are the defaults.
    @Test func theExampleAgentYamlReadsAndStatesTheDefaults() throws {
        let config = try ConfigLoader.load(path: "\(deployDirectory)/debian/agent.yaml.example")
        let defaults = AgentConfig(nodeName: config.nodeName)
        #expect(config.server == ServerConfiguration() && config.server == defaults.server)
        #expect(config.listenAddress == defaults.listenAddress && config.listenPort == defaults.listenPort)
    }

    /// The ClusterRole grants exactly what drains and the node-Ready probe use.
    @Test func rbacGrantsOnlyWhatDrainsNeed() throws {
        let text = try String(contentsOfFile: "\(deployDirectory)/rbac.yaml", encoding: .utf8)
        let documents = try Yams.load_all(yaml: text).compactMap { $0 as? [String: Any] }
        #expect(documents.compactMap { $0["kind"] as? String } == ["Namespace", "ServiceAccount", "Secret", "ClusterRole", "ClusterRoleBinding"])
        let role = try #require(documents.first { $0["kind"] as? String == "ClusterRole" })
        let rules = try #require(role["rules"] as? [[String: Any]])
        var granted: [String: Set<String>] = [:]
        for rule in rules {
            #expect(rule["apiGroups"] as? [String] == [""])
            for resource in rule["resources"] as? [String] ?? [] { granted[resource, default: []].formUnion(rule["verbs"] as? [String] ?? []) }
        }
        #expect(granted == ["nodes": ["get", "patch"], "pods": ["get", "list"], "pods/eviction": ["create"]])
        let binding = try #require(documents.first { $0["kind"] as? String == "ClusterRoleBinding" })
        let subject = try #require((binding["subjects"] as? [[String: Any]])?.first)
        #expect(subject["name"] as? String == "upkeep-agent" && subject["namespace"] as? String == "upkeep-system")
    }

    /// The controller's Role grants the Lease kube-system/upkeep: get and update by name,
    /// create (RBAC cannot name what does not exist yet), and nothing else.
    @Test func controllerRBACGrantsOnlyItsLease() throws {
        let text = try String(contentsOfFile: "\(deployDirectory)/rbac-controller.yaml", encoding: .utf8)
        let documents = try Yams.load_all(yaml: text).compactMap { $0 as? [String: Any] }
        #expect(documents.compactMap { $0["kind"] as? String } == ["Namespace", "ServiceAccount", "Role", "RoleBinding"])
        let role = try #require(documents.first { $0["kind"] as? String == "Role" })
        #expect((role["metadata"] as? [String: Any])?["namespace"] as? String == "kube-system")
        let rules = try #require(role["rules"] as? [[String: Any]])
        var granted: Set<String> = []
        for rule in rules {
            #expect(rule["apiGroups"] as? [String] == ["coordination.k8s.io"] && rule["resources"] as? [String] == ["leases"])
            let names = (rule["resourceNames"] as? [String])?.joined(separator: ",") ?? "*"
            for verb in rule["verbs"] as? [String] ?? [] { granted.insert("\(verb) \(names)") }
        }
        #expect(granted == ["get upkeep", "update upkeep", "create *"])
        let binding = try #require(documents.first { $0["kind"] as? String == "RoleBinding" })
        #expect((binding["metadata"] as? [String: Any])?["namespace"] as? String == "kube-system")
        #expect((binding["roleRef"] as? [String: Any])?["name"] as? String == "upkeep-controller-lease")
        let subject = try #require((binding["subjects"] as? [[String: Any]])?.first)
        #expect(subject["name"] as? String == "upkeep-controller" && subject["namespace"] as? String == "upkeep-system")
    }
}
