import Foundation
import Synchronization
import Testing
import UpkeepCore
import UpkeepPOSIX
import UpkeepRollout
import UpkeepRuntime
import UpkeepRuntimeTestSupport
import UpkeepStore

/// The runtime's `RunBracket` (what maintenance mode around a rollout rides on): opened once both
/// locks are held and before anything of the rollout is recorded or sent, closed with how the run
/// ended after its tasks stopped and before the locks are given back; a refused opening starts
/// nothing.
@Suite struct RunBracketTests {
    /// What the bracket saw each time it was called.
    struct Sight: Sendable, Equatable {
        var call: String
        var clusterHeld: Bool
        var releases: Int
        var localHolder: String?
        var rolloutsRecorded: Int
        var requestsReceived: Int
    }

    /// A bracket that writes down what it sees, and throws on opening when told to.
    final class Witness: RunBracket {
        let reader: StateStore
        let world: FileWorld
        let lock: ScriptedLock
        let refusal: String?
        let sights = Mutex<[Sight]>([])

        init(_ setup: RolloutRuntimeTests.Setup, _ lock: ScriptedLock, refusing refusal: String? = nil) {
            reader = setup.reader
            world = setup.world
            self.lock = lock
            self.refusal = refusal
        }

        struct Refused: Error, CustomStringConvertible {
            let description: String
        }

        func opening(rolloutID: String, lock: OperationLock) async throws {
            try see("open \(rolloutID)", lock)
            if let refusal { throw Refused(description: refusal) }
        }

        func closing(rolloutID: String, lock: OperationLock, outcome: Result<RunResult, RuntimeError>) async {
            let ended = switch outcome {
            case .success(let result): "\(result)"
            case .failure(let error): "\(error)"
            }
            try? see("close \(rolloutID): \(ended)", lock)
        }

        private func see(_ call: String, _ operationLock: OperationLock) throws {
            let sight = Sight(call: call, clusterHeld: lock.isHeld(at: .wallClockNow()) && operationLock.isHeld(at: .wallClockNow()),
                              releases: lock.releases, localHolder: try reader.currentLease()?.holder,
                              rolloutsRecorded: try reader.history(limit: 5).count, requestsReceived: world.snapshot.received.count)
            sights.withLock { $0.append(sight) }
        }
    }

    /// A runtime over a fresh setup whose bracket is a witness; `lock` decides whether the cluster
    /// lock is given.
    struct Rig {
        let setup: RolloutRuntimeTests.Setup
        let lock: ScriptedLock
        let witness: Witness
        let runtime: RolloutRuntime

        init(lock: ScriptedLock = ScriptedLock(), refusing refusal: String? = nil) throws {
            setup = try RolloutRuntimeTests.Setup()
            self.lock = lock
            witness = Witness(setup, lock, refusing: refusal)
            runtime = RolloutRuntime(store: setup.store, transport: setup.world, observer: setup.world, lock: lock, bracket: witness,
                                     configuration: RuntimeConfiguration(holder: "test"))
        }
    }

    @Test func theBracketOpensBeforeAnythingIsRecordedAndClosesBeforeTheLockIsGivenBack() async throws {
        let rig = try Rig()
        let (setup, lock, witness, runtime) = (rig.setup, rig.lock, rig.witness, rig.runtime)
        #expect(try await bounded("the rollout") { try await runtime.start(try RolloutFixtures.engine("r1")) } == .finished(.completed))
        let sights = witness.sights.withLock { $0 }
        try #require(sights.count == 2, "\(sights)")
        #expect(sights[0] == Sight(call: "open r1", clusterHeld: true, releases: 0, localHolder: "test", rolloutsRecorded: 0, requestsReceived: 0))
        #expect(sights[1].call == "close r1: \(RunResult.finished(.completed))" && sights[1].clusterHeld && sights[1].releases == 0
                && sights[1].localHolder == "test" && sights[1].rolloutsRecorded == 1 && sights[1].requestsReceived > 0, "\(sights[1])")
        #expect(try lock.releases == 1 && setup.reader.currentLease() == nil)
    }

    @Test func aRefusedOpeningStartsNothingAndGivesTheLockBack() async throws {
        let rig = try Rig(refusing: "Flux could not be suspended")
        let (setup, lock, witness, runtime) = (rig.setup, rig.lock, rig.witness, rig.runtime)
        await #expect(throws: RuntimeError.notOpened(rolloutID: "r1", reason: "Flux could not be suspended")) {
            try await runtime.start(try RolloutFixtures.engine("r1"))
        }
        #expect(witness.sights.withLock { $0.map(\.call) } == ["open r1"], "closed a run that never opened")
        #expect(try setup.reader.history(limit: 5).isEmpty && setup.world.snapshot.received.isEmpty)
        #expect(try lock.releases == 1 && setup.reader.currentLease() == nil)
    }

    @Test func aLockHeldElsewhereNeverOpensTheBracket() async throws {
        let refusal = ClusterLockError.held(lock: "kube-system/upkeep", holder: "other-1 (apply r9)", renewedAt: nil, expiresAt: nil)
        let rig = try Rig(lock: ScriptedLock(refusing: refusal))
        let (witness, runtime) = (rig.witness, rig.runtime)
        await #expect(throws: RuntimeError.lock(refusal)) { try await runtime.start(try RolloutFixtures.engine("r1")) }
        #expect(witness.sights.withLock { $0 }.isEmpty)
    }

    /// The store refuses the run after the bracket opened (a restore of a rollout it does not
    /// know): the bracket is closed with that refusal, still under the lock.
    @Test func aRunTheStoreRefusesClosesTheBracketWithTheRefusal() async throws {
        let rig = try Rig()
        let (lock, witness, runtime) = (rig.lock, rig.witness, rig.runtime)
        let outcome = await capture { try await runtime.restore(rolloutID: "r7") }
        guard case .failure(RuntimeError.store(let refusal)) = outcome else {
            Issue.record("expected the store's refusal, got \(outcome)")
            return
        }
        let sights = witness.sights.withLock { $0 }
        #expect(sights.map(\.call) == ["open r7", "close r7: \(RuntimeError.store(refusal))"], "\(sights)")
        #expect(sights.allSatisfy { $0.clusterHeld && $0.releases == 0 && $0.localHolder == "test" }, "\(sights)")
        #expect(lock.releases == 1)
    }
}
