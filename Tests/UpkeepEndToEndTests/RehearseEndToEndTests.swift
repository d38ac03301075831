import Foundation
import Testing
import UpkeepCore
import UpkeepProcess
import UpkeepStore

/// `upkeep rehearse` against a sandbox that plays the live cluster: the built `upkeep` captures
/// it, starts a twin with the sandbox program, runs the plan there, and the live sandbox's API
/// audit (`/sandbox/v1/audit`) and `kubectl get nodes` witness that nothing live was touched.
@Suite(.serialized, .timeLimit(.minutes(20)))
struct RehearseEndToEndTests {
    static let from = "v1.30.6+k3s1"
    static let patch = "v1.30.8+k3s1"

    /// What the live API's audit says (`kubectl get --raw /sandbox/v1/audit`).
    static func audit(_ sandbox: EndToEndSandbox) async throws -> [String: Any] {
        let outcome = try await ProcessRun.run("kubectl", ["--kubeconfig", "\(sandbox.directory)/kubeconfig", "get", "--raw", "/sandbox/v1/audit"],
                                               timeoutSeconds: 30)
        try #require(outcome.status == 0, "kubectl get --raw /sandbox/v1/audit failed: \(outcome.output)")
        return try #require(try JSONSerialization.jsonObject(with: Data(outcome.output.utf8)) as? [String: Any])
    }

    /// The rehearsal's requests were reads, and every write the live API saw since it started was
    /// a node's own heartbeat (its status, its lease), kubectl's (the test's), or from before.
    static func expectReadsOnly(_ audit: [String: Any], writesBefore: Int) {
        let clients = audit["clients"] as? [String: [String: Int]] ?? [:]
        let rehearsal = clients["upkeep-rehearse"] ?? [:]
        #expect(Array(rehearsal.keys) == ["GET"] && (rehearsal["GET"] ?? 0) > 0, "the rehearsal's requests: \(rehearsal)")
        let writes = (audit["writes"] as? [[String: String]] ?? [])
        #expect(!writes.contains { $0["userAgent"] == "upkeep-rehearse" })
        let heartbeat = writes.dropFirst(min(writesBefore, writes.count)).filter { write in
            let path = write["path"] ?? ""
            let nodeStatus = path.hasPrefix("/api/v1/nodes/") && path.hasSuffix("/status")
            let nodeLease = path.hasPrefix("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/")
            return !(nodeStatus || nodeLease)
        }
        #expect(heartbeat.isEmpty, "writes other than node heartbeats while rehearsing: \(heartbeat)")
    }

    static func json(_ output: String) throws -> [String: Any] {
        let start = try #require(output.firstIndex(of: "{"), "no JSON in: \(output)")
        let end = try #require(output.lastIndex(of: "}"))
        return try #require(try JSONSerialization.jsonObject(with: Data(output[start...end].utf8)) as? [String: Any], "not JSON: \(output)")
    }

