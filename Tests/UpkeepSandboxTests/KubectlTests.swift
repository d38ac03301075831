import Foundation
import Testing
import UpkeepKube
import UpkeepPKI
import UpkeepProcess
@testable import UpkeepSandbox

/// The real kubectl is the judge of the simulated API.
@Suite(.timeLimit(.minutes(2)))
struct KubectlTests {
    static let small = ClusterSpec(servers: 1, agents: 2, volumes: 3, replicas: 2)

    @Test func getNodesWideShowsEveryNodeWithStatusRolesVersionAndAddress() async throws {
        let api = try await APIHarness(spec: Self.small)
        defer { Task { await api.close() } }
        #expect(await api.waitUntil { api.cluster.withModel { $0.summary()["ready"] == true } })
        let result = try await api.kubectl("get", "nodes", "-o", "wide")
        #expect(result.status == 0, "\(result.output)")
        let lines = result.output.split(separator: "\n").map(String.init)
        #expect(lines.first?.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"])
        let server = try #require(lines.first { $0.hasPrefix("server-1 ") })
        // A single server keeps its datastore in SQLite: no etcd role.
        #expect(server.contains(" Ready ") && server.contains(" control-plane,master ") && server.contains("v1.30.6+k3s1")
            && server.contains("127.0.1.1"), "\(server)")
        #expect(lines.filter { $0.hasPrefix("agent-") }.count == 2)
        let embedded = try await APIHarness(spec: ClusterSpec(servers: 3, agents: 0, volumes: 0))
        defer { Task { await embedded.close() } }
        let roles = try await embedded.kubectl("get", "nodes", "--no-headers", "-o", "custom-columns=ROLES:.metadata.labels.node-role\\.kubernetes\\.io/etcd")
        #expect(roles.output == "true\ntrue\ntrue\n", "servers with embedded etcd carry the role: \(roles.output)")
    }

    /// kubectl validates a manifest by default: it reads the OpenAPI v3 documents, finds that the
    /// server validates fields itself, and sends `fieldValidation=Strict`; no `--validate=false`.
    @Test func applyOfOrdinaryManifestsWorksWithValidationOn() async throws {
        let api = try await APIHarness(spec: Self.small)
        defer { Task { await api.close() } }
        func manifest(_ value: String) -> String {
            """
            apiVersion: v1
            kind: ConfigMap
            metadata: {name: applied, namespace: default}
            data: {k: \(value)}
            ---
            apiVersion: apps/v1
            kind: Deployment
            metadata: {name: web, namespace: default}
            spec:
              replicas: 1
              selector: {matchLabels: {app: web}}
              template:
                metadata: {labels: {app: web}}
                spec: {containers: [{name: web, image: "nginx:\(value)"}]}
            ---
            apiVersion: longhorn.io/v1beta2
            kind: Setting
            metadata: {name: applied-setting, namespace: longhorn-system}
            value: "\(value)"
            """
        }
        let file = "\(api.directory)/manifest.yaml"
        for (round, value) in ["one", "two"].enumerated() {
            try manifest(value).write(toFile: file, atomically: true, encoding: .utf8)
            let applied = try await api.kubectl("apply", "-f", file)
            #expect(applied.status == 0, "round \(round): \(applied.output)")
            #expect(applied.output.contains(round == 0 ? "configmap/applied created" : "configmap/applied configured"), "\(applied.output)")
        }
        #expect(api.get(.configMaps, "default", "applied")?[path: "data", "k"]?.string == "two")
        #expect(api.get(.longhornSettings, "longhorn-system", "applied-setting")?["value"]?.string == "two")
        #expect(api.get(.deployments, "default", "web")?[path: "spec", "template", "spec", "containers"]?.array?.first?["image"]?.string == "nginx:two")
        let index = try await api.kubectl("get", "--raw", "/openapi/v3")
        #expect(index.output.contains("\"apis/longhorn.io/v1beta2\""), "\(index.output)")
    }

    @Test func kubectlTalksHTTPSWithTheAdminClientCertificateAndIsRefusedWithout() async throws {
        let api = try await APIHarness(spec: Self.small, tls: true)
        defer { Task { await api.close() } }
        let mode = try FileManager.default.attributesOfItem(atPath: "\(api.directory)/kubeconfig")[.posixPermissions] as? Int
        #expect(mode == 0o600, "the kubeconfig holds the admin key")
        let nodes = try await api.kubectl("get", "nodes")
        #expect(nodes.status == 0 && nodes.output.contains("server-1"), "\(nodes.output)")
        let version = try await api.kubectl("version", "-o", "json")
        #expect(version.output.contains("\"gitVersion\": \"v1.30.6+k3s1\""), "\(version.output)")
        // The same server without the client certificate: refused during the handshake.
        let credentials = try #require(api.credentials)
        let anonymous = """
            apiVersion: v1
            kind: Config
            clusters:
            - name: s
              cluster: {server: "\(api.baseURL)", certificate-authority-data: \(Data(try credentials.serverCA.certificate.pem().utf8).base64EncodedString())}
            contexts:
            - name: s
              context: {cluster: s, user: nobody}
            current-context: s
            users:
            - name: nobody
              user: {token: not-a-certificate}
            """
        try anonymous.write(toFile: "\(api.directory)/anonymous", atomically: true, encoding: .utf8)
        let refused = try await ProcessRun.run("kubectl", ["--kubeconfig", "\(api.directory)/anonymous", "--cache-dir", "\(api.directory)/c2",
                                                           "get", "nodes", "--request-timeout=5s"], timeoutSeconds: 30)
        #expect(refused.status != 0)
        #expect(refused.output.contains("certificate") || refused.output.contains("tls"), "\(refused.output)")
    }

    @Test func cordonAndUncordonChangeTheNodeAsKubectlShowsIt() async throws {
        let api = try await APIHarness(spec: Self.small)
        defer { Task { await api.close() } }
        let cordon = try await api.kubectl("cordon", "agent-1")
        #expect(cordon.status == 0 && cordon.output.contains("node/agent-1 cordoned"), "\(cordon.output)")
        #expect(Node(json: try #require(api.get(.nodes, nil, "agent-1"))).unschedulable)
        let listed = try await api.kubectl("get", "node", "agent-1")
        #expect(listed.output.contains("SchedulingDisabled"))
        let again = try await api.kubectl("cordon", "agent-1")
        #expect(again.output.contains("already cordoned"))
        let uncordon = try await api.kubectl("uncordon", "agent-1")
        #expect(uncordon.status == 0 && uncordon.output.contains("node/agent-1 uncordoned"), "\(uncordon.output)")
        let node = Node(json: try #require(api.get(.nodes, nil, "agent-1")))
        #expect(!node.unschedulable)
        #expect(!node.taints.contains { $0["key"]?.string == "node.kubernetes.io/unschedulable" })
    }

    /// Puts a deployment's pods all on `node` (by cordoning the others while it starts).
    func deployOnto(_ api: APIHarness, node: String, name: String, replicas: Int64, minAvailable: Int64) async throws {
        let others = api.cluster.withModel { $0.spec.nodeNames }.filter { $0 != node }
        for other in others { _ = try await api.kubectl("cordon", other) }
        api.create(.deployments, Seed.deployment("default", name, replicas: replicas, image: "busybox:1.36"))
        api.create(.podDisruptionBudgets, ["metadata": ["name": .string(name), "namespace": "default"],
                                           "spec": ["minAvailable": .int(minAvailable), "selector": ["matchLabels": ["app": .string(name)]]]])
        let running = await api.waitUntil {
            api.pods(on: node).filter { $0.labels["app"] == name && $0.isReady }.count == Int(replicas)
        }
        #expect(running, "pods of \(name) did not start on \(node)")
        for other in others { _ = try await api.kubectl("uncordon", other) }
    }

    @Test func drainRetriesABudgetThatClearsAndFinishes() async throws {
        let api = try await APIHarness(spec: ClusterSpec(servers: 1, agents: 2, volumes: 0, replicas: 1))
        defer { Task { await api.close() } }
        try await deployOnto(api, node: "agent-1", name: "burst", replicas: 2, minAvailable: 1)
        let drain = try await api.kubectl("drain", "agent-1", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=60s",
                                          timeoutSeconds: 90)
        #expect(drain.status == 0, "\(drain.output)")
        #expect(drain.output.contains("Cannot evict pod as it would violate the pod's disruption budget."), "\(drain.output)")
        #expect(drain.output.contains("node/agent-1 drained"))
        let left = api.pods(on: "agent-1").filter { !$0.isDaemonSetPod }
        #expect(left.isEmpty, "\(left.map(\.name))")
        #expect(api.cluster.withModel { $0.store.list(.pods).map(Pod.init).filter { $0.labels["app"] == "burst" && !$0.isTerminating }.count } == 2)
    }

    @Test func drainTimesOutOnABudgetThatNeverClears() async throws {
        let api = try await APIHarness(spec: ClusterSpec(servers: 1, agents: 2, volumes: 0, replicas: 1))
        defer { Task { await api.close() } }
        try await deployOnto(api, node: "agent-1", name: "solo", replicas: 1, minAvailable: 1)
        let drain = try await api.kubectl("drain", "agent-1", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=7s",
                                          timeoutSeconds: 60)
        #expect(drain.status != 0)
        #expect(drain.output.contains("global timeout reached: 7s"), "\(drain.output)")
        #expect(api.pods(on: "agent-1").contains { $0.labels["app"] == "solo" && !$0.isTerminating })
        #expect(Node(json: try #require(api.get(.nodes, nil, "agent-1"))).unschedulable)
    }

    @Test func drainOfANodeHoldingTheLastHealthyReplicaIsBlockedByLonghorn() async throws {
        let api = try await APIHarness(spec: ClusterSpec(servers: 1, agents: 2, volumes: 3, replicas: 2))
        defer { Task { await api.close() } }
        #expect(await api.waitUntil { api.cluster.withModel { $0.summary()["ready"] == true } })
        let first = try await api.kubectl("drain", "agent-1", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=30s")
        #expect(first.status == 0, "\(first.output)")
        // agent-1's replicas stopped: whatever node holds the other copy now holds the last one.
        let blocked = api.cluster.withModel { model in model.spec.nodeNames.filter { model.longhornBlocksDrain(of: $0) } }
        let target = try #require(blocked.first)
        let second = try await api.kubectl("drain", target, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=6s")
        #expect(second.status != 0)
        #expect(second.output.contains("instance-manager-"), "\(second.output)")
        #expect(second.output.contains("disruption budget"))
    }

    @Test func getLonghornVolumesShowsStateAndRobustness() async throws {
        let api = try await APIHarness(spec: Self.small)
        defer { Task { await api.close() } }
        #expect(await api.waitUntil { api.cluster.withModel { $0.summary()["ready"] == true } })
        let result = try await api.kubectl("get", "volumes.longhorn.io", "-n", "longhorn-system")
        #expect(result.status == 0, "\(result.output)")
        let lines = result.output.split(separator: "\n").map(String.init)
        #expect(lines.first?.split(separator: " ").map(String.init) == ["NAME", "DATA", "ENGINE", "STATE", "ROBUSTNESS", "SCHEDULED", "SIZE", "NODE", "AGE"])
        #expect(lines.dropFirst().count == 3)
        #expect(lines.contains { $0.contains("attached") && $0.contains("healthy") })
        #expect(lines.contains { $0.contains("detached") && $0.contains("unknown") })
        let short = try await api.kubectl("get", "lhr", "-n", "longhorn-system", "-o", "name")
        #expect(short.output.split(separator: "\n").count == 6, "\(short.output)")
    }

    @Test func patchKustomizationSuspendIsStoredAndRecorded() async throws {
        let api = try await APIHarness(spec: Self.small)
        defer { Task { await api.close() } }
        let patch = try await api.kubectl("patch", "kustomization", "apps", "-n", "flux-system", "--type", "merge",
                                          "-p", #"{"spec":{"suspend":true}}"#)
        #expect(patch.status == 0, "\(patch.output)")
        #expect(patch.output.contains("kustomization.kustomize.toolkit.fluxcd.io/apps patched"))
        let object = FluxKustomization(json: try #require(api.get(.fluxKustomizations, "flux-system", "apps")))
        #expect(object.suspended)
        #expect(api.cluster.withModel { $0.events.contains { $0.kind == "FluxSuspended" && $0.object == "kustomization/flux-system/apps" } })
        let strategic = try await api.kubectl("patch", "kustomization", "apps", "-n", "flux-system", "-p", #"{"spec":{"suspend":false}}"#)
        #expect(strategic.status != 0, "custom resources refuse strategic merge patches")
        #expect(strategic.output.contains("UnsupportedMediaType") || strategic.output.contains("unknown format") || strategic.output.contains("not supported"),
                "\(strategic.output)")
    }

    /// Leases as the apiserver keeps them (coordination.k8s.io/v1, the Lease strategy): an
    /// update must carry the resourceVersion it read (422 without), a stale one loses with 409
    /// Conflict, and a PUT to an absent Lease creates it. kubectl is the witness.
    @Test func leasesTakeOptimisticConcurrencyAsTheAPIServerDoes() async throws {
        let api = try await APIHarness(spec: Self.small)
        defer { Task { await api.close() } }
        let manifest = "\(api.directory)/lease.yaml"
        func write(holder: String, resourceVersion: String?) throws {
            try """
                apiVersion: coordination.k8s.io/v1
                kind: Lease
                metadata: {name: upkeep, namespace: kube-system\(resourceVersion.map { ", resourceVersion: \"\($0)\"" } ?? "")}
                spec: {holderIdentity: "\(holder)", leaseDurationSeconds: 60, renewTime: "2026-12-07T10:15:00.000000Z", leaseTransitions: 0}
                """.write(toFile: manifest, atomically: true, encoding: .utf8)
        }
        try write(holder: "ctl-a (apply r1)", resourceVersion: nil)
        let created = try await api.kubectl("replace", "-f", manifest)
        #expect(created.status == 0, "a PUT to an absent Lease creates it: \(created.output)")
        let listed = try await api.kubectl("get", "leases", "-n", "kube-system")
        #expect(listed.output.contains("upkeep") && listed.output.contains("ctl-a (apply r1)") && listed.output.contains("HOLDER"), "\(listed.output)")
        let first = try #require(api.get(.leases, "kube-system", "upkeep")?[path: "metadata", "resourceVersion"]?.string)

        // kubectl replace fills a missing resourceVersion in from a read of its own; a client that
        // does not is refused, as the apiserver refuses unconditional Lease updates.
        let client = try KubeClient(endpoint: KubeEndpoint(server: try #require(KubeEndpoint.ServerURL(api.baseURL))))
        var unconditional = try #require(api.get(.leases, "kube-system", "upkeep"))
        unconditional[path: "metadata", "resourceVersion"] = nil
        await #expect(throws: KubeAPIError.self) { _ = try await client.replace(.leases, unconditional) }
        do {
            _ = try await client.replace(.leases, unconditional)
        } catch let error as KubeAPIError {
            #expect(error.code == 422 && error.message.contains("metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"),
                    "\(error)")
        }
        await client.shutdown()

        try write(holder: "ctl-b (apply r2)", resourceVersion: first)
        #expect(try await api.kubectl("replace", "-f", manifest).status == 0)
        try write(holder: "ctl-c (apply r3)", resourceVersion: first)
        let stale = try await api.kubectl("replace", "-f", manifest)
        #expect(stale.status != 0 && stale.output.contains("the object has been modified; please apply your changes to the latest version"),
                "a write at a stale resourceVersion loses: \(stale.output)")
        let holder = try await api.kubectl("get", "lease", "upkeep", "-n", "kube-system", "-o", "jsonpath={.spec.holderIdentity}")
        #expect(holder.output == "ctl-b (apply r2)")
    }
}
