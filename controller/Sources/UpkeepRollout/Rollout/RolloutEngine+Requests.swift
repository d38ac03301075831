extension RolloutEngine {
    /// Requests the engine will still send (or is waiting on) without a `resume`: neither
    /// answered nor out of tries. A blocked rollout with none has nothing left to do on its own.
    public var liveRequestCount: Int { pending.values.filter { !$0.exhausted }.count }
}
