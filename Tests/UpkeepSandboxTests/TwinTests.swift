import Foundation
import Testing
import UpkeepCapture
import UpkeepHTTPServer
import UpkeepKube
import UpkeepSandbox

/// A sandbox built from a capture (`ClusterSpec(twin:)`) is read back, through the API over a
/// real socket, as the cluster that was captured: node names, roles, versions, architectures,
/// labels, taints and cordons; workloads and which nodes their pods run on; disruption budgets
/// and their allowances; Longhorn's settings, volumes and replica placement.
@Suite(.timeLimit(.minutes(2)))
struct TwinTests {
    static let version = "v1.30.6+k3s1"
    static let older = "v1.29.10+k3s1"

    /// A cluster the generated sandbox could not be: its own names, mixed versions, an arm64
    /// agent, a tainted and a cordoned node, a budget that allows no disruption, a volume
    /// with three replicas and a setting that is not Longhorn's default.
    static let live = ClusterCapture(
        capturedAt: "2026-12-07T20:00:00Z", server: "https://10.0.0.1:6443",
        nodes: [
            .init(name: "cp-a", role: .server, version: version, architecture: "amd64",
                  labels: ["node-role.kubernetes.io/control-plane": "true", "node-role.kubernetes.io/etcd": "true", "zone": "a"]),
            .init(name: "cp-b", role: .server, version: version, architecture: "amd64",
                  labels: ["node-role.kubernetes.io/control-plane": "true", "node-role.kubernetes.io/etcd": "true", "zone": "b"],
                  taints: [.init(key: "node-role.kubernetes.io/control-plane", effect: "NoSchedule")]),
            .init(name: "cp-c", role: .server, version: version, architecture: "amd64",
                  labels: ["node-role.kubernetes.io/control-plane": "true", "node-role.kubernetes.io/etcd": "true", "zone": "c"]),
            .init(name: "pi-1", role: .agent, version: older, architecture: "arm64", labels: ["kubernetes.io/arch": "arm64", "zone": "a"]),
            .init(name: "worker-x", role: .agent, version: version, architecture: "amd64", labels: ["zone": "b"], unschedulable: true),
            .init(name: "worker-y", role: .agent, version: version, architecture: "amd64", labels: ["zone": "c"]),
        ],
        workloads: [
            .init(kind: .deployment, namespace: "shop", name: "checkout", replicas: 2, selector: "app=checkout",
                  podLabels: ["app": "checkout", "tier": "web"]),
            .init(kind: .daemonSet, namespace: "kube-system", name: "node-exporter", replicas: nil, selector: "app=node-exporter",
                  podLabels: ["app": "node-exporter"]),
        ],
        pods: [
            .init(namespace: "shop", name: "checkout-6d4f-aaaaa", node: "worker-y", labels: ["app": "checkout", "tier": "web"],
                  owner: .init(kind: "Deployment", name: "checkout")),
            .init(namespace: "shop", name: "checkout-6d4f-bbbbb", node: "pi-1", labels: ["app": "checkout", "tier": "web"],
                  owner: .init(kind: "Deployment", name: "checkout")),
            .init(namespace: "default", name: "debug-shell", node: "worker-y", labels: ["run": "debug-shell"]),
        ],
        disruptionBudgets: [.init(namespace: "shop", name: "checkout", selector: "app=checkout", minAvailable: "2",
                                  disruptionsAllowed: 0, currentHealthy: 2, desiredHealthy: 2, expectedPods: 2)],
        longhorn: .init(version: "v1.7.2", settings: ["node-drain-policy": "block-for-eviction-if-contains-last-replica", "default-replica-count": "3"],
                        volumes: [.init(name: "pvc-orders", numberOfReplicas: 3, size: "1073741824", state: "attached", robustness: "healthy",
                                        node: "worker-y"),
                                  .init(name: "pvc-archive", numberOfReplicas: 2, size: "2147483648", state: "detached", robustness: "unknown",
                                        node: "")],
                        replicas: [.init(name: "pvc-orders-r-1", volume: "pvc-orders", node: "cp-a", state: "running", healthy: true),
                                   .init(name: "pvc-orders-r-2", volume: "pvc-orders", node: "worker-x", state: "running", healthy: true),
                                   .init(name: "pvc-orders-r-3", volume: "pvc-orders", node: "worker-y", state: "running", healthy: true),
                                   .init(name: "pvc-archive-r-1", volume: "pvc-archive", node: "pi-1", state: "stopped", healthy: true),
                                   .init(name: "pvc-archive-r-2", volume: "pvc-archive", node: "cp-c", state: "stopped", healthy: true)]))

