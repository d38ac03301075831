import Foundation
import Testing
import UpkeepNotifyTestSupport
import UpkeepProcess
import UpkeepCore
import UpkeepRollout
import UpkeepSandbox
import UpkeepStore

/// The gates, node selection, canaries and drain options end to end: the built `upkeep` against
/// sandbox clusters, a Prometheus stand-in answering `/api/v1/alerts` on 127.0.0.1, pods made and
/// deleted with kubectl, a real etcd member frozen, and kubectl (and etcdctl) as the witnesses.
@Suite(.serialized, .timeLimit(.minutes(6)))
struct GatesEndToEndTests {
    static let start = EndToEndTests.start
    /// The newest patch of `start`'s minor: one hop that moves every node.
    static let patch = EndToEndTests.offered.last { !$0.contains("-") && EndToEndTests.minor($0) == EndToEndTests.minor(start) } ?? start

    /// Prometheus's alerts API answer (https://prometheus.io/docs/prometheus/latest/querying/api/#alerts).
    static func alerts(_ alerts: [(name: String, state: String)]) -> WebhookReceiver.Answer {
        let items = alerts.map { #"{"labels":{"alertname":"\#($0.name)","severity":"warning"},"annotations":{},"state":"\#($0.state)","activeAt":"2026-12-07T02:00:00Z","value":"1e+00"}"# }
        return .json(status: 200, body: #"{"status":"success","data":{"alerts":["# + items.joined(separator: ",") + "]}}")
    }

    /// `sandbox.config` with `extra` appended, as `name` beside it.
    static func config(_ sandbox: EndToEndSandbox, _ name: String, _ extra: String) throws -> String {
        let path = "\(sandbox.directory)/\(name)"
        try (String(contentsOfFile: sandbox.config, encoding: .utf8) + "\n" + extra).write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static func kubectl(_ sandbox: EndToEndSandbox, _ arguments: [String]) async throws -> ProcessRun.Outcome {
        try await ProcessRun.run("kubectl", ["--kubeconfig", "\(sandbox.directory)/kubeconfig"] + arguments, timeoutSeconds: 60)
    }

    @Test func aFiringAlertHoldsTheRolloutUntilItClears() async throws {
        try #require(Self.patch != Self.start, "the release server offers no newer patch of \(Self.start): \(EndToEndTests.offered)")
        let prometheus = try await WebhookReceiver.start(then: Self.alerts([("Watchdog", "firing"), ("KubeNodeNotReady", "firing"),
                                                                             ("HighLatency", "pending")]))
        try await EndToEndSandbox.with(servers: 1, agents: 2, k3sVersion: Self.start) { sandbox in
            let config = try Self.config(sandbox, "upkeep-prometheus.yaml", """
                gates:
                  holdTimeout: 10m
                  prometheus: {url: "\(prometheus.url(""))", exclude: "^Watchdog$", timeout: 5s}
                """)
            // `plan` reads the gates and says they would hold.
            let plan = try await ProcessRun.run(sandbox.upkeep, ["--config", config, "plan", "--to", Self.patch], timeoutSeconds: 60)
            #expect(plan.status == 0 && plan.output.contains("  prometheus: firing: KubeNodeNotReady\n")
                    && plan.output.contains("they would hold the first wave now"), "\(plan.output)")

            let apply = try sandbox.start(["apply", "--to", Self.patch, "--yes"], config: config)
            let held = try await apply.waitForLine("the hold") { $0.contains("held by the gates: prometheus: alert firing: KubeNodeNotReady;") }
            #expect(held.contains("hop 1 s1: held by the gates") && held.contains("(gates.holdTimeout), then the rollout blocks"), "\(held)")
            // Held before anything: kubectl sees every node untouched, `status` and the metrics say why.
            try await Task.sleep(for: .seconds(2))
            let nodes = try await sandbox.nodes()
            #expect(nodes.values.allSatisfy { $0.version == Self.start && !$0.cordoned }, "\(nodes.values.map(\.description))")
            let status = try await ProcessRun.run(sandbox.upkeep, ["--config", config, "status"], timeoutSeconds: 30)
            #expect(status.output.contains("gates hold hop 1 s1 since ") && status.output.contains("  prometheus: alert firing: KubeNodeNotReady\n"),
                    "\(status.output)")
            let metrics = try await ProcessRun.run(sandbox.upkeep, ["--config", config, "metrics"], timeoutSeconds: 30)
            #expect(metrics.output.contains("upkeep_gate_held{gate=\"prometheus\"} 1"), "\(metrics.output)")
            #expect(prometheus.received.allSatisfy { $0.method == "GET" && $0.path == "/api/v1/alerts" }, "\(prometheus.received.map(\.uri))")

            // The alert clears (only the excluded one and a pending one remain): the rollout runs.
            prometheus.answer(then: Self.alerts([("Watchdog", "firing"), ("HighLatency", "pending")]))
            let code = await apply.exitCode(timeoutSeconds: 240)
            #expect(code == 0, "apply should finish once the alert clears:\n\(apply.output)")
            #expect(apply.output.contains("hop 1 s1: the gates no longer hold it (held "), "\(apply.output)")
            try await sandbox.expectAllNodes(at: Self.patch, "after the alert cleared")
            let after = try await ProcessRun.run(sandbox.upkeep, ["--config", config, "metrics"], timeoutSeconds: 30)
            #expect(after.output.contains("upkeep_gate_held{gate=\"prometheus\"} 0"), "\(after.output)")
        }
        await prometheus.close()
    }

    @Test func aBlockingPodHoldsUntilTheHoldTimeoutThenTheRolloutBlocksAndResumesOnceItIsGone() async throws {
        let receiver = try await WebhookReceiver.start()
        try await EndToEndSandbox.with(servers: 1, agents: 2, k3sVersion: Self.start) { sandbox in
            let secret = "\(sandbox.directory)/webhook.secret"
            try "e2e-gates-key\n".write(toFile: secret, atomically: true, encoding: .utf8)
            chmod(secret, 0o600)
            let config = try Self.config(sandbox, "upkeep-pods.yaml", """
                gates:
                  holdTimeout: 15s
                  blockingPods: {onNode: ["app=backup-job"]}
                notifications:
                  - {type: webhook, url: "\(receiver.url("/upkeep"))", secretFile: webhook.secret, events: [rollout.blocked]}
                """)
            // A backup job pinned to agent-2 (made with kubectl): server-1 and agent-1 may go, agent-2 may not.
            let job = #"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"backup-job","namespace":"default"},"spec":{"replicas":1,"#
                + #""selector":{"matchLabels":{"app":"backup-job"}},"template":{"metadata":{"labels":{"app":"backup-job"}},"spec":{"#
                + #""nodeSelector":{"kubernetes.io/hostname":"agent-2"},"containers":[{"name":"backup","image":"busybox:1.36"}]}}}}"#
            let manifest = "\(sandbox.directory)/backup-job.json"
            try job.write(toFile: manifest, atomically: true, encoding: .utf8)
            let created = try await Self.kubectl(sandbox, ["apply", "-f", manifest])
            try #require(created.status == 0, "\(created.output)")
            let running = try await Self.kubectl(sandbox, ["wait", "--for=condition=Ready", "pod", "-l", "app=backup-job", "--timeout=60s"])
            try #require(running.status == 0, "\(running.output)")

            let apply = try await ProcessRun.run(sandbox.upkeep, ["--config", config, "apply", "--to", Self.patch, "--yes"], timeoutSeconds: 240)
            #expect(apply.status == 3, "apply should block on the pod:\n\(apply.output)")
            #expect(apply.output.contains("hop 1 w2: held by the gates for 15 s (gates.holdTimeout): blockingPods: running on a node about to go: default/backup-job-")
                    && apply.output.contains(" on agent-2 (app=backup-job); `upkeep resume` once it clears"), "\(apply.output)")
            let nodes = try await sandbox.nodes()
            #expect(nodes["server-1"]?.version == Self.patch && nodes["agent-1"]?.version == Self.patch
                    && nodes["agent-2"]?.version == Self.start && nodes["agent-2"]?.cordoned == false, "\(nodes.values.map(\.description))")
            // The block was told, naming the gate.
            let told = await receiver.wait(for: 1)
            let details = told.first?.json?["details"] as? [String: String]
            #expect(told.first?.json?["event"] as? String == "rollout.blocked" && details?["gates"] == "blockingPods"
                    && details?["reason"]?.contains("backup-job") == true, "\(told.map(\.text))")

