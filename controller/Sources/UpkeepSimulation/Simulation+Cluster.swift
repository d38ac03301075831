import UpkeepRollout
import UpkeepCore

/// The simulated cluster as the Kubernetes API shows it, and Longhorn's replicas: what an
/// observation reports, replicas failing and moving (faults), replicas stopping on drained nodes
/// and rebuilding when they come back.
extension Simulation {
    func observation() -> ClusterObservation {
        let inventoryNodes = scenario.inventory.nodes.map { original -> InventoryNode in
            let node = nodes[index[original.name]!]
            return InventoryNode(name: node.name, role: node.role, etcd: node.etcd, arch: original.arch, version: node.running,
                                 ready: node.ready(at: now), cordoned: node.unschedulable)
        }
        let inventoryVolumes = volumes.map { volume in
            InventoryVolume(name: volume.name, replicasWanted: volume.replicas.count, state: volume.attached ? .attached : .detached,
                            robustness: volume.robustness, attachedNode: volume.attached ? volume.replicas.first?.node : nil,
                            replicas: volume.replicas.map { InventoryReplica(node: $0.node, running: $0.running, healthy: $0.complete) })
        }
        let members = nodes.filter(\.etcd)
        let up = members.filter { $0.ready(at: now) }.count
        return ClusterObservation(inventory: ClusterInventory(nodes: inventoryNodes, volumes: inventoryVolumes),
                                  etcdHealthy: members.isEmpty ? nil : up * 2 > members.count)
    }

    /// The gates as the runtime would read them: the alert while its episode lasts (healing
    /// ends it), etcd members healthy while their node is Ready, asked of the first one up.
    func gateReport(_ question: GateQuestion) -> GateReport {
        var report = GateReport()
        if question.kinds.contains(.prometheus) {
            report.prometheus = .firing(alertUntil.map { !healed && now < $0 } == true ? ["SimulatedAlert"] : [])
        }
        if question.kinds.contains(.etcd) {
            let members = question.etcdNodes.compactMap { index[$0].map { nodes[$0] } }
            if members.isEmpty {
                report.etcd = .noEmbeddedEtcd
            } else if let asked = members.first(where: { $0.ready(at: now) }) {
                report.etcd = .members(members.map { EtcdMemberHealth(name: "\($0.name)-0a1b2c3d", node: $0.name, healthy: $0.ready(at: now),
                                                                      message: $0.ready(at: now) ? nil : "no answer") }, askedNode: asked.name)
            } else {
                report.etcd = .unknown("no server agent answered")
            }
        }
        return report
    }

    /// Attached volumes that keep a running healthy replica if `replica` stops serving.
    private func spareable(_ volume: Int, _ replica: Int) -> Bool {
        volumes[volume].attached && volumes[volume].replicas.indices.contains {
            $0 != replica && volumes[volume].replicas[$0].running && volumes[volume].replicas[$0].complete
        }
    }

    mutating func replicaFailure() {
        guard !healed else { return }
        let candidates = volumes.indices.flatMap { volume in
            volumes[volume].replicas.indices.filter { volumes[volume].replicas[$0].running && volumes[volume].replicas[$0].complete
                && spareable(volume, $0) }.map { (volume, $0) }
        }
        guard let (volume, replica) = candidates.randomElement(using: &random) else { return }
        var copy = volumes[volume].replicas[replica]
        copy.complete = false
        copy.generation += 1
        let duration = between(10_000, 600_000)
        copy.rebuildUntil = after(duration)
        volumes[volume].replicas[replica] = copy
        queue.push(.rebuilt(volume: volume, replica: replica, generation: copy.generation), at: after(duration))
        log("fault: replica of \(volumes[volume].name) on \(copy.node) failed; rebuilding for \(duration / 1000) s")
    }

    mutating func replicaMove() {
        guard !healed else { return }
        let holders = Set(nodes.map(\.name)).subtracting(scenario.preCordoned)
        let candidates = volumes.indices.flatMap { volume in
            volumes[volume].replicas.indices.filter { spareable(volume, $0) }.map { (volume, $0) }
        }
        guard let (volume, replica) = candidates.randomElement(using: &random) else { return }
        // Longhorn does not schedule replicas on cordoned nodes (disable-scheduling-on-cordoned-node).
        let used = Set(volumes[volume].replicas.map(\.node))
        guard let target = holders.subtracting(used).sorted().randomElement(using: &random),
              let position = index[target], !nodes[position].unschedulable else { return }
        let old = volumes[volume].replicas[replica].node
        volumes[volume].replicas[replica] = SimReplica(node: target, running: false, complete: false)
        log("fault: Longhorn moved a replica of \(volumes[volume].name) from \(old) to \(target)")
    }

    /// Replicas stop on drained nodes (Longhorn's instance manager is evicted) and, for attached
    /// volumes, must rebuild when they come back.
    mutating func updateLonghorn() {
        for volume in volumes.indices {
            for replica in volumes[volume].replicas.indices {
                guard let position = index[volumes[volume].replicas[replica].node] else { continue }
                let serving = !nodes[position].drained
                var copy = volumes[volume].replicas[replica]
                if !serving && copy.running {
                    copy.running = false
                    copy.generation += 1
                    copy.rebuildUntil = nil
                    if volumes[volume].attached { copy.complete = false }
                } else if serving && !copy.running && volumes[volume].attached {
                    copy.running = true
                    if !copy.complete {
                        copy.generation += 1
                        let slow = chance(scenario.faults.slowRebuild)
                        let duration = slow ? between(300_000, 2_400_000) : between(5_000, 90_000)
                        copy.rebuildUntil = after(duration)
                        queue.push(.rebuilt(volume: volume, replica: replica, generation: copy.generation), at: after(duration))
                    }
                }
                volumes[volume].replicas[replica] = copy
            }
        }
    }
}
