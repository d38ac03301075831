import UpkeepRollout
import UpkeepCore

/// Drives a `RolloutEngine` by hand: a clock, the actions it returned, and a cluster view the
/// test edits. Every helper asserts nothing; tests look at what it recorded.
struct EngineHarness {
    var engine: RolloutEngine
    var now = Instant(milliseconds: 0)
    var cluster: ClusterObservation
    /// Every action, in order.
    var log: [RolloutEngine.Action] = []
    var outcome: RolloutOutcome?
    /// The binary each node's agent kept at its last install (what `rollback` puts back).
    var kept: [String: K3sVersion] = [:]

    init(plan: Plan, inventory: ClusterInventory, policy: RolloutPolicy = RolloutPolicy(pollIntervalMilliseconds: 1000)) throws {
        engine = try RolloutEngine(rolloutID: "r1", plan: plan, policy: policy)
        cluster = ClusterObservation(inventory: inventory, etcdHealthy: true)
    }

    /// When set, every `checkGates` is answered with this report at once (as a runtime would).
    var gates: GateReport?
    /// The questions `checkGates` asked, in order.
    var gateQuestions: [GateQuestion] = []

    @discardableResult
    mutating func handle(_ event: RolloutEngine.Event) -> [RolloutEngine.Action] {
        let actions = engine.handle(event, now: now)
        log += actions
        var asked: GateQuestion?
        for action in actions {
            if case .finished(let result) = action { outcome = result }
            if case .checkGates(let question) = action { asked = question }
        }
        if let asked {
            gateQuestions.append(asked)
            if let gates { return actions + handle(.gatesRead(gates)) }
        }
        return actions
    }

    /// Requests sent by the last `handle`.
    static func sent(_ actions: [RolloutEngine.Action]) -> [AgentRequest] {
        actions.compactMap { if case .send(let request) = $0 { request } else { nil } }
    }

    /// Every request sent so far.
    var sentRequests: [AgentRequest] { Self.sent(log) }

    var notices: [String] {
        log.compactMap { if case .notice(let notice) = $0 { (notice.node.map { "\($0): " } ?? "") + notice.message } else { nil } }
    }

    mutating func advance(seconds: Int) { now = now.adding(seconds: seconds) }

    mutating func observe() { handle(.observed(cluster)) }

    mutating func setNode(_ name: String, version: K3sVersion? = nil, ready: Bool? = nil) {
        guard let index = cluster.inventory.nodes.firstIndex(where: { $0.name == name }) else { return }
        if let version { cluster.inventory.nodes[index].version = version }
        if let ready { cluster.inventory.nodes[index].ready = ready }
    }

    /// Answers every unanswered request the way a healthy agent and cluster would, updating the
    /// cluster view, until the engine asks for nothing more; then observes. Stops after `rounds`.
    mutating func runHealthy(rounds: Int = 400, failInstallOn: Set<String> = [], failingAt: [String: K3sVersion] = [:],
                             until stop: (EngineHarness) -> Bool = { _ in false }) {
        for _ in 0..<rounds {
            if outcome != nil || stop(self) { return }
            let requests = engine.unansweredRequests
            if requests.isEmpty {
                advance(seconds: 1)
                observe()
                continue
            }
            for request in requests {
                var fails = failInstallOn.contains(request.node)
                if case .install(let version, _, _) = request.command, failingAt[request.node] == version { fails = true }
                answer(request, failInstall: fails)
            }
        }
    }

    /// Starts the rollout and answers every request before the first install; returns that
    /// install, unanswered.
    mutating func runToFirstInstall() -> AgentRequest? {
        handle(.start)
        observe()
        for _ in 0..<3 { for request in engine.unansweredRequests where request.command.name != "install" { answer(request) } }
        return engine.unansweredRequests.first { $0.command.name == "install" }
    }

    mutating func answer(_ request: AgentRequest, failInstall: Bool = false) {
        advance(seconds: 1)
        switch request.command {
        case .cordon: handle(.replied(operationID: request.operationID, .cordoned(wasUnschedulable: isCordoned(request.node))))
        case .drain: handle(.replied(operationID: request.operationID, .drained))
        case .stage: handle(.replied(operationID: request.operationID, .staged))
        case .install(let version, _, _):
            if failInstall {
                handle(.replied(operationID: request.operationID, .installReverted(version: nil, healthy: true, message: "probes failed")))
            } else {
                kept[request.node] = runningVersion(request.node)
                setNode(request.node, version: version)
                handle(.replied(operationID: request.operationID, .installed(version: version)))
            }
        case .rollback:
            if let previous = kept.removeValue(forKey: request.node) { setNode(request.node, version: previous) }
            handle(.replied(operationID: request.operationID, .rolledBack(version: runningVersion(request.node), healthy: true, message: "")))
        case .uncordon: handle(.replied(operationID: request.operationID, .uncordoned(true)))
        case .commit: handle(.replied(operationID: request.operationID, .committed(version: nil)))
        case .backup(let backupID, _, _): handle(.replied(operationID: request.operationID, .backedUp(backupID: backupID)))
        case .restoreBackup: handle(.replied(operationID: request.operationID, .backupReceived))
        case .stopK3s:
            setNode(request.node, ready: false)
            handle(.replied(operationID: request.operationID, .stopped(wasActive: true)))
        case .restore(_, let version, _):
            setNode(request.node, version: version, ready: true)
            handle(.replied(operationID: request.operationID, .restored(version: version, healthy: true, message: "")))
        case .rejoin(let version, _):
            setNode(request.node, version: version, ready: true)
            handle(.replied(operationID: request.operationID, .rejoined(version: version, healthy: true, message: "")))
        }
    }

    var isBlocked: Bool { if case .blocked = engine.status { true } else { false } }

    func runningVersion(_ name: String) -> K3sVersion? { cluster.inventory.nodes.first { $0.name == name }?.version }

    func isCordoned(_ name: String) -> Bool { cluster.inventory.nodes.first { $0.name == name }?.cordoned ?? false }
}
