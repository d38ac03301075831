/// What the store needs to record a transition by its change and rebuild the engine by replay.
/// `handle` depends on nothing but the engine, the event and `now` (no clock, no randomness, no
/// iteration over a hashed collection that reaches an action), so a snapshot plus the events
/// handled after it, replayed in order with their moments, gives back the same engine.
extension RolloutEngine {
    /// The cluster as the engine last saw it (`.observed`): the base a recorded observation is
    /// stored against, as the change from this one.
    public var latestObservation: ClusterObservation? { observation }

    /// The entries of `progress` that differ from `before.progress`, with their positions: the
    /// same as comparing the two lists entry by entry, but building only the entries of moves that
    /// changed (a transition of a 5,000-node rollout changes a few), so recording a transition
    /// does not cost the size of the rollout in allocations.
    public func progressChanged(since before: RolloutEngine) -> [(ordinal: Int, step: MoveProgress)] {
        var changed: [(ordinal: Int, step: MoveProgress)] = []
        // A wave's label is part of its moves' progress; moves and waves are compared only where
        // they no longer share storage with `before` (`ChunkedArray`).
        let sameLabels = waves.count == before.waves.count
            && waves.differingPositions(from: before.waves).allSatisfy { waves[$0].label == before.waves[$0].label }
        let touched = sameLabels ? moves.differingPositions(from: before.moves) : Array(moves.indices)
        for index in touched {
            let step = progress(ofMove: index)
            if index >= before.moves.count || step != before.progress(ofMove: index) { changed.append((index, step)) }
        }
        if restore != nil || before.restore != nil {
            let now = restoreProgress
            let then = before.moves.count == moves.count ? before.restoreProgress : []
            for (offset, step) in now.enumerated() where !(offset < then.count && then[offset] == step) {
                changed.append((moves.count + offset, step))
            }
        }
        return changed
    }
}