            let deleted = try await Self.kubectl(sandbox, ["delete", "deployment", "backup-job", "--wait=true", "--timeout=60s"])
            #expect(deleted.status == 0, "\(deleted.output)")
            _ = try await Self.kubectl(sandbox, ["wait", "--for=delete", "pod", "-l", "app=backup-job", "--timeout=60s"])
            let resume = try await ProcessRun.run(sandbox.upkeep, ["--config", config, "resume"], timeoutSeconds: 240)
            #expect(resume.status == 0 && resume.output.contains("done: every node runs its target version"), "\(resume.output)")
            try await sandbox.expectAllNodes(at: Self.patch, "after the pod went")
        }
        await receiver.close()
    }

    @Test func aFrozenEtcdMemberHoldsTheRolloutUntilItAnswersAgain() async throws {
        try await EndToEndSandbox.with(servers: 3, agents: 1, k3sVersion: Self.start) { sandbox in
            try await sandbox.fault(["server-3", "etcd-stop"])
            let server3 = try #require(sandbox.manifest.nodes.first { $0.name == "server-3" })
            // etcdctl, the second witness, finds the member unhealthy too.
            let witness = try await ProcessRun.run("etcdctl", ["--endpoints", server3.datastoreURL, "--command-timeout=2s", "endpoint", "health"],
                                                   environment: ["ETCDCTL_API": "3", "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin"],
                                                   timeoutSeconds: 30)
            #expect(witness.status != 0, "etcdctl should find server-3's member unhealthy:\n\(witness.output)")

            let apply = try sandbox.start(["apply", "--to", Self.patch, "--yes"])
            let held = try await apply.waitForLine("the etcd hold", timeoutSeconds: 150) { $0.contains("held by the gates: etcd: member not healthy: server-3-") }
            #expect(held.contains("(server-3): no answer within 3 s; 2 of 3 members healthy (asked server-1)"), "\(held)")
            let nodes = try await sandbox.nodes()
            #expect(nodes.values.allSatisfy { $0.version == Self.start && !$0.cordoned }, "nothing was touched: \(nodes.values.map(\.description))")

            try await sandbox.fault(["server-3", "clear"])
            let code = await apply.exitCode(timeoutSeconds: 300)
            #expect(code == 0, "apply should finish once the member answers:\n\(apply.output)")
            #expect(apply.output.contains("the gates no longer hold it"), "\(apply.output)")
            try await sandbox.expectAllNodes(at: Self.patch, "after the member came back")
        }
    }

    @Test func selectionCanaryAndDrainOptionsReachTheAgentsAndTheHistory() async throws {
        try await EndToEndSandbox.with(servers: 1, agents: 3, k3sVersion: Self.start) { sandbox in
            // Excluding the server while choosing agents for a new minor breaks the skew policy: refused by name.
            let skew = try await sandbox.controller(["plan", "--to", EndToEndTests.nextMinor, "--exclude", "server-1"])
            #expect(skew.status == 5 && skew.output.contains("--exclude server-1: agent agent-1 would run \(EndToEndTests.nextMinor) while server "
                                                              + "server-1, not selected, stays at \(Self.start): a kubelet must never be newer than an API server"),
                    "\(skew.output)")

            // A pod with emptyDir scratch space pinned to agent-1; kubectl's own drain refuses it without --delete-emptydir-data.
            let scratch = #"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"scratch","namespace":"default"},"spec":{"replicas":1,"#
                + #""selector":{"matchLabels":{"app":"scratch"}},"template":{"metadata":{"labels":{"app":"scratch"}},"spec":{"#
                + #""nodeSelector":{"kubernetes.io/hostname":"agent-1"},"volumes":[{"name":"tmp","emptyDir":{}}],"#
                + #""containers":[{"name":"scratch","image":"busybox:1.36"}]}}}}"#
            let manifest = "\(sandbox.directory)/scratch.json"
            try scratch.write(toFile: manifest, atomically: true, encoding: .utf8)
            try #require(try await Self.kubectl(sandbox, ["apply", "-f", manifest]).status == 0)
            let ready = try await Self.kubectl(sandbox, ["wait", "--for=condition=Ready", "pod", "-l", "app=scratch", "--timeout=60s"])
            try #require(ready.status == 0, "\(ready.output)")
            let before = try await Self.kubectl(sandbox, ["get", "pods", "-l", "app=scratch", "-o", "jsonpath={.items[0].metadata.name}"])
            let kubectlDrain = try await Self.kubectl(sandbox, ["drain", "agent-1", "--ignore-daemonsets", "--pod-selector", "app=scratch", "--dry-run=client"])
            #expect(kubectlDrain.status != 0 && kubectlDrain.output.contains("local storage"), "kubectl drain should refuse:\n\(kubectlDrain.output)")

            // Upkeep refuses the same pod the same way: the canary agent-1's drain, before anything is evicted.
            let selection = ["--canary", "1", "--canary-soak", "4s", "--exclude", "agent-3", "--drain-pod-selector", "app=scratch"]
            let refused = try await sandbox.controller(["apply", "--to", Self.patch, "--yes", "--no-delete-emptydir-data"] + selection, timeoutSeconds: 240)
            #expect(refused.status == 3 && refused.output.contains("uses emptyDir (its data would be lost)"), "\(refused.output)")
            #expect(refused.output.contains("drain: pods matching app=scratch; each node within 60 s"), "\(refused.output)")
            let stillThere = try await Self.kubectl(sandbox, ["get", "pods", "-l", "app=scratch", "-o", "jsonpath={.items[0].metadata.name}"])
            #expect(stillThere.output == before.output, "nothing was evicted: \(before.output) → \(stillThere.output)")
            let abandoned = try await sandbox.controller(["abandon", "--reason", "drain options", "--yes"])
            #expect(abandoned.status == 0, "\(abandoned.output)")

            // With the scratch data allowed to go: the canary alone, the soak, then the rest; agent-3 left alone.
            let apply = try await sandbox.controller(["apply", "--to", Self.patch, "--yes", "--delete-emptydir-data", "--drain-grace-period", "0"]
                                                     + selection, timeoutSeconds: 240)
            #expect(apply.status == 0, "\(apply.output)")
            #expect(apply.output.contains("agent-3") && apply.output.contains("not selected (--exclude agent-3)"), "\(apply.output)")
            #expect(apply.output.contains("canaries done (agent-1): soaking 4 s until "), "\(apply.output)")
            let nodes = try await sandbox.nodes()
            #expect(nodes["agent-1"]?.version == Self.patch && nodes["agent-2"]?.version == Self.patch && nodes["agent-3"]?.version == Self.start,
                    "\(nodes.values.map(\.description))")
            let after = try await Self.kubectl(sandbox, ["get", "pods", "-l", "app=scratch", "-o", "jsonpath={.items[0].metadata.name}"])
            #expect(after.output != before.output, "the scratch pod was drained (its Deployment made a new one)")

            // The history shows the order: the canary's wave, finished before the rest began, soak included.
            let record = try #require(try await sandbox.history().first)
            let canary = try #require(record.steps.first { $0.node == "agent-1" })
            let rest = try #require(record.steps.first { $0.node == "agent-2" })
            #expect(canary.progress.wave == "hop 1 c1" && rest.progress.wave == "hop 1 w1", "\(record.steps.map { "\($0.node) \($0.progress.wave)" })")
            if let finished = canary.finishedAt, let started = rest.startedAt {
                #expect(started.milliseconds(since: finished) >= 4000, "the rest began \(started.milliseconds(since: finished)) ms after the canary")
            } else {
                Issue.record("steps without times: \(record.steps)")
            }
            #expect(!record.steps.contains { $0.node == "agent-3" })
            // The drain options reached agent-1's agent: its journal records them with the drain.
            let journal = try String(contentsOfFile: "\(sandbox.directory)/nodes/agent-1/var/lib/upkeep-agent/journal.jsonl", encoding: .utf8)
            #expect(journal.contains(#""fingerprint":"drain 60 0 true app=scratch""#), "\(journal.suffix(2000))")
        }
    }
}
