import Testing
import UpkeepRollout
import UpkeepCore

/// Random clusters (seeded) planned and then walked wave by wave, checking the rules a plan
/// must never break. A failure names its seed.
@Suite struct PlanPropertyTests {
    static let lines = 24...33

    /// A release per line, like a release source offers.
    static func releases(_ random: inout SeededGenerator) -> [K3sVersion] {
        lines.flatMap { minor in
            (0..<Int.random(in: 1...3, using: &random)).map { patch in K3sVersion(major: 1, minor: minor, patch: patch * 3 + 1) }
        }
    }

    static func randomCluster(seed: UInt64) -> (ClusterInventory, K3sVersion, [K3sVersion], PlanPolicy) {
        var random = SeededGenerator(seed: seed)
        let available = releases(&random)
        func pick(_ minor: Int) -> K3sVersion { available.filter { $0.minor == minor }.randomElement(using: &random)! }
        let serverLine = Int.random(in: 27...30, using: &random)
        var nodes: [InventoryNode] = []
        let serverCount = Int.random(in: 1...5, using: &random)
        let secondLine = Bool.random(using: &random) ? serverLine : serverLine - 1
        for number in 1...serverCount {
            let version = pick(number == 1 ? serverLine : secondLine)
            nodes.append(InventoryNode(name: "server-\(number)", role: .server, etcd: true, version: version))
        }
        let oldestServer = min(serverLine, secondLine)
        for number in (0..<Int.random(in: 0...14, using: &random)).map({ $0 + 1 }) {
            let lag = Int.random(in: 0...SkewPolicy.kubeletLagMax(MinorLine(major: 1, minor: oldestServer - 3)), using: &random)
            var version = pick(oldestServer - lag)
            if version.minor == oldestServer { version = min(version, nodes.map(\.version).min()!) }
            nodes.append(InventoryNode(name: "agent-\(number)", role: .agent, arch: Arch.allCases.randomElement(using: &random)!,
                                       version: version, cordoned: Int.random(in: 0..<10, using: &random) == 0))
        }
        let names = nodes.map(\.name)
        let volumes = (0..<(names.count < 2 ? 0 : Int.random(in: 0...30, using: &random))).map { number in
            let replicas = Array(names.shuffled(using: &random).prefix(Int.random(in: 2...3, using: &random)))
            return volume("pvc-\(number)", on: replicas, state: Bool.random(using: &random) ? .attached : .detached,
                          robustness: .healthy)
        }
        let targetLine = Int.random(in: serverLine...min(serverLine + 3, lines.upperBound), using: &random)
        let target = pick(targetLine)
        let policy = PlanPolicy(agentConcurrency: Int.random(in: 1...5, using: &random))
        return (ClusterInventory(nodes: nodes, volumes: volumes), target, available, policy)
    }

    @Test(arguments: 1...300)
    func randomPlansKeepEveryRule(seed: Int) throws {
        let (inventory, target, available, policy) = Self.randomCluster(seed: UInt64(seed))
        let plan: Plan
        do {
            plan = try Planner.plan(inventory: inventory, target: target, available: available, policy: policy)
        } catch {
            // Only a server already on the target's line with a newer patch makes a mixed direction.
            guard error.problems.allSatisfy({ if case .mixedDirection = $0 { true } else { false } }) else {
                Issue.record("seed \(seed): unexpected refusal: \(error)")
                return
            }
            return
        }
        let violations = PlanWalk.violations(plan: plan, inventory: inventory)
        #expect(violations.isEmpty, "seed \(seed): \(violations.joined(separator: "; "))")
    }
}

/// Walks a plan wave by wave over the inventory's versions and lists every broken rule.
enum PlanWalk {
    static func violations(plan: Plan, inventory: ClusterInventory) -> [String] {
        var problems: [String] = []
        var version = Dictionary(uniqueKeysWithValues: inventory.nodes.map { ($0.name, $0.version) })
        let roles = Dictionary(uniqueKeysWithValues: inventory.nodes.map { ($0.name, $0.role) })
        let servers = inventory.nodes.filter { $0.role == .server }.map(\.name)
        let agents = inventory.nodes.filter { $0.role == .agent }.map(\.name)
        func skewBroken() -> String? {
            let lines = servers.map { version[$0]!.minorLine }
            guard let low = lines.min(), let high = lines.max() else { return nil }
            if !SkewPolicy.serversAllowed(low, high) { return "servers at \(low) and \(high)" }
            for agent in agents where !(SkewPolicy.kubeletAllowed(version[agent]!.minorLine, server: low)
                                        && SkewPolicy.kubeletAllowed(version[agent]!.minorLine, server: high)) {
                return "\(agent) at \(version[agent]!) with servers \(low)…\(high)"
            }
            return nil
        }
        let initiallyBroken = skewBroken() != nil
        for hop in plan.hops {
            var agentsStarted = false
            for wave in hop.waves {
                if wave.role == .server {
                    if wave.steps.count != 1 { problems.append("server wave \(wave.label) of hop \(hop.number) has \(wave.steps.count) nodes") }
                    if agentsStarted && plan.direction == .upgrade { problems.append("hop \(hop.number): a server after its agents") }
                } else {
                    agentsStarted = true
                    if wave.steps.count > plan.policy.agentConcurrency { problems.append("wave too big") }
                    if plan.direction == .upgrade, let lagging = servers.first(where: { version[$0]! < hop.version }) {
                        problems.append("hop \(hop.number): agents start before \(lagging) reached \(hop.version)")
                    }
                }
                let down = Set(wave.nodes)
                for volume in inventory.volumes {
                    let protected = volume.protectedNodes
                    if protected.count >= 2 && protected.allSatisfy(down.contains) {
                        problems.append("wave \(hop.number)/\(wave.label) takes down every protected replica of \(volume.name)")
                    }
                }
                for step in wave.steps {
                    if version[step.node] != step.from { problems.append("\(step.node) planned from \(step.from) but is at \(version[step.node]!)") }
                    if roles[step.node] != step.role { problems.append("\(step.node) has the wrong role") }
                    version[step.node] = step.to
                }
                if !initiallyBroken, let broken = skewBroken() { problems.append("after \(hop.number)/\(wave.label): skew broken: \(broken)") }
            }
        }
        for (node, at) in version where at != plan.target { problems.append("\(node) ends at \(at), not \(plan.target)") }
        return problems
    }
}
