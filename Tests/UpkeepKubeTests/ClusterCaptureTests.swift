import Foundation
import Testing
import UpkeepCapture
import UpkeepHTTPServer
import UpkeepKube
import UpkeepSandbox

/// `ClusterCapture.read` against the simulated API over a real socket: what a rehearsal copies
/// of the live cluster, read with GETs only (the API's request audit is the witness), and the
/// capture file read back.
@Suite(.timeLimit(.minutes(2)))
struct ClusterCaptureTests {
    static let spec = ClusterSpec(servers: 3, agents: 2, volumes: 2, replicas: 2)

    func patch(_ cluster: SandboxCluster, _ uri: String, _ body: JSON) {
        let answer = cluster.handle(APIRequest(method: "PATCH", uri: uri, contentType: "application/merge-patch+json", body: body.serialized()))
        #expect(answer.status == 200, "\(uri): \(String(decoding: answer.body, as: UTF8.self))")
    }

    @Test func theCaptureHoldsNodesPodsBudgetsLonghornAndFluxReadWithGetsOnly() async throws {
        let clock = ManualClock(1_800_000_000)
        let cluster = SandboxCluster(model: ClusterModel(spec: Self.spec, now: clock.now), clock: { clock.now })
        cluster.withModel { $0.virtualKubelets = Set(Self.spec.nodeNames) }
        for _ in 0..<20 {
            clock.advance(by: 1)
            cluster.advance()
        }
        patch(cluster, "/api/v1/nodes/agent-1", ["spec": ["unschedulable": true]])
        let budget: JSON = ["metadata": ["name": "web-strict", "namespace": "default"],
                            "spec": ["minAvailable": 2, "selector": ["matchLabels": ["app": "web"]]]]
        let created = cluster.handle(APIRequest(method: "POST", uri: "/apis/policy/v1/namespaces/default/poddisruptionbudgets",
                                                contentType: "application/json", body: budget.serialized()))
        #expect(created.status == 201)
        for _ in 0..<3 {
            clock.advance(by: 1)
            cluster.advance()
        }
        let server = try await HTTPServer.start(host: "127.0.0.1", port: 0, responder: .nonBlocking(cluster.handle))
        let client = try KubeClient(endpoint: KubeEndpoint(server: try #require(KubeEndpoint.ServerURL("http://127.0.0.1:\(server.port)"))),
                                    userAgent: "upkeep-rehearse")
        defer { Task { await client.shutdown(); await server.close() } }

        let capture = try await ClusterCapture.read(from: client, now: clock.now)

        #expect(capture.nodes.map(\.name) == ["agent-1", "agent-2", "server-1", "server-2", "server-3"])
        #expect(capture.servers.count == 3 && capture.servers.allSatisfy(\.runsEtcd) && capture.agents.allSatisfy { !$0.runsEtcd })
        #expect(capture.nodes.allSatisfy { $0.version == "v1.30.6+k3s1" && $0.architecture == "amd64" && $0.ready })
        let cordoned = try #require(capture.nodes.first { $0.name == "agent-1" })
        #expect(cordoned.unschedulable && cordoned.taints.contains { $0.key == "node.kubernetes.io/unschedulable" && $0.effect == "NoSchedule" })
        #expect(capture.nodes.first { $0.name == "agent-2" }?.unschedulable == false)

        let web = capture.pods.filter { $0.labels["app"] == "web" }
        #expect(web.count == 2 && web.allSatisfy { $0.owner == ClusterCapture.Owner(kind: "Deployment", name: "web") && $0.node != nil })
        #expect(capture.workloads.contains { $0.kind == .deployment && $0.name == "web" && $0.replicas == 2 && $0.selector == "app=web" })
        #expect(capture.workloads.contains { $0.kind == .daemonSet && $0.name == "longhorn-manager" && $0.replicas == nil })
        let strict = try #require(capture.disruptionBudgets.first { $0.name == "web-strict" })
        #expect(strict.selector == "app=web" && strict.minAvailable == "2" && strict.disruptionsAllowed == 0 && strict.currentHealthy == 2)
        #expect(capture.disruptionBudgets.first { $0.name == "web" }?.disruptionsAllowed == 1)

        let longhorn = try #require(capture.longhorn)
        #expect(longhorn.version == "v1.7.2" && longhorn.settings["node-drain-policy"] == "block-if-contains-last-replica")
        #expect(longhorn.volumes.count == 2 && longhorn.replicas.count == 4)
        #expect(longhorn.replicas.allSatisfy { capture.nodes.map(\.name).contains($0.node) && longhorn.volumes.map(\.name).contains($0.volume) })
        #expect(capture.flux.contains { $0.kind == "Kustomization" && $0.namespace == "flux-system" && $0.name == "flux-system" })
        #expect(capture.flux.contains { $0.kind == "HelmRelease" && $0.name == "longhorn" })

        // The audit saw this client's requests, every one a GET; and it does record writes (the
        // cordon and the budget above, sent without a User-Agent).
        let audit = cluster.audit.summary
        let verbs = try #require(audit[path: "clients", "upkeep-rehearse"]?.object)
        #expect(Array(verbs.keys) == ["GET"] && (verbs["GET"]?.int ?? 0) >= 8, "\(audit)")
        let writes = audit["writes"]?.array ?? []
        #expect(writes.map { $0["method"]?.string ?? "" } == ["PATCH", "POST"], "\(audit)")
        #expect(!writes.contains { $0["userAgent"]?.string == "upkeep-rehearse" })

        // The file reads back to the same capture.
        #expect(try ClusterCapture.decode(try capture.encoded(), source: "capture.json") == capture)
    }

    @Test func aFileThatIsNotACaptureOrHasNoServerIsRefusedSayingWhatToDo() throws {
        #expect(throws: CaptureError.self) { try ClusterCapture.decode(Array("{}".utf8), source: "x.json") }
        do {
            _ = try ClusterCapture.decode(Array("[1]".utf8), source: "x.json")
        } catch {
            #expect(error.description.contains("x.json is not a cluster capture") && error.description.contains("upkeep rehearse --keep DIR"))
        }
        let agentsOnly = ClusterCapture(capturedAt: "2026-12-07T00:00:00Z", server: "https://127.0.0.1:6443",
                                        nodes: [.init(name: "a", role: .agent, version: "v1.30.6+k3s1", architecture: "amd64")])
        do {
            _ = try ClusterCapture.decode(try agentsOnly.encoded(), source: "y.json")
            Issue.record("a capture without a server was accepted")
        } catch let error as CaptureError {
            #expect(error.description == "y.json: the capture holds no server node (no node labelled node-role.kubernetes.io/control-plane)")
        }
    }

    @Test func aBudgetAllowingNoDisruptionHoldsTheDrainOfEachNodeWithItsPods() {
        let web = ClusterCapture.Owner(kind: "Deployment", name: "web")
        let capture = ClusterCapture(
            capturedAt: "2026-12-07T00:00:00Z", server: "https://127.0.0.1:6443",
            nodes: ["s1", "a1", "a2", "a3"].map { .init(name: $0, role: $0 == "s1" ? .server : .agent, version: "v1.30.6+k3s1", architecture: "amd64") },
            pods: [.init(namespace: "shop", name: "web-1", node: "a1", labels: ["app": "web"], owner: web),
                   .init(namespace: "shop", name: "web-2", node: "a2", labels: ["app": "web"], owner: web),
                   .init(namespace: "shop", name: "web-3", node: "a2", labels: ["app": "web"], owner: web, phase: "Succeeded"),
                   .init(namespace: "other", name: "web-x", node: "a3", labels: ["app": "web"], owner: web),
                   .init(namespace: "shop", name: "exporter", node: "a3", labels: ["app": "web"], owner: .init(kind: "DaemonSet", name: "e")),
                   .init(namespace: "shop", name: "db-0", node: "a3", labels: ["app": "db"], owner: .init(kind: "StatefulSet", name: "db"))],
            disruptionBudgets: [.init(namespace: "shop", name: "web", selector: "app=web", minAvailable: "2", disruptionsAllowed: 0,
                                      currentHealthy: 2, desiredHealthy: 2, expectedPods: 2),
                                .init(namespace: "shop", name: "db", selector: "app=db", maxUnavailable: "1", disruptionsAllowed: 1,
                                      currentHealthy: 1, desiredHealthy: 0, expectedPods: 1)])
        let holds = DisruptionHold.find(in: capture, nodes: ["s1", "a1", "a2", "a3"])
        // a1 and a2 hold web's pods; a3 only another namespace's pod, a DaemonSet pod and db's, whose budget allows one.
        #expect(holds.map(\.node) == ["a1", "a2"] && holds.allSatisfy { $0.budget == "shop/web" && $0.allowed == 0 })
        #expect(holds.map(\.pods) == [["shop/web-1"], ["shop/web-2"]])
        #expect(holds[0].remedy.contains("minAvailable 2 leaves none to spare: scale deployment/web up by one"), "\(holds[0].remedy)")
        #expect(DisruptionHold.find(in: capture, nodes: ["a1"], podSelector: "app=db").isEmpty, "the drain evicts only selected pods")
        #expect(DisruptionHold.find(in: capture, nodes: ["a1"], disableEviction: true).isEmpty, "deleting pods consults no budget")
    }
}
