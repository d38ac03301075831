import UpkeepCore

/// Where each stage run is in the engine's `stages`: the first by node and version, and by
/// operation id. Stage runs are kept for the whole rollout, so searching them grew with the
/// cluster at every stage answer, every staging move and every prefetch.
///
/// Derived from `stages` and nothing else: never persisted, never compared. It is rebuilt
/// whenever the list's length is not the one indexed (after a decode, after a removal); an
/// append is added as it is made, and the one change of a key in place (a stage sent again under
/// a new operation id) is told to it.
struct StageIndex: Equatable, Sendable {
    private var byTarget: [String: Int] = [:]
    private var byOperation: [String: Int] = [:]
    private var indexed = -1

    static func == (lhs: Self, rhs: Self) -> Bool { true }

    private static func target(_ node: String, _ version: K3sVersion) -> String { "\(node) \(version)" }

    /// The first stage run of `version` on `node`, as `firstIndex(where:)` finds it.
    mutating func position(node: String, version: K3sVersion, in stages: [StageRun]) -> Int? {
        refresh(stages)
        return byTarget[Self.target(node, version)]
    }

    /// The stage run sent under `operationID`.
    mutating func position(operationID: String, in stages: [StageRun]) -> Int? {
        refresh(stages)
        return byOperation[operationID]
    }

    /// `stages` just had its last element appended.
    mutating func appended(_ stages: [StageRun]) {
        guard indexed == stages.count - 1, let stage = stages.last else { return removed() }
        add(stage, at: stages.count - 1)
        indexed = stages.count
    }

    /// The stage run at `position` is now sent under its new operation id, no longer `old`.
    mutating func renamed(_ old: String, at position: Int, in stages: [StageRun]) {
        guard indexed == stages.count else { return removed() }
        if byOperation[old] == position { byOperation[old] = nil }
        if byOperation[stages[position].operationID] == nil { byOperation[stages[position].operationID] = position }
    }

    /// Stage runs were removed from `stages`: built again at the next look-up.
    mutating func removed() { indexed = -1 }

    private mutating func refresh(_ stages: [StageRun]) {
        guard indexed != stages.count else { return }
        byTarget = [:]
        byOperation = [:]
        for (position, stage) in stages.enumerated() { add(stage, at: position) }
        indexed = stages.count
    }

    private mutating func add(_ stage: StageRun, at position: Int) {
        let target = Self.target(stage.node, stage.version)
        if byTarget[target] == nil { byTarget[target] = position }
        if byOperation[stage.operationID] == nil { byOperation[stage.operationID] = position }
    }
}
