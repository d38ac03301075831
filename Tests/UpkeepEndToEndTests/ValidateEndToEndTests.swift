import Foundation
import Testing
import UpkeepNotifyTestSupport
import UpkeepProcess
import UpkeepSandbox
import UpkeepStore

/// `upkeep validate` end to end: the built `upkeep` against one sandbox of three etcd servers and
/// an agent. Healthy, it exits 0; each fault — a cordon and a suspend made with kubectl, a frozen
/// etcd member, a Flux controller, CoreDNS or Traefik scaled to zero, a Kustomization changed
/// while its controller is down, one node's path to the cluster DNS broken, a node's kubelet
/// port closed, a node's k3s stopped, a slow Longhorn rebuild, a detached volume's replica
/// failed — makes it exit 1 naming the check that saw it, and healed,
/// it passes again. kubectl is the hand that breaks things; the sandbox's model reacts as
/// Kubernetes, Longhorn and Flux would.
@Suite(.serialized, .timeLimit(.minutes(6)))
struct ValidateEndToEndTests {
    static func kubectl(_ sandbox: EndToEndSandbox, _ arguments: [String]) async throws -> ProcessRun.Outcome {
        let outcome = try await ProcessRun.run("kubectl", ["--kubeconfig", "\(sandbox.directory)/kubeconfig"] + arguments, timeoutSeconds: 60)
        try #require(outcome.status == 0, "kubectl \(arguments.joined(separator: " ")) failed: \(outcome.output)")
        return outcome
    }