    @Test func aTwinReadsBackAsTheCapturedCluster() async throws {
        let spec = ClusterSpec(twin: Self.live)
        #expect(spec.problem == nil)
        #expect(spec.serverNames == ["cp-a", "cp-b", "cp-c"] && spec.agentNames == ["pi-1", "worker-x", "worker-y"])
        #expect(spec.k3sVersion == Self.older && spec.version(of: "cp-a") == Self.version && spec.version(of: "pi-1") == Self.older)

        let clock = ManualClock(1_800_000_000)
        let cluster = SandboxCluster(model: ClusterModel(spec: spec, now: clock.now), clock: { clock.now })
        cluster.withModel { $0.virtualKubelets = Set(spec.nodeNames) }
        for _ in 0..<30 {
            clock.advance(by: 1)
            cluster.advance()
        }
        let server = try await HTTPServer.start(host: "127.0.0.1", port: 0, responder: .nonBlocking(cluster.handle))
        let client = try KubeClient(endpoint: KubeEndpoint(server: try #require(KubeEndpoint.ServerURL("http://127.0.0.1:\(server.port)"))))
        defer { Task { await client.shutdown(); await server.close() } }
        let twin = try await ClusterCapture.read(from: client, now: clock.now)

        // Nodes: everything but the address (the twin's nodes live on loopback).
        #expect(twin.nodes.map(\.name) == Self.live.nodes.map(\.name))
        for (seen, captured) in zip(twin.nodes, Self.live.nodes) {
            #expect(seen.role == captured.role && seen.version == captured.version && seen.architecture == captured.architecture, "\(seen.name)")
            #expect(captured.labels.allSatisfy { seen.labels[$0.key] == $0.value }, "\(seen.name): \(seen.labels)")
            #expect(seen.unschedulable == captured.unschedulable && seen.ready, "\(seen.name)")
            for taint in captured.taints { #expect(seen.taints.contains(taint), "\(seen.name): \(seen.taints)") }
        }

        // Workloads as captured; the Deployment's pods on the captured nodes; the bare pod where it was.
        #expect(twin.workloads.map(\.name).sorted() == ["checkout", "node-exporter"])
        #expect(twin.workloads.first { $0.name == "checkout" }.map { $0.replicas == 2 && $0.selector == "app=checkout" } == true)
        let checkout = twin.pods.filter { $0.owner == .init(kind: "Deployment", name: "checkout") }
        #expect(checkout.compactMap(\.node).sorted() == ["pi-1", "worker-y"] && checkout.allSatisfy(\.ready), "\(checkout)")
        #expect(twin.pods.contains { $0.name == "debug-shell" && $0.owner == nil && $0.node == "worker-y" && $0.ready })
        #expect(twin.pods.filter { $0.owner?.name == "node-exporter" }.count == Self.live.nodes.count)

        // The budget with the same allowance: none.
        #expect(twin.disruptionBudgets.map { [$0.namespace, $0.name, $0.selector, $0.minAvailable ?? ""] } == [["shop", "checkout", "app=checkout", "2"]])
        #expect(twin.disruptionBudgets.first?.disruptionsAllowed == 0 && twin.disruptionBudgets.first?.currentHealthy == 2)

        // Longhorn: the captured settings over the defaults, the volumes, each replica on its node.
        let longhorn = try #require(twin.longhorn)
        #expect(longhorn.settings["node-drain-policy"] == "block-for-eviction-if-contains-last-replica" && longhorn.settings["default-replica-count"] == "3")
        #expect(longhorn.volumes.map(\.name) == ["pvc-archive", "pvc-orders"] && longhorn.volumes.map(\.numberOfReplicas) == [2, 3])
        #expect(longhorn.volumes.first { $0.name == "pvc-orders" }.map { $0.state == "attached" && $0.node == "worker-y" } == true, "\(longhorn.volumes)")
        #expect(longhorn.volumes.first { $0.name == "pvc-archive" }?.state == "detached")
        func placement(_ replicas: [ClusterCapture.Longhorn.Replica]) -> [String] { replicas.map { "\($0.volume)@\($0.node)" }.sorted() }
        #expect(placement(longhorn.replicas) == placement(Self.live.longhorn!.replicas))
    }

    @Test func aCaptureWithoutServersOrWithTwiceTheSameNodeIsNoTwin() {
        var capture = Self.live
        capture.nodes.append(capture.nodes[3])
        #expect(ClusterSpec(twin: capture).problem == "node pi-1 appears twice in the capture")
        capture.nodes = capture.agents
        #expect(ClusterSpec(twin: capture).problem?.hasPrefix("the capture holds no server node") == true)
    }

    @Test func speedDividesTheModelsStepsButNotTheNodeGracePeriod() {
        let timings = ModelTimings(nodeGraceSeconds: 20, podStartSeconds: 2, podTerminationSeconds: 1, rebuildSeconds: 10, snapshotSeconds: 1)
        #expect(timings.scaled(by: 10) == ModelTimings(nodeGraceSeconds: 20, podStartSeconds: 0.2, podTerminationSeconds: 0.1,
                                                       rebuildSeconds: 1, snapshotSeconds: 0.1))
    }
}
