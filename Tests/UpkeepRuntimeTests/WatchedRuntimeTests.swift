import Foundation
import Synchronization
import Testing
import UpkeepCore
import UpkeepRollout
import UpkeepRuntime
import UpkeepRuntimeTestSupport
import UpkeepStore
import UpkeepTestSupport

/// A cluster that shows an agent's work only a moment after the agent answered (as a kubelet's
/// status reaches the API after the restart), and says when it does: a `ClusterChangeFeed`.
final class LaggingWorld: AgentTransport, ClusterObserver, ClusterChangeFeed, Sendable {
    let world: FileWorld
    let lagMilliseconds: Int
    private let visible: Mutex<(serial: Int, observation: ClusterObservation)>
    private let serials = Mutex(0)
    private let listener = Mutex<(@Sendable () -> Void)?>(nil)
    let looks = Mutex(0)

    init(world: FileWorld, lagMilliseconds: Int = 30) {
        self.world = world
        self.lagMilliseconds = lagMilliseconds
        visible = Mutex((0, world.snapshot.observation))
    }

    func send(_ request: AgentRequest, deadlineSeconds: Int, progress: @escaping @Sendable (String) -> Void) async throws -> AgentReply {
        let reply = try await world.send(request, deadlineSeconds: deadlineSeconds, progress: progress)
        let serial = serials.withLock { serial in
            serial += 1
            return serial
        }
        let now = world.snapshot.observation
        Task {
            try? await Task.sleep(for: .milliseconds(lagMilliseconds))
            visible.withLock { if $0.serial < serial { $0 = (serial, now) } }
            listener.withLock { $0 }?()
        }
        return reply
    }

    func observe() async throws -> ClusterObservation {
        looks.withLock { $0 += 1 }
        return visible.withLock { $0.observation }
    }

    func followChanges(_ changed: @escaping @Sendable () -> Void) async {
        listener.withLock { $0 = changed }
        while !Task.isCancelled { try? await Task.sleep(for: .milliseconds(100)) }
        listener.withLock { $0 = nil }
    }
}

@Suite struct WatchedRuntimeTests {
    /// The engine's poll is ten minutes: every wait on the cluster that the first look does not
    /// settle would hold the rollout that long. It finishes because each change the feed reports
    /// makes the runtime look at once.
    @Test func aChangeTheFeedReportsIsLookedAtAtOnceWithoutWaitingForThePoll() async throws {
        let directory = try TemporaryDirectory()
        let world = try FileWorld(path: directory.file("world.json"), model: RolloutFixtures.world())
        let lagging = LaggingWorld(world: world)
        let store = try StateStore(stateDirectory: directory.file("state"))
        var policy = RolloutFixtures.policy()
        policy.pollIntervalMilliseconds = 600_000
        let engine = try RolloutEngine(rolloutID: "r1", plan: RolloutFixtures.plan(RolloutFixtures.world()), policy: policy)
        let runtime = RolloutRuntime(store: store, transport: lagging, observer: lagging, configuration: RuntimeConfiguration(holder: "test"))
        let result = try await bounded("the rollout to finish by the feed, not the 10-minute poll", seconds: 90) {
            try await runtime.start(engine)
        }
        #expect(result == .finished(.completed))
        let snapshot = world.snapshot
        for node in ["server-1", "agent-1", "agent-2"] { #expect(snapshot.node(node)?.version == RolloutFixtures.target) }
        #expect(lagging.looks.withLock { $0 } > 3)
    }
}
