import NIOCore

/// At most a few Progress frames per second per request (PROTOCOL.md 6.3, a SHOULD): a token
/// bucket of `burst` events refilled at `perSecond`. Events beyond it are dropped, and counted.
public struct ProgressBudget: Equatable, Sendable {
    public static let burstDefault = 32
    public static let perSecondDefault = 5

    let burst: Int
    let perSecond: Int
    private var tokens: Int
    private var refilledAt: NIODeadline?
    /// Events dropped so far.
    public private(set) var droppedEvents = 0

    public init(burst: Int = burstDefault, perSecond: Int = perSecondDefault) {
        precondition(burst >= 1 && perSecond >= 1, "a budget lets at least one event through")
        self.burst = burst
        self.perSecond = perSecond
        tokens = burst
    }

    /// Whether an event may be sent `now`.
    public mutating func admit(now: NIODeadline) -> Bool {
        let refill = TimeAmount.nanoseconds(1_000_000_000 / Int64(perSecond))
        if let refilledAt {
            let earned = (now - refilledAt).nanoseconds / refill.nanoseconds
            if earned > 0 {
                tokens = min(burst, tokens + Int(clamping: earned))
                self.refilledAt = refilledAt + .nanoseconds(earned * refill.nanoseconds)
            }
        } else {
            refilledAt = now
        }
        guard tokens > 0 else {
            droppedEvents += 1
            return false
        }
        tokens -= 1
        return true
    }
}
