import Synchronization
import UpkeepKube
import UpkeepRollout

extension KubeClusterObserver: ClusterChangeFeed {
    /// Watches what `read` lists — nodes, Longhorn volumes and replicas — with one `Reflector`
    /// each, and calls `changed` after each change that can alter an observation: a node whose
    /// inventory entry changed (not a kubelet heartbeat, which only moves timestamps), any
    /// Longhorn volume or replica change, and every list (a first one, or after 410 Gone).
    /// Returns when the calling task is cancelled.
    public func followChanges(_ changed: @escaping @Sendable () -> Void) async {
        let (client, agentPort) = (self.client, self.agentPort)
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                let known = Mutex<[String: FleetNode]>([:])
                await Reflector(client: client, type: .nodes).run { update in
                    switch update {
                    case .listed(let items, _):
                        known.withLock { known in
                            known = [:]
                            for item in items {
                                if let entry = try? InventoryMapping.node(Node(json: item), agentPort: agentPort) { known[entry.node.name] = entry }
                            }
                        }
                        changed()
                    case .changed(let event):
                        let name = event.object[path: "metadata", "name"]?.string ?? ""
                        let entry = event.kind == .deleted ? nil : try? InventoryMapping.node(Node(json: event.object), agentPort: agentPort)
                        let differs = known.withLock { known in
                            defer { known[name] = entry }
                            return known[name] != entry
                        }
                        if differs { changed() }
                    }
                }
            }
            for type in [ResourceType.longhornVolumes, .longhornReplicas] {
                group.addTask {
                    await Reflector(client: client, type: type, namespace: InventoryMapping.longhornNamespace).run { _ in changed() }
                }
            }
        }
    }
}
