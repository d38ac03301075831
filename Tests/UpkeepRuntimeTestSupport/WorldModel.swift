import UpkeepRollout
import UpkeepCore

/// A small cluster with its agents, modelled on docs/agent.md as far as the runtime's tests need:
/// every operation id is journaled and a repeat is answered from the journal without running
/// again; cordon remembers whether the node was already unschedulable; install needs the
/// binary staged, swaps it and keeps the previous one for rollback, and puts the previous one
/// back itself when the new version is set to fail; the API shows each node's running version.
/// Operations take effect at once: the runtime's ordering and persistence are under test here,
/// not the agents (the simulation and the agent's own tests cover those).
public struct WorldModel: Codable, Equatable, Sendable {
    public struct Node: Codable, Equatable, Sendable {
        public var name: String
        public var role: NodeRole
        public var version: K3sVersion
        public var previous: K3sVersion?
        public var staged: [K3sVersion] = []
        public var cordoned = false
        /// The install operation whose watch is open (ended by commit or rollback).
        public var watch: String?
        /// The backup received for a restore.
        public var received: String?
        /// k3s stopped (`stopK3s`) and not started again.
        public var stopped = false
    }

    public var nodes: [Node]
    /// What the gates read (`checkGates`); nil: every gate clear.
    public var gates: GateReport?
    /// Every operation id answered, with its answer.
    public var journal: [String: AgentReply] = [:]
    /// Requests in the order they ran (each operation id once; repeats are answered from the journal).
    public var executed: [AgentRequest] = []
    /// Every request received, repeats included.
    public var received: [String] = []
    /// node → version whose install never becomes healthy there (the agent reverts it).
    public var failingInstalls: [String: K3sVersion] = [:]
    /// Backups taken (by id).
    public var backups: [String] = []
    /// When set, every backup is refused with this message (a full disk, a broken etcd).
    public var backupRefusal: String?

    public init(servers: [String], agents: [String], version: K3sVersion) {
        nodes = servers.map { Node(name: $0, role: .server, version: version) } + agents.map { Node(name: $0, role: .agent, version: version) }
    }

    /// Runs `request` once; a repeated operation id gets the journaled answer.
    public mutating func execute(_ request: AgentRequest) -> AgentReply {
        received.append(request.operationID)
        if let reply = journal[request.operationID] { return reply }
        let reply = run(request)
        journal[request.operationID] = reply
        executed.append(request)
        return reply
    }

    private mutating func run(_ request: AgentRequest) -> AgentReply {
        guard let index = nodes.firstIndex(where: { $0.name == request.node }) else {
            return .refused(code: "wrong-node", message: "no node \(request.node)")
        }
        var node = nodes[index]
        defer { nodes[index] = node }
        switch request.command {
        case .cordon:
            defer { node.cordoned = true }
            return .cordoned(wasUnschedulable: node.cordoned)
        case .drain:
            return .drained
        case .stage(let version, _):
            if !node.staged.contains(version) { node.staged.append(version) }
            return .staged
        case .install(let version, _, _):
            guard node.staged.contains(version) else { return .refused(code: "not-staged", message: "\(version) is not staged") }
            if failingInstalls[node.name] == version {
                return .installReverted(version: node.version, healthy: true, message: "k3s \(version) did not pass its probes")
            }
            node.previous = node.version
            node.version = version
            node.watch = request.operationID
            return .installed(version: version)
        case .rollback:
            guard let previous = node.previous else { return .refused(code: "nothing-to-roll-back", message: "no previous binary") }
            node.version = previous
            node.previous = nil
            node.watch = nil
            return .rolledBack(version: previous, healthy: true, message: "")
        case .uncordon:
            node.cordoned = false
            return .uncordoned(true)
        case .commit(let install):
            if node.watch == install { node.watch = nil }
            return .committed(version: node.version)
        case .backup(let backupID, _, _):
            if let backupRefusal { return .refused(code: "backupFailed", message: backupRefusal) }
            backups.append(backupID)
            return .backedUp(backupID: backupID)
        case .restoreBackup(let backupID, _):
            guard backups.contains(backupID) else { return .refused(code: "notFound", message: "no backup \(backupID)") }
            node.received = backupID
            return .backupReceived
        case .stopK3s:
            defer { node.stopped = true }
            return .stopped(wasActive: !node.stopped)
        case .restore(let backupID, let version, _):
            guard node.received == backupID else { return .refused(code: "notFound", message: "backup \(backupID) not received") }
            guard node.staged.contains(version) else { return .refused(code: "not-staged", message: "\(version) is not staged") }
            (node.version, node.stopped, node.previous, node.watch, node.received) = (version, false, nil, nil, nil)
            return .restored(version: version, healthy: true, message: "")
        case .rejoin(let version, _):
            guard node.staged.contains(version) else { return .refused(code: "not-staged", message: "\(version) is not staged") }
            (node.version, node.stopped, node.previous, node.watch) = (version, false, nil, nil)
            return .rejoined(version: version, healthy: true, message: "")
        }
    }

    /// What the Kubernetes API shows: every node Ready at its running version; no Longhorn volumes.
    public var observation: ClusterObservation {
        ClusterObservation(inventory: inventory, etcdHealthy: true)
    }

    public var inventory: ClusterInventory {
        ClusterInventory(nodes: nodes.map {
            InventoryNode(name: $0.name, role: $0.role, etcd: $0.role == .server, arch: .amd64, version: $0.version, ready: !$0.stopped,
                          cordoned: $0.cordoned)
        })
    }

    /// Operation ids of `command` run on `node`, in order.
    public func executed(_ command: String, on node: String) -> [String] {
        executed.filter { $0.node == node && $0.command.name == command }.map(\.operationID)
    }

    public func node(_ name: String) -> Node? { nodes.first { $0.name == name } }
}