    /// `kubectl patch deployment NAME` to `replicas`: a controller scaled away and back.
    static func scale(_ sandbox: EndToEndSandbox, _ namespace: String, _ deployment: String, to replicas: Int) async throws {
        _ = try await kubectl(sandbox, ["-n", namespace, "patch", "deployment", deployment, "--type", "merge",
                                        "-p", #"{"spec":{"replicas":\#(replicas)}}"#])
    }

    /// `spec.suspend` of the Kustomization flux-system/apps set to `suspended`, as by hand.
    static func suspendApps(_ sandbox: EndToEndSandbox, _ suspended: Bool) async throws {
        _ = try await kubectl(sandbox, ["-n", "flux-system", "patch", "kustomizations.kustomize.toolkit.fluxcd.io", "apps", "--type", "merge",
                                        "-p", #"{"spec":{"suspend":\#(suspended)}}"#])
    }

    /// Runs `upkeep validate ARGUMENTS` until it exits `status` with every one of `texts` in its
    /// output (the model reacts within a tick or two), at most `timeoutSeconds`.
    static func validate(_ sandbox: EndToEndSandbox, _ arguments: [String], config: String? = nil, status: Int32, showing texts: [String],
                         timeoutSeconds: Double = 60) async throws -> String {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        var last: ProcessRun.Outcome?
        while Date() < deadline {
            let outcome = try await sandbox.controller(["validate"] + arguments, config: config, timeoutSeconds: 60)
            if outcome.status == status && texts.allSatisfy(outcome.output.contains) { return outcome.output }
            last = outcome
            try await Task.sleep(for: .milliseconds(500))
        }
        let shown = "upkeep validate \(arguments.joined(separator: " ")) did not exit \(status) showing \(texts) within \(Int(timeoutSeconds)) s; "
            + "last (exit \(last?.status ?? -1)):\n\(last?.output ?? "")"
        Issue.record("\(shown)")
        return last?.output ?? ""
    }

    @Test func eachCheckFailsOnItsFaultNamingItAndPassesOnceHealed() async throws {
        try await EndToEndSandbox.with(servers: 3, agents: 1, k3sVersion: EndToEndTests.start) { sandbox in
            // Healthy: every check passes, in text and in JSON.
            let healthy = try await Self.validate(sandbox, ["--all"], status: 0, showing: ["healthy   cluster/etcd: 3 of 3 members healthy (asked server-1)",
                                                                                        "healthy   storage/drain-policy: node-drain-policy block-if-contains-last-replica"])
            #expect(healthy.contains("\nhealthy: 17 of 17 checks\n"), "\(healthy)")
            let json = try await sandbox.controller(["validate", "--all", "-o", "json"])
            let report = try #require(try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any], "\(json.output)")
            let checks = report["checks"] as? [[String: Any]] ?? []
            #expect(json.status == 0 && report["healthy"] as? Bool == true && checks.count == 17
                    && checks.allSatisfy { $0["verdict"] as? String == "healthy" }
                    && checks.contains { $0["name"] as? String == "cluster/etcd" && $0["area"] as? String == "cluster" && $0["check"] as? String == "etcd" },
                    "\(json.output)")

            // cluster/cordons: a cordon nobody explains.
            _ = try await Self.kubectl(sandbox, ["cordon", "agent-1"])
            let cordoned = try await Self.validate(sandbox, [], status: 1, showing: ["UNHEALTHY cluster/cordons: cordoned, not by Upkeep: agent-1",
                                                                                   "`kubectl uncordon agent-1`"])
            #expect(cordoned.contains("\nunhealthy: cluster/cordons (1 of 4 checks)\n"), "\(cordoned)")
            _ = try await Self.kubectl(sandbox, ["uncordon", "agent-1"])

            // cluster/etcd: a member frozen (SIGSTOP), as the server agents see it.
            try await sandbox.fault(["server-3", "etcd-stop"])
            _ = try await Self.validate(sandbox, [], status: 1, showing: ["UNHEALTHY cluster/etcd: member not healthy: server-3-",
                                                                        "2 of 3 members healthy"])
            try await sandbox.fault(["server-3", "clear"])
            _ = try await Self.validate(sandbox, [], status: 0, showing: ["healthy   cluster/etcd: 3 of 3 members healthy"])

            // flux/suspended: suspended by hand is named; suspended by maintenance mode is not.
            try await Self.suspendApps(sandbox, true)
            _ = try await Self.validate(sandbox, ["--flux"], status: 1,
                                        showing: ["UNHEALTHY flux/suspended: suspended, not by maintenance mode: Kustomization/flux-system/apps",
                                                  "`flux resume kustomization apps -n flux-system`"])
            try await Self.suspendApps(sandbox, false)
            let enabled = try await sandbox.controller(["maintenance", "enable", "--reason", "validate test"])
            try #require(enabled.status == 0, "\(enabled.output)")
            _ = try await Self.validate(sandbox, ["--flux"], status: 0, showing: ["healthy   flux/suspended: ", "suspended by maintenance mode"])
            let disabled = try await sandbox.controller(["maintenance", "disable"])
            try #require(disabled.status == 0, "\(disabled.output)")

            // flux/controllers: source-controller scaled to zero.
            try await Self.scale(sandbox, "flux-system", "source-controller", to: 0)
            _ = try await Self.validate(sandbox, ["--flux"], status: 1, showing: ["UNHEALTHY flux/controllers: not available: source-controller (scaled to 0)"])
            try await Self.scale(sandbox, "flux-system", "source-controller", to: 1)
            _ = try await Self.validate(sandbox, ["--flux"], status: 0, showing: ["healthy   flux/controllers: "])

            // flux/ready: a Kustomization changed while kustomize-controller is down stays
            // unobserved (observedGeneration behind generation) until the controller is back.
            try await Self.scale(sandbox, "flux-system", "kustomize-controller", to: 0)
            _ = try await Self.validate(sandbox, ["--flux"], status: 1, showing: ["UNHEALTHY flux/controllers: not available: kustomize-controller (scaled to 0)"])
            _ = try await Self.kubectl(sandbox, ["-n", "flux-system", "patch", "kustomizations.kustomize.toolkit.fluxcd.io", "apps", "--type", "merge",
                                                 "-p", #"{"spec":{"interval":"7m"}}"#])
            _ = try await Self.validate(sandbox, ["--flux"], status: 1,
                                        showing: ["UNHEALTHY flux/ready: ", "Kustomization/flux-system/apps: Ready True, observedGeneration "])
            try await Self.scale(sandbox, "flux-system", "kustomize-controller", to: 1)
            _ = try await Self.validate(sandbox, ["--flux"], status: 0, showing: ["healthy   flux/ready: "])

            // networking/dns and networking/dns-from-nodes: CoreDNS scaled to zero; the agents'
            // queries get no answer from any node (kube-proxy has no endpoint to send them to).
            let resolves = "healthy   networking/dns-from-nodes: kubernetes.default.svc.cluster.local resolves to 10.43.0.1 from 4 of 4 nodes"
            _ = try await Self.validate(sandbox, ["--networking"], status: 0, showing: [resolves])
            try await Self.scale(sandbox, "kube-system", "coredns", to: 0)
            _ = try await Self.validate(sandbox, ["--networking"], status: 1,
                                        showing: ["UNHEALTHY networking/dns: CoreDNS is scaled to 0 (Deployment/kube-system/coredns)",
                                                  "healthy   networking/ingress: Traefik available: 1 of 1",
                                                  "UNHEALTHY networking/dns-from-nodes: kubernetes.default.svc.cluster.local does not resolve to 10.43.0.1 "
                                                      + "from 4 of 4 nodes: server-1, server-2, server-3, agent-1",
                                                  "agent-1 (via ", "): no answer: no answer from "])
            try await Self.scale(sandbox, "kube-system", "coredns", to: 1)
            _ = try await Self.validate(sandbox, ["--networking"], status: 0, showing: ["healthy   networking/dns: CoreDNS available: 1 of 1", resolves])

            // networking/dns-from-nodes: one node's path to the cluster DNS broken; only it is named.
            try await sandbox.fault(["agent-1", "dns-down"])
            let oneNode = try await Self.validate(sandbox, ["--networking"], status: 1,
                                                  showing: ["healthy   networking/dns: CoreDNS available: 1 of 1",
                                                            "UNHEALTHY networking/dns-from-nodes: kubernetes.default.svc.cluster.local does not resolve "
                                                                + "to 10.43.0.1 from 1 of 4 nodes: agent-1\n"])
            #expect(oneNode.contains("server-1 (via ") && oneNode.contains("): 10.43.0.1"), "\(oneNode)")
            try await sandbox.fault(["agent-1", "clear"])
            _ = try await Self.validate(sandbox, ["--networking"], status: 0, showing: [resolves])

            // networking/ingress: Traefik scaled to zero.
            try await Self.scale(sandbox, "kube-system", "traefik", to: 0)
            _ = try await Self.validate(sandbox, ["--networking"], status: 1,
                                        showing: ["UNHEALTHY networking/ingress: Traefik is scaled to 0 (Deployment/kube-system/traefik)"])
            try await Self.scale(sandbox, "kube-system", "traefik", to: 1)
            _ = try await Self.validate(sandbox, ["--networking"], status: 0, showing: ["healthy   networking/ingress: Traefik available: 1 of 1"])

            // networking/node-to-node: agent-1's kubelet port closed, as a host firewall rejecting it would close it.
            _ = try await Self.validate(sandbox, ["--networking"], status: 0,
                                        showing: ["healthy   networking/node-to-node: 4 nodes reach their peers' kubelet port (TCP 10250): 12 of 12 pairs connect"])
            try await sandbox.fault(["agent-1", "kubelet-port"])
            _ = try await Self.validate(sandbox, ["--networking"], status: 1,
                                        showing: ["UNHEALTHY networking/node-to-node: agent-1 unreachable from every other node on the kubelet port (TCP 10250)",
                                                  "server-1 → agent-1 ", ":10250: refused (", "host firewall accepts TCP 10250"])
            try await sandbox.fault(["agent-1", "clear"])
            _ = try await Self.validate(sandbox, ["--networking"], status: 0, showing: ["healthy   networking/node-to-node: 4 nodes reach"])
            // An agent that cannot be asked: its row is unknown, never a pass; the others still reach its node.
            try await sandbox.fault(["agent-1", "agent-down"])
            _ = try await Self.validate(sandbox, ["--networking"], status: 1,
                                        showing: ["UNKNOWN   networking/node-to-node: not every node could be asked: agent-1; the 3 asked reach every peer",
                                                  "agent-1: not asked: no answer from its agent: "])
            try await sandbox.fault(["agent-1", "clear"])

            // applications: what upkeep.yaml declares: a Deployment, a DaemonSet, a StatefulSet made with
            // kubectl, a URL (a stand-in on 127.0.0.1).
            let statefulSet = "\(sandbox.directory)/db.json"
            try #"{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"db","namespace":"default"},"spec":{"replicas":2,"#
                .appending(#""serviceName":"db","selector":{"matchLabels":{"app":"db"}},"template":{"metadata":{"labels":{"app":"db"}},"#)
                .appending(#""spec":{"containers":[{"name":"db","image":"postgres:16"}]}}}}"#)
                .write(toFile: statefulSet, atomically: true, encoding: .utf8)
            _ = try await Self.kubectl(sandbox, ["apply", "-f", statefulSet])
            let site = try await WebhookReceiver.start(then: .status(200))
            let declared = try sandbox.controllerConfig("apps", extra: """
                validate:
                  applications:
                    - {kind: Deployment, namespace: default, name: web}
                    - {kind: DaemonSet, namespace: longhorn-system, name: longhorn-manager}
                    - {kind: StatefulSet, name: db}
                    - {url: "\(site.url("/healthz"))", status: 200, timeout: 5s}
                """)
            let none = try await sandbox.controller(["validate", "--applications"])
            #expect(none.status == 2 && none.output.contains("declares no checks; list them under validate.applications"), "\(none.output)")
            _ = try await Self.validate(sandbox, ["--applications"], config: declared, status: 0,
                                        showing: ["healthy   applications/Deployment/default/web: web available: 2 of 2",
                                                  "healthy   applications/StatefulSet/default/db: db available: 2 of 2",
                                                  "healthy   applications/GET \(site.url("/healthz")): answered 200 as expected"])
            let pods = try await Self.kubectl(sandbox, ["get", "pods", "-l", "app=db", "-o", "name"])
            #expect(pods.output.split(separator: "\n").sorted() == ["pod/db-0", "pod/db-1"], "\(pods.output)")
            site.answer(then: .status(503))
            try await Self.scale(sandbox, "default", "web", to: 0)
            _ = try await Self.kubectl(sandbox, ["patch", "statefulset", "db", "--type", "merge", "-p", #"{"spec":{"replicas":0}}"#])
            let broken = try await sandbox.controller(["validate", "--all"], config: declared)
            #expect(broken.status == 1 && broken.output.contains("UNHEALTHY applications/Deployment/default/web: web is scaled to 0")
                    && broken.output.contains("UNHEALTHY applications/GET \(site.url("/healthz")): answered 503, expected 200")
                    && broken.output.contains("UNHEALTHY applications/StatefulSet/default/db: db is scaled to 0")
                    && broken.output.contains("healthy   applications/DaemonSet/longhorn-system/longhorn-manager: "), "\(broken.output)")
            await site.close()
            try await Self.scale(sandbox, "default", "web", to: 2)

            // storage/rebuilds and storage/attached: a replica failed on a node whose rebuilds are slow.
            let replicas = try await Self.kubectl(sandbox, ["-n", "longhorn-system", "get", "replicas.longhorn.io", "-o", "json"])
            let volumes = try await Self.kubectl(sandbox, ["-n", "longhorn-system", "get", "volumes.longhorn.io", "-o", "json"])
            let replicaItems = (try JSONSerialization.jsonObject(with: Data(replicas.output.utf8)) as? [String: Any])?["items"] as? [[String: Any]] ?? []
            let volumeItems = (try JSONSerialization.jsonObject(with: Data(volumes.output.utf8)) as? [String: Any])?["items"] as? [[String: Any]] ?? []
            func name(_ item: [String: Any]) -> String { (item["metadata"] as? [String: Any])?["name"] as? String ?? "" }
            func spec(_ item: [String: Any], _ key: String) -> String { (item["spec"] as? [String: Any])?[key] as? String ?? "" }
            let attached = volumeItems.filter { ($0["status"] as? [String: Any])?["state"] as? String == "attached" }.map(name).sorted()
            try #require(attached.count >= 2, "two attached volumes expected: \(volumes.output)")
            let failing = try #require(replicaItems.first { spec($0, "volumeName") == attached[0] }, "no replica of \(attached[0])")
            try await sandbox.fault([spec(failing, "nodeID"), "slow-rebuild", "600"])
            let failedAt = ISO8601DateFormatter().string(from: Date())
            _ = try await Self.kubectl(sandbox, ["-n", "longhorn-system", "patch", "replicas.longhorn.io", name(failing), "--type", "merge",
                                                 "-p", #"{"spec":{"failedAt":"\#(failedAt)"}}"#])
            try await Task.sleep(for: .seconds(2))
            _ = try await Self.validate(sandbox, ["--storage", "--rebuild-max", "1s"], status: 1,
                                        showing: ["UNHEALTHY storage/attached: 1 of \(attached.count) attached volumes not healthy: \(attached[0])",
                                                  "UNHEALTHY storage/rebuilds: 1 replicas rebuilding longer than 1 s: \(name(failing))"])

            // storage/detached: the other attached volume detached (its workload gone), one of its replicas failed.
            let detaching = attached[1]
            _ = try await Self.kubectl(sandbox, ["-n", "longhorn-system", "patch", "volumes.longhorn.io", detaching, "--type", "merge",
                                                 "-p", #"{"spec":{"nodeID":""}}"#])
            let lost = try #require(replicaItems.first { spec($0, "volumeName") == detaching }, "no replica of \(detaching)")
            _ = try await Self.kubectl(sandbox, ["-n", "longhorn-system", "patch", "replicas.longhorn.io", name(lost), "--type", "merge",
                                                 "-p", #"{"spec":{"failedAt":"\#(failedAt)"}}"#])
            _ = try await Self.validate(sandbox, ["--storage"], status: 1,
                                        showing: ["UNHEALTHY storage/detached: 1 of 1 detached volumes short of complete replicas: \(detaching)",
                                                  "\(name(lost)) on \(spec(lost, "nodeID")): failed"])

            // cluster/ready, storage/managers, storage/instance-managers: agent-1's k3s stopped.
            let agent = try #require(sandbox.manifest.nodes.first { $0.name == "agent-1" })
            let stopped = try await ProcessRun.run(agent.systemctl, ["stop", agent.unit], timeoutSeconds: 60)
            try #require(stopped.status == 0, "systemctl stop \(agent.unit) on agent-1 failed: \(stopped.output)")
            _ = try await Self.validate(sandbox, ["--storage"], status: 1,
                                        showing: ["UNHEALTHY cluster/ready: 1 of 4 nodes not Ready: agent-1",
                                                  "UNHEALTHY storage/managers: longhorn-manager not running and Ready on agent-1",
                                                  "UNHEALTHY storage/instance-managers: no running instance manager on agent-1"])
            // …and a declared DaemonSet: its pod on agent-1 is not Ready.
            _ = try await Self.validate(sandbox, ["--applications"], config: declared, status: 1,
                                        showing: ["UNHEALTHY applications/DaemonSet/longhorn-system/longhorn-manager: "])
        }
    }

    /// `--post-update`: before any rollout there is nothing to compare; a rollout killed midway
    /// is unfinished, which it names with what to do; resumed to its end, every node is at the
    /// version it meant.
    @Test func postUpdateComparesTheVersionsTheLastRolloutMeant() async throws {
        try await EndToEndSandbox.with(servers: 1, agents: 1, k3sVersion: EndToEndTests.start) { sandbox in
            _ = try await Self.validate(sandbox, ["--post-update"], status: 0,
                                        showing: ["healthy   versions/k3s: no rollout or update of k3s recorded",
                                                  "healthy   versions/longhorn: no rollout or update of longhorn recorded"])

            try await sandbox.fault(["agent-1", "slow-start", "4"])
            let apply = try sandbox.start(["apply", "--to", EndToEndTests.nextMinor, "--yes"])
            // Killed once server-1 is done and agent-1 (slow to start) is on its way: two versions.
            _ = try await apply.waitForPhase("agent-1", "draining", timeoutSeconds: 180)
            await apply.killHard()
            let unfinished = try await Self.validate(sandbox, ["--post-update"], status: 1,
                                                     showing: ["UNHEALTHY versions/k3s: rollout ", " is unfinished", "`upkeep resume` finishes it",
                                                               "UNHEALTHY cluster/version: nodes run 2 versions; rollout "])
            #expect(!unfinished.contains("versions/k3s: no rollout"), "\(unfinished)")

            // The post-update validation after the resume, configured to judge Flux too, finds a
            // Kustomization suspended by hand: the rollout completes, and resume exits 10 naming it.
            let original = try String(contentsOfFile: sandbox.config, encoding: .utf8)
            try #require(!original.contains("\nvalidate:"), "the sandbox's configuration has its own validate section")
            let judgingFlux = "\(sandbox.directory)/upkeep-after-change.yaml"
            try (original + "\nvalidate:\n  afterChange: [flux, networking, versions]\n").write(toFile: judgingFlux, atomically: true, encoding: .utf8)
            try await Self.suspendApps(sandbox, true)
            let resumed = try await sandbox.controller(["resume", "--force-takeover"], config: judgingFlux, timeoutSeconds: 240)
            #expect(resumed.status == 10 && resumed.output.contains("done: every node runs its target version")
                    && resumed.output.contains("post-update validation: 1 of ")
                    && resumed.output.contains("UNHEALTHY flux/suspended: suspended, not by maintenance mode: Kustomization/flux-system/apps"),
                    "\(resumed.output)")
            #expect(!resumed.output.contains("versions/k3s"), "only the failing checks are said:\n\(resumed.output)")
            // The networking checks ask the agents without the cluster's checks: healthy, unsaid.
            #expect(!resumed.output.contains("networking/"), "\(resumed.output)")
            // …and the state database keeps the result with the rollout.
            let listed = try await sandbox.controller(["history", "-o", "json"])
            let newest = try #require(try JSONDecoder().decode([RolloutRecord].self, from: Data(listed.output.utf8)).first, "\(listed.output)")
            let shown = try await sandbox.controller(["history", newest.id])
            #expect(shown.output.contains(" validate by ") && shown.output.contains("checks not healthy: flux/suspended"), "\(shown.output)")
            try await Self.suspendApps(sandbox, false)
            // Volumes may still be rebuilding just after the rollout: asked until every check passes.
            _ = try await Self.validate(sandbox, ["--post-update"], status: 0,
                                        showing: ["healthy   versions/k3s: at the version rollout ",
                                                  "server-1: \(EndToEndTests.nextMinor), meant \(EndToEndTests.nextMinor)"], timeoutSeconds: 120)
            let json = try await sandbox.controller(["validate", "--post-update", "-o", "json"])
            let report = try #require(try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any], "\(json.output)")
            let versions = (report["checks"] as? [[String: Any]] ?? []).first { $0["name"] as? String == "versions/k3s" }
            #expect(versions?["verdict"] as? String == "healthy"
                    && (report["areas"] as? [String])?.last == "versions"
                    && (versions?["evidence"] as? [String] ?? []).contains("agent-1: \(EndToEndTests.nextMinor), meant \(EndToEndTests.nextMinor)"),
                    "\(json.output)")
        }
    }
}
