import Foundation
import NIOConcurrencyHelpers
import NIOCore
import UpkeepKube

/// The model behind a lock, with the clock it runs on: what the API server and the real-time
/// driver share. With a manual clock nothing moves unless a test calls `advance`.
public final class SandboxCluster: Sendable {
    private let state: NIOLockedValueBox<ClusterModel>
    private let clock: @Sendable () -> Double

    public init(model: ClusterModel, clock: @escaping @Sendable () -> Double) {
        state = NIOLockedValueBox(model)
        self.clock = clock
    }

    /// A cluster on the wall clock.
    public convenience init(spec: ClusterSpec, timings: ModelTimings = ModelTimings()) {
        let now = Date().timeIntervalSince1970
        self.init(model: ClusterModel(spec: spec, timings: timings, now: now), clock: { Date().timeIntervalSince1970 })
    }

    public var now: Double { clock() }

    public func handle(_ request: APIRequest) -> APIResponse {
        let now = clock()
        return state.withLockedValue { $0.handle(request, now: now) }
    }

    public func advance() {
        let now = clock()
        state.withLockedValue { $0.advance(to: now) }
    }

    public func withModel<T>(_ body: (inout ClusterModel) -> T) -> T {
        state.withLockedValue { body(&$0) }
    }

    /// Ticks the model on the wall clock every `interval` until the returned task is cancelled.
    public func startDriver(on loop: any EventLoop, interval: TimeAmount = .milliseconds(200)) -> RepeatedTask {
        loop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [self] _ in advance() }
    }
}

/// A clock that only moves when told to: for deterministic tests over real sockets.
public final class ManualClock: Sendable {
    private let value: NIOLockedValueBox<Double>
    public init(_ start: Double) { value = NIOLockedValueBox(start) }
    public var now: Double { value.withLockedValue { $0 } }
    public func advance(by seconds: Double) { value.withLockedValue { $0 += seconds } }
}