    /// About a minute: a 1 + 2 sandbox, its twin, a rollout there that a budget holds.
    @Test func aBudgetAllowingNoDisruptionIsNamedWithItsNodeAndNothingLiveIsTouched() async throws {
        try await EndToEndSandbox.with(servers: 1, agents: 2, k3sVersion: Self.from) { sandbox in
            // One pod of `shop` pinned to agent-2 and a budget that keeps it: no disruption allowed.
            let manifest = """
                {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "shop", "namespace": "default"},
                 "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "shop"}},
                          "template": {"metadata": {"labels": {"app": "shop"}},
                                       "spec": {"nodeSelector": {"kubernetes.io/hostname": "agent-2"},
                                                "containers": [{"name": "shop", "image": "nginx:1.27"}]}}}}
                """
            let budget = """
                {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "shop", "namespace": "default"},
                 "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "shop"}}}}
                """
            for (name, text) in [("shop.json", manifest), ("shop-pdb.json", budget)] {
                try text.write(toFile: "\(sandbox.directory)/\(name)", atomically: true, encoding: .utf8)
                let applied = try await ProcessRun.run("kubectl", ["--kubeconfig", "\(sandbox.directory)/kubeconfig", "apply", "-f",
                                                                   "\(sandbox.directory)/\(name)"], timeoutSeconds: 30)
                try #require(applied.status == 0, "kubectl apply \(name): \(applied.output)")
            }
            try await waitForBudget(sandbox, "shop", allowed: 0, healthy: 1)
            let before = try await sandbox.nodes()
            let writesBefore = (try await Self.audit(sandbox)["writes"] as? [Any])?.count ?? 0

            // With a gate of blocking pods that `shop` matches: read on the live side, reported as holding.
            let gated = try sandbox.controllerConfig("rehearse", extra: "gates: {blockingPods: {anywhere: [\"app=shop\"]}}")
            let rehearsal = try await sandbox.controller(["rehearse", "--to", Self.patch, "--speed", "5", "-o", "json"], config: gated,
                                                         timeoutSeconds: 600)

            #expect(rehearsal.status != 0, "a held drain must not pass: \(rehearsal.output)")
            let report = try Self.json(rehearsal.output)
            let holds = report["holds"] as? [[String: Any]] ?? []
            #expect(holds.contains { $0["node"] as? String == "agent-2" && $0["budget"] as? String == "default/shop" && $0["allowed"] as? Int == 0 },
                    "\(rehearsal.output)")
            #expect((report["exitCode"] as? Int).map { $0 != 0 } == true)
            let gateHolds = report["gateHolds"] as? [String] ?? []
            #expect(gateHolds.contains { $0.hasPrefix("blockingPods") && $0.contains("shop") }, "\(report["gates"] ?? "no gates")")
            #expect(rehearsal.output.contains("Error: "), "the reason is said: \(rehearsal.output)")
            // Live: the same nodes, versions and cordons; the API saw only reads from the rehearsal.
            #expect(try await sandbox.nodes().mapValues { [$0.version, "\($0.cordoned)"] } == before.mapValues { [$0.version, "\($0.cordoned)"] })
            Self.expectReadsOnly(try await Self.audit(sandbox), writesBefore: writesBefore)
            #expect(try await sandbox.history().isEmpty, "the rehearsal recorded nothing in the operator's state database")
        }
    }

    /// About two minutes: a 1 + 2 sandbox rehearsed at speed 1 with its own step times, then
    /// upgraded for real; the twin's rollout takes within 20 % of the real one's time.
    @Test func thePredictedDurationIsWithinTwentyPercentOfARealApply() async throws {
        try await EndToEndSandbox.with(servers: 1, agents: 2, k3sVersion: Self.from) { sandbox in
            // The seeded budget `web` (minAvailable 1 of 2) allows one eviction once both pods are Ready.
            try await waitForBudget(sandbox, "web", allowed: 1, healthy: 2)
            let rehearsal = try await sandbox.controller(["rehearse", "--to", Self.patch, "--speed", "1", "--rebuild-seconds", "1", "-o", "json"],
                                                         timeoutSeconds: 600)
            try #require(rehearsal.status == 0, "\(rehearsal.output)")
            let predicted = try #require(try Self.json(rehearsal.output)["totalSeconds"] as? Double, "\(rehearsal.output)")

            let applied = try await sandbox.controller(["apply", "--to", Self.patch, "--yes"], timeoutSeconds: 600)
            try #require(applied.status == 0, "\(applied.output)")
            let record = try #require(try await sandbox.history().first)
            let started = try #require(record.startedAt), finished = try #require(record.finishedAt)
            let real = Double(finished.milliseconds(since: started)) / 1000
            #expect(abs(predicted - real) <= 0.2 * real, "predicted \(predicted) s, the real apply took \(real) s")
        }
    }

    /// Several minutes: a 3 + 3 sandbox (real etcd), every node's new k3s failing in turn on the twin.
    @Test func aDrillOverEveryNodeOfAThreePlusThreeClusterReportsEachRollback() async throws {
        try await EndToEndSandbox.with(servers: 3, agents: 3, k3sVersion: Self.from) { sandbox in
            let before = try await sandbox.nodes()
            let writesBefore = (try await Self.audit(sandbox)["writes"] as? [Any])?.count ?? 0
            let drill = try await sandbox.controller(["rehearse", "--drill", "--to", Self.patch, "--speed", "5", "--rebuild-seconds", "1",
                                                      "-o", "json"], timeoutSeconds: 1500)
            #expect(drill.status == 0, "\(drill.output)")
            let drills = try Self.json(drill.output)["drills"] as? [[String: Any]] ?? []
            #expect(drills.compactMap { $0["failing"] as? String }.sorted() == before.keys.sorted(), "\(drill.output)")
            for run in drills {
                let failing = run["failing"] as? String ?? "?"
                #expect(run["exitCode"] as? Int == 1 && (run["outcome"] as? String ?? "").hasPrefix("rolled back"), "\(failing): \(run)")
                let after = run["nodesAfter"] as? [String] ?? []
                #expect(after.count == before.count && after.allSatisfy { $0.contains(" \(Self.from) Ready") && !$0.contains("cordoned") },
                        "\(failing): \(after)")
            }
            #expect(try await sandbox.nodes().mapValues { [$0.version, "\($0.cordoned)"] } == before.mapValues { [$0.version, "\($0.cordoned)"] })
            Self.expectReadsOnly(try await Self.audit(sandbox), writesBefore: writesBefore)
        }
    }

    /// Polls (bounded) until the live budget `default/NAME` allows `allowed` disruptions with `healthy` pods.
    func waitForBudget(_ sandbox: EndToEndSandbox, _ name: String, allowed: Int, healthy: Int) async throws {
        let deadline = Date().addingTimeInterval(60)
        var last = ""
        while Date() < deadline {
            let outcome = try await ProcessRun.run("kubectl", ["--kubeconfig", "\(sandbox.directory)/kubeconfig", "get", "pdb", name, "-n", "default",
                                                               "-o", "jsonpath={.status.disruptionsAllowed}/{.status.currentHealthy}"], timeoutSeconds: 30)
            last = outcome.output
            if outcome.status == 0, outcome.output.hasPrefix("\(allowed)/\(healthy)") { return }
            try await Task.sleep(for: .milliseconds(500))
        }
        Issue.record("the budget \(name) never allowed \(allowed) with \(healthy) pods healthy: \(last)")
    }
}
