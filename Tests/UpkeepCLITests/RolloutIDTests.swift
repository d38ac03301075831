import Foundation
import Testing
@testable import UpkeepCLI
import UpkeepCore
import UpkeepRuntime
import UpkeepRuntimeTestSupport
import UpkeepStore
import UpkeepTestSupport

/// Rollout ids come from the wall clock to the second; two rollouts created within one second
/// (an apply right after a refused one and `upkeep abandon`) get the second one a suffix instead
/// of failing with "already exists".
@Suite struct RolloutIDTests {
    @Test func aSecondRolloutWithinTheSameSecondGetsASuffix() throws {
        let directory = try TemporaryDirectory()
        let store = try StateStore(stateDirectory: directory.file("state"))
        let now = Date(timeIntervalSince1970: 1_796_000_000)
        let first = RolloutDriver.newRolloutID(unusedIn: store, now: now)
        #expect(first == RolloutDriver.newRolloutID(now: now))
        let at = Instant(milliseconds: 1_796_000_000_000)
        try store.acquireLease(holder: "test", ttlMilliseconds: 60_000, now: at)
        try store.createRollout(try RolloutFixtures.engine(first), holder: "test", now: at)
        try store.releaseLease(holder: "test")
        _ = try RolloutRuntime.abandon(store: store, rolloutID: first, reason: "refused at its drain")
        let second = RolloutDriver.newRolloutID(unusedIn: store, now: now)
        #expect(second == first + "-2")
        try store.acquireLease(holder: "test", ttlMilliseconds: 60_000, now: at)
        try store.createRollout(try RolloutFixtures.engine(second), holder: "test", now: at)
        #expect(RolloutDriver.newRolloutID(unusedIn: store, now: now) == first + "-3")
        #expect(RolloutDriver.newRolloutID(unusedIn: store, now: now.addingTimeInterval(1)) != first)
    }
}
