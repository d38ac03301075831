import UpkeepRollout
import UpkeepCore

/// The datastore in the simulated world: the Kubernetes minor that last wrote each etcd
/// cluster, backups, and the agent methods of a restore (design-15 sections 3 and 4), modelled
/// on https://docs.k3s.io/upgrades/roll-back: a server of an older minor does not start on a
/// datastore written by a newer one; a restore makes a new cluster from a snapshot; a server
/// whose `server/db` is removed joins the restored cluster.
extension Simulation {
    /// The minor the server's datastore was last written at, if it has one.
    func datastoreMinor(_ node: SimNode) -> MinorLine? { node.cluster.flatMap { datastores[$0] } }

    /// Whether `version` can start on the node's datastore (agents hold none).
    func datastoreAllows(_ node: SimNode, _ version: K3sVersion) -> Bool {
        guard node.role == .server, let minor = datastoreMinor(node) else { return true }
        return version.minorLine >= minor
    }

    /// The invariant: no server is ever put back (by a rollback, a watchdog, an install of an
    /// older version, a restore or a rejoin) to a binary older than its datastore's minor. Such
    /// a binary does not start there (as in the sandbox); only the agent's own revert of an
    /// install that never came up healthy may meet that, and it is reported as unhealthy.
    func checkWayBack(_ position: Int, to version: K3sVersion, datastore: MinorLine?, by what: String) -> [String] {
        let node = nodes[position]
        guard node.role == .server, let minor = datastore, version.minorLine < minor else { return [] }
        return ["\(what) put \(node.name) back to k3s \(version) on a datastore last written at \(minor): a server never runs "
                + "a binary older than its datastore's minor"]
    }

    /// A healthy server writes its datastore at its minor.
    mutating func datastoreWritten(by position: Int) {
        let node = nodes[position]
        guard node.role == .server, let cluster = node.cluster, let minor = datastores[cluster], node.running.minorLine > minor else { return }
        datastores[cluster] = node.running.minorLine
        log("\(node.name): the datastore is now written at \(node.running.minorLine)")
    }

    /// The binary a way back puts in place: `kept`, or with the sabotage the version from
    /// before the rollout.
    func wayBack(_ position: Int, _ kept: K3sVersion) -> K3sVersion {
        sabotage == .goingBackGoesToTheStart ? invariants.initial[nodes[position].name] ?? kept : kept
    }

    /// What the simulated operator does about a block: a block that asks for a restore decision
    /// is answered by `resume` (fix forward) or `rollback --restore`, about half each, and by a
    /// restore once fixing forward has failed twice; any other block by `resume`.
    mutating func operatorChoice(_ reason: String) -> Event {
        guard reason.contains("Going back needs the datastore restored"), case .forward = engine.direction,
              case .ready = engine.restoreChoice else {
            return .operatorResume(incarnation: incarnation)
        }
        restoreDecisions += 1
        if restoreDecisions > 2 || Bool.random(using: &random) { return .operatorRestore(incarnation: incarnation) }
        return .operatorResume(incarnation: incarnation)
    }

    mutating func beginDatastoreOperation(_ position: Int) {
        guard let operation = nodes[position].operation else { return }
        let id = operation.request.operationID
        let name = nodes[position].name
        switch operation.request.command {
        case .backup, .restoreBackup:
            queue.push(.operationStep(node: name, operationID: id, step: 1), at: after(between(1000, 10_000)))
        case .stopK3s:
            let wasActive = !nodes[position].k3sStopped
            nodes[position].k3sStopped = true
            nodes[position].watch = nil
            nodes[position].restartingUntil = nil
            nodes[position].restartGeneration += 1
            queue.push(.operationStep(node: name, operationID: id, step: wasActive ? 1 : 2), at: after(between(500, 5000)))
        case .restore(let backupID, let asked, _):
            let version = wayBack(position, asked)
            guard nodes[position].received == backupID, let minor = backupsTaken[backupID] else {
                finishOperation(position, .refused(code: "notFound", message: "backup \(backupID) was not received"))
                return
            }
            guard nodes[position].staged.contains(asked) else {
                finishOperation(position, .refused(code: "notFound", message: "\(asked) is not staged"))
                return
            }
            violations += checkWayBack(position, to: version, datastore: minor, by: "a restore")
            let cluster = nextCluster
            nextCluster += 1
            datastores[cluster] = minor
            restoredCluster = cluster
            restores += 1
            log("\(name): restores backup \(backupID) (written at \(minor)) as etcd cluster \(cluster)")
            start(position, version: version, cluster: cluster)
        case .rejoin(let asked, _):
            let version = wayBack(position, asked)
            guard nodes[position].staged.contains(asked) else {
                finishOperation(position, .refused(code: "notFound", message: "\(version) is not staged"))
                return
            }
            guard let cluster = restoredCluster else {
                finishOperation(position, .refused(code: "conflict", message: "no restored cluster to join"))
                return
            }
            violations += checkWayBack(position, to: version, datastore: datastores[cluster], by: "a rejoin")
            if sabotage == .rejoinKeepsItsOldMembership, let old = nodes[position].cluster {
                // It keeps running on its own old data, apart from the restored cluster.
                datastores[old] = version.minorLine
                start(position, version: version, cluster: old)
            } else {
                start(position, version: version, cluster: cluster)
            }
        default:
            break
        }
    }

    /// `restore` and `rejoin`: the binary placed, the datastore set, k3s started (the answer
    /// comes when it is up).
    private mutating func start(_ position: Int, version: K3sVersion, cluster: Int?) {
        nodes[position].cluster = cluster
        nodes[position].binary = version
        nodes[position].previous = nil
        nodes[position].watch = nil
        nodes[position].received = nil
        nodes[position].k3sStopped = false
        nodes[position].operation?.swapped = true
        restartK3s(position)
    }

    mutating func datastoreOperationStep(_ position: Int, step: Int) {
        guard let operation = nodes[position].operation else { return }
        switch operation.request.command {
        case .backup(let backupID, _, _):
            backupsTaken[backupID] = datastoreMinor(nodes[position])
            finishOperation(position, .backedUp(backupID: backupID))
        case .restoreBackup(let backupID, _):
            guard backupsTaken[backupID] != nil else {
                finishOperation(position, .refused(code: "notFound", message: "no backup \(backupID) recorded"))
                return
            }
            nodes[position].received = backupID
            finishOperation(position, .backupReceived)
        case .stopK3s:
            finishOperation(position, .stopped(wasActive: step == 1))
        default:
            break
        }
    }
}
