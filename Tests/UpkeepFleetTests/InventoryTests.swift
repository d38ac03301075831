import Foundation
import Testing
import UpkeepRollout
import UpkeepCore
import UpkeepFleet
import UpkeepKube
import UpkeepSandbox
import UpkeepSandboxTestSupport
import UpkeepTestSupport

@Suite(.serialized) struct KubeClusterObserverTests {
    @Test func readsNodesRolesAddressesAndLonghornFromTheAPI() async throws {
        let spec = ClusterSpec(servers: 3, agents: 2, volumes: 3, replicas: 2, k3sVersion: v1)
        let api = try await SandboxAPI(spec: spec)
        // Longhorn settles its replicas on the model's clock: wait until every volume has its two.
        let settled = try await api.waitUntil {
            let replicas = try await api.client.list(LonghornReplica.self, namespace: "longhorn-system")
            return replicas.count == 6 && replicas.allSatisfy(\.isHealthy)
        }
        #expect(settled, "Longhorn replicas did not settle")
        _ = try await api.client.patch(Node.self, "agent-2", ["metadata": ["annotations": ["upkeep.io/agent-address": "127.0.0.1:19001"]]])
        _ = try await api.client.patch(Node.self, "agent-1", ["spec": ["unschedulable": true]])
        let observer = KubeClusterObserver(client: api.client, agentPort: 9660)
        let reading = try await observer.read()

        #expect(reading.nodes.map(\.node.name) == ["server-1", "server-2", "server-3", "agent-1", "agent-2"])
        let server = try #require(reading.nodes.first)
        #expect(server.node == InventoryNode(name: "server-1", role: .server, etcd: true, arch: .amd64, version: try K3sVersion(v1),
                                             ready: true, cordoned: false))
        #expect(server.agent == AgentEndpoint(host: spec.address(of: "server-1"), port: 9660))
        let agent1 = try #require(reading.nodes.first { $0.node.name == "agent-1" })
        #expect(agent1.node.role == .agent && !agent1.node.etcd && agent1.node.cordoned)
        #expect(reading.agentEndpoints["agent-2"] == AgentEndpoint(host: "127.0.0.1", port: 19001))

        // Volumes and replicas exactly as the API holds them.
        let volumes = try await api.client.list(LonghornVolume.self, namespace: "longhorn-system")
        let replicas = try await api.client.list(LonghornReplica.self, namespace: "longhorn-system")
        #expect(reading.volumes.map(\.name) == volumes.map(\.name).sorted())
        for volume in reading.volumes {
            let source = try #require(volumes.first { $0.name == volume.name })
            #expect(volume.replicasWanted == 2 && volume.state.rawValue == source.state && volume.robustness.rawValue == source.robustness)
            let nodes = replicas.filter { $0.volumeName == volume.name }.map(\.nodeID).sorted()
            #expect(volume.replicas.map(\.node).sorted() == nodes)
            #expect(volume.replicas.allSatisfy { $0.healthy })
            // Replicas of attached volumes run; those of detached ones are stopped.
            #expect(volume.replicas.filter(\.running).count == replicas.filter { $0.volumeName == volume.name && $0.currentState == "running" }.count)
        }
        // Observing through a fleet keeps its address book current.
        let directory = try TemporaryDirectory()
        let fleet = AgentFleet(security: try FleetPKI(in: directory.file("pki")).controllerSecurity())
        let observation = try await KubeClusterObserver(client: api.client, agentPort: 9660, fleet: fleet).observe()
        #expect(observation.inventory.nodes.map(\.name) == reading.nodes.map(\.node.name) && observation.etcdHealthy == nil)
        #expect(await fleet.endpoint(of: "agent-2") == AgentEndpoint(host: "127.0.0.1", port: 19001))
        #expect(await fleet.endpoint(of: "server-1") == AgentEndpoint(host: spec.address(of: "server-1"), port: 9660))
        await api.close()
    }

    @Test func anUnreachableAPIIsATypedError() async throws {
        let port = try unusedLoopbackPort()
        let client = try KubeClient(endpoint: KubeEndpoint(server: try #require(KubeEndpoint.ServerURL("http://127.0.0.1:\(port)"))), requestTimeoutSeconds: 5)
        await #expect(throws: ClusterObservationError.self) { try await KubeClusterObserver(client: client, agentPort: 9660).observe() }
        await client.shutdown()
    }
}

/// Objects to inventory facts, without an API.
@Suite struct InventoryMappingTests {
    private func node(_ name: String = "n1", labels: [String: String] = ["kubernetes.io/arch": "arm64"], annotations: [String: String] = [:],
                      kubelet: String = "v1.30.6+k3s1", ready: String = "True", address: String? = "10.0.0.5") -> Node {
        var status: JSON = ["nodeInfo": ["kubeletVersion": .string(kubelet), "architecture": "amd64"],
                            "conditions": [["type": "Ready", "status": .string(ready)]]]
        if let address { status["addresses"] = [["type": "InternalIP", "address": .string(address)], ["type": "Hostname", "address": "h"]] }
        return Node(json: ["metadata": ["name": .string(name), "labels": .object(labels.mapValues { .string($0) }),
                                        "annotations": .object(annotations.mapValues { .string($0) })],
                           "spec": [:], "status": status])
    }

    @Test func rolesArchVersionReadinessAndAddresses() throws {
        let master = try InventoryMapping.node(node(labels: ["node-role.kubernetes.io/master": "true", "kubernetes.io/arch": "arm64"], ready: "False"),
                                               agentPort: 9660)
        #expect(master.node == InventoryNode(name: "n1", role: .server, etcd: false, arch: .arm64, version: try K3sVersion("v1.30.6+k3s1"),
                                             ready: false, cordoned: false))
        #expect(master.agent == AgentEndpoint(host: "10.0.0.5", port: 9660) && master.agentProblem == nil)
        let annotated = try InventoryMapping.node(node(annotations: ["upkeep.io/agent-address": "[fd00::7]:9700"]), agentPort: 9660)
        #expect(annotated.agent == AgentEndpoint(host: "fd00::7", port: 9700) && annotated.agent?.description == "[fd00::7]:9700")
        let badAnnotation = try InventoryMapping.node(node(annotations: ["upkeep.io/agent-address": "nonsense"]), agentPort: 9660)
        #expect(badAnnotation.agent == AgentEndpoint(host: "10.0.0.5", port: 9660) && badAnnotation.agentProblem?.contains("not host:port") == true)
        let noAddress = try InventoryMapping.node(node(address: nil), agentPort: 9660)
        #expect(noAddress.agent == nil && noAddress.agentProblem?.contains("upkeep.io/agent-address") == true)
        #expect(throws: InventoryError.self) { try InventoryMapping.node(node(labels: ["kubernetes.io/arch": "riscv64"]), agentPort: 9660) }
        #expect { try InventoryMapping.node(node(kubelet: "1.30-custom"), agentPort: 9660) } throws: { "\($0)".contains("n1") }
    }

    @Test func volumesKeepOnlyPlacedReplicas() {
        let volume = LonghornVolume(json: ["metadata": ["name": "pvc-1"], "spec": ["numberOfReplicas": 3],
                                           "status": ["state": "attached", "robustness": "degraded", "currentNodeID": "n2"]])
        let fresh = LonghornVolume(json: ["metadata": ["name": "pvc-0"], "spec": ["numberOfReplicas": 2], "status": [:]])
        func replica(_ name: String, _ node: String, state: String, healthy: Bool, failed: Bool = false) -> LonghornReplica {
            LonghornReplica(json: ["metadata": ["name": .string(name)],
                                   "spec": ["volumeName": "pvc-1", "nodeID": .string(node), "healthyAt": healthy ? "2026-11-28T10:00:00Z" : "",
                                            "failedAt": failed ? "2026-11-28T11:00:00Z" : ""],
                                   "status": ["currentState": .string(state)]])
        }
        let volumes = InventoryMapping.volumes([volume, fresh], replicas: [
            replica("r-a", "n1", state: "running", healthy: true),
            replica("r-b", "n2", state: "stopped", healthy: true, failed: true),
            replica("r-c", "", state: "stopped", healthy: false),
        ])
        #expect(volumes.map(\.name) == ["pvc-0", "pvc-1"])
        #expect(volumes[0] == InventoryVolume(name: "pvc-0", replicasWanted: 2, state: .creating, robustness: .unknown, replicas: []))
        #expect(volumes[1] == InventoryVolume(name: "pvc-1", replicasWanted: 3, state: .attached, robustness: .degraded, attachedNode: "n2",
                                              replicas: [InventoryReplica(node: "n1", running: true, healthy: true),
                                                         InventoryReplica(node: "n2", running: false, healthy: false)]))
    }
}
