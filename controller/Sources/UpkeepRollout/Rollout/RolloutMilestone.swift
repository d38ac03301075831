import UpkeepCore

/// What an operator is told about a rollout as it goes (docs/notifications.md): derived from
/// two consecutive engine states, so the store can record it in the same transaction as the
/// transition that produced it, and a crash can neither lose nor repeat it.
public enum RolloutMilestone: Equatable, Sendable {
    /// The rollout left `notStarted`: `nodes` nodes to move over `hops` hops.
    case started(nodes: Int, hops: Int)
    /// A node of the plan reached its target (a forward move committed; ways back do not count).
    case nodeDone(node: String, role: NodeRole, from: K3sVersion, to: K3sVersion)
    /// The rollout waits for `upkeep resume`.
    case blocked(reason: String)
    case finished(RolloutOutcome)
    /// The datastore backup before a hop could not be taken (the rollout blocks before the hop).
    case backupFailed(hop: Int, node: String, backupID: String, message: String)
}

extension RolloutEngine {
    /// The milestones between `before` and this engine, in the order an operator should read
    /// them (a node done before the rollout that finished with it). Nil `before`: none.
    public func milestones(since before: RolloutEngine?) -> [RolloutMilestone] {
        guard let before else { return [] }
        var found: [RolloutMilestone] = []
        if before.status == .notStarted, status != .notStarted {
            found.append(.started(nodes: Set(plan.waves.flatMap(\.steps).map(\.node)).count, hops: plan.hops.count))
        }
        // Moves are only ever appended: a move's earlier self is at its own position. Only the
        // moves that differ from `before` can have become done.
        for index in moves.differingPositions(from: before.moves)
        where moves[index].phase == .done && !(index < before.moves.count && before.moves[index].phase == .done) {
            let move = moves[index]
            if !move.key.hasPrefix("r") { found.append(.nodeDone(node: move.node, role: move.role, from: move.from, to: move.to)) }
        }
        let failedBefore = Set((before.snapshots ?? []).filter { $0.state == .failed }.map { "\($0.hop):\($0.attempt)" })
        for snapshot in snapshots ?? [] where snapshot.state == .failed && !failedBefore.contains("\(snapshot.hop):\(snapshot.attempt)") {
            found.append(.backupFailed(hop: snapshot.hop, node: snapshot.node, backupID: snapshot.backupID, message: snapshot.message ?? "no reason given"))
        }
        switch (before.status, status) {
        case (.blocked, .blocked), (.finished, .finished):
            break
        case (_, .blocked(let reason)):
            found.append(.blocked(reason: reason))
        case (_, .finished(let outcome)):
            found.append(.finished(outcome))
        default:
            break
        }
        return found
    }
}
