import Foundation
import Synchronization
import Testing
import UpkeepRollout
import UpkeepCore
import UpkeepRuntime
import UpkeepRuntimeTestSupport
import UpkeepStore
import UpkeepTestSupport

@Suite struct RolloutRuntimeTests {
    static let nodes = ["server-1", "agent-1", "agent-2"]

    struct Setup {
        let directory: TemporaryDirectory
        let world: FileWorld
        let store: StateStore
        /// A second connection, as another process would have.
        let reader: StateStore

        init(_ model: WorldModel = RolloutFixtures.world(), operationDelayMilliseconds: Int = 0) throws {
            directory = try TemporaryDirectory()
            world = try FileWorld(path: directory.file("world.json"), model: model, operationDelayMilliseconds: operationDelayMilliseconds)
            store = try StateStore(stateDirectory: directory.file("state"))
            reader = try StateStore(stateDirectory: directory.file("state"))
        }
    }

    @Test func aRolloutCompletesAndEveryRequestIsPersistedBeforeItIsSent() async throws {
        let setup = try Setup()
        let transport = PersistedFirstTransport(world: setup.world, reader: setup.reader, rolloutID: "r1")
        let recorder = Recorder()
        let runtime = RolloutRuntime(store: setup.store, transport: transport, observer: setup.world,
                                     configuration: RuntimeConfiguration(holder: "test"), updates: recorder.add)
        let engine = try RolloutFixtures.engine("r1")
        let result = try await bounded("the rollout to finish") { try await runtime.start(engine) }
        #expect(result == .finished(.completed))
        #expect(transport.violations.isEmpty, "\(transport.violations)")
        #expect(transport.checked >= Self.nodes.count * 6)

        let world = setup.world.snapshot
        for node in Self.nodes {
            #expect(world.node(node)?.version == RolloutFixtures.target && world.node(node)?.cordoned == false && world.node(node)?.watch == nil)
            #expect(world.executed("install", on: node).count == 1)
        }
        let detail = try setup.reader.rollout(id: "r1")
        #expect(detail.record.outcome == .completed && detail.record.finishedAt != nil)
        #expect(detail.record.steps.map { "\($0.node) \($0.progress.stage)" } == ["server-1 done", "agent-1 done", "agent-2 done"])
        #expect(recorder.notices == detail.notices.map(\.notice))
        #expect(try setup.reader.currentLease() == nil, "the lease is released at the end")
    }

    @Test func aFailingNodeWithAutoRollbackReturnsTheOthersInReverseOrder() async throws {
        var model = RolloutFixtures.world()
        model.failingInstalls["agent-2"] = RolloutFixtures.target
        let setup = try Setup(model)
        let runtime = RolloutRuntime(store: setup.store, transport: setup.world, observer: setup.world,
                                     configuration: RuntimeConfiguration(holder: "test"))
        let engine = try RolloutFixtures.engine("r1")
        let result = try await bounded("the rollback to finish") { try await runtime.start(engine) }
        guard case .finished(.rolledBack(let cause)) = result else {
            Issue.record("expected a rollback, got \(result)")
            return
        }
        #expect(cause.contains("agent-2"))

        let world = setup.world.snapshot
        #expect(world.nodes.allSatisfy { $0.version == RolloutFixtures.from && !$0.cordoned && $0.watch == nil })
        let backInstalls = world.executed.filter {
            if case .install(let version, _, _) = $0.command { version == RolloutFixtures.from } else { false }
        }
        #expect(backInstalls.map(\.node) == ["agent-1", "server-1"])

        let record = try #require(try setup.reader.history(limit: 5).first)
        #expect(record.outcome == .rolledBack(cause: cause))
        let steps = record.steps.map { "\($0.progress.isRollback ? "back" : "forward") \($0.node) \($0.progress.stage)" }
        #expect(steps == ["forward server-1 done", "forward agent-1 done", "forward agent-2 reverted", "back agent-1 done", "back server-1 done"])
        let back = record.steps.filter(\.progress.isRollback)
        let agentFinished = try #require(back.first?.finishedAt)
        let serverStarted = try #require(back.last?.startedAt)
        #expect(agentFinished <= serverStarted, "server-1 went back only after agent-1 was back")
    }

    @Test func anAgentThatNeverAnswersBlocksTheRolloutAndResumeCarriesItOn() async throws {
        let setup = try Setup()
        let transport = PersistedFirstTransport(world: setup.world, reader: setup.reader, rolloutID: "r1", silentNode: "agent-2")
        let runtime = RolloutRuntime(store: setup.store, transport: transport, observer: setup.world,
                                     configuration: RuntimeConfiguration(holder: "test"))
        let engine = try RolloutFixtures.engine("r1")
        let blocked = try await bounded("the rollout to block") { try await runtime.start(engine) }
        guard case .blocked(let reason) = blocked else {
            Issue.record("expected blocked, got \(blocked)")
            return
        }
        #expect(reason.contains("agent-2") && reason.contains("upkeep resume"))
        #expect(try setup.reader.unfinishedRollout()?.status == .blocked(reason: reason))
        #expect(try setup.reader.currentLease() == nil, "a blocked run releases the lease")

        transport.silent.withLock { $0 = false }
        // As `upkeep resume` does: the configuration's windows (none) first, then the resume; the
        // rollout is still blocked between the two, which must not end the run.
        let resumed = try await bounded("the resumed rollout to finish") { try await runtime.resume(windows: .some(nil)) }
        #expect(resumed == .finished(.completed))
        #expect(transport.violations.isEmpty, "\(transport.violations)")
        let world = setup.world.snapshot
        #expect(world.nodes.allSatisfy { $0.version == RolloutFixtures.target && !$0.cordoned && $0.watch == nil })
        #expect(try setup.reader.transitions(rolloutID: "r1").contains { $0.event == "resume" })
    }

    @Test func aRolloutCreatedButNeverStartedIsStartedByResume() async throws {
        let setup = try Setup()
        try setup.reader.acquireLease(holder: "killed pid 3", ttlMilliseconds: 600_000, now: WallClock().now())
        try setup.reader.createRollout(try RolloutFixtures.engine("r1"), holder: "killed pid 3", now: WallClock().now())
        try setup.reader.releaseLease(holder: "killed pid 3")
        let runtime = RolloutRuntime(store: setup.store, transport: setup.world, observer: setup.world,
                                     configuration: RuntimeConfiguration(holder: "test"))
        let result = try await bounded("the resumed rollout to finish") { try await runtime.resume() }
        #expect(result == .finished(.completed))
        #expect(try setup.reader.transitions(rolloutID: "r1").first?.event == "start")
        await #expect(throws: RuntimeError.store(.nothingToResume)) { try await runtime.resume() }
        await #expect(throws: RuntimeError.store(.rolloutFinished(id: "r1", outcome: "completed"))) { try await runtime.resume(rolloutID: "r1") }
    }

    @Test func aSecondControllerIsKeptOutAndNothingIsRecorded() async throws {
        let setup = try Setup()
        let lease = try setup.reader.acquireLease(holder: "other pid 1", ttlMilliseconds: 600_000, now: WallClock().now())
        let runtime = RolloutRuntime(store: setup.store, transport: setup.world, observer: setup.world,
                                     configuration: RuntimeConfiguration(holder: "test"))
        let engine = try RolloutFixtures.engine("r1")
        await #expect(throws: RuntimeError.store(.leaseHeld(holder: "other pid 1", until: lease.expiresAt))) {
            try await runtime.start(engine)
        }
        #expect(try setup.reader.history(limit: 5).isEmpty)
        #expect(setup.world.snapshot.received.isEmpty)
        #expect(try setup.reader.currentLease() == lease)
    }

    @Test func losingTheLeaseStopsTheRun() async throws {
        let setup = try Setup(operationDelayMilliseconds: 30)
        let runtime = RolloutRuntime(store: setup.store, transport: setup.world, observer: setup.world,
                                     configuration: RuntimeConfiguration(holder: "test", leaseTTLMilliseconds: 600_000))
        let engine = try RolloutFixtures.engine("r1")
        let run = Task { try await runtime.start(engine) }
        defer { run.cancel() }
        let world = setup.world
        _ = try await bounded("the first operation to run") {
            while world.snapshot.executed.isEmpty { try await Task.sleep(for: .milliseconds(5)) }
            return true
        }
        try setup.reader.acquireLease(holder: "other pid 2", ttlMilliseconds: 600_000, now: WallClock().now(), forceTakeover: true)
        let outcome = try await bounded("the run to stop") { await run.result }
        let lost = StoreError.leaseLost(holder: "test", current: "other pid 2").description
        #expect(throws: RuntimeError.lockLost(rolloutID: "r1", reason: lost)) { try outcome.get() }
        #expect(try setup.reader.currentLease()?.holder == "other pid 2", "the run leaves the new holder's lease alone")
        // The other process owns the state now: nothing more is written, not even the block.
        #expect(try setup.reader.unfinishedRollout()?.id == "r1" && setup.reader.unfinishedRollout()?.status == .running)
    }

    /// Another controller takes the cluster Lease over mid-rollout (the holder is told): the run
    /// records the rollout blocked with the reason, sends nothing more, and ends with `lockLost`.
    @Test func losingTheClusterLockBlocksTheRolloutAndSendsNothingMore() async throws {
        let setup = try Setup(operationDelayMilliseconds: 10)
        let lock = ScriptedLock()
        let transport = TriggeringTransport(world: setup.world, on: "install") { lock.lose("other-1 (apply r9) holds it now") }
        let runtime = RolloutRuntime(store: setup.store, transport: transport, observer: setup.world, lock: lock,
                                     configuration: RuntimeConfiguration(holder: "test"))
        let outcome = await capture { try await bounded("the run to stop") { try await runtime.start(try RolloutFixtures.engine("r1")) } }
        #expect(throws: RuntimeError.lockLost(rolloutID: "r1", reason: "other-1 (apply r9) holds it now")) { try outcome.get() }
        try expectStoppedAtTheLoss(setup, lock, reason: "other-1 (apply r9) holds it now")
    }

    /// The process was paused past its renew deadline (nobody tells it): the first thing it does
    /// when it runs again is see that it no longer holds the lock, and stop without sending.
    @Test func aLockThatLapsedWhilePausedStopsTheRunBeforeItSendsAnything() async throws {
        let setup = try Setup(operationDelayMilliseconds: 10)
        let lock = ScriptedLock()
        let transport = TriggeringTransport(world: setup.world, on: "install") { lock.lapse() }
        let runtime = RolloutRuntime(store: setup.store, transport: transport, observer: setup.world, lock: lock,
                                     configuration: RuntimeConfiguration(holder: "test"))
        let outcome = await capture { try await bounded("the run to stop") { try await runtime.start(try RolloutFixtures.engine("r1")) } }
        guard case .failure(RuntimeError.lockLost(let id, let reason)) = outcome else {
            Issue.record("expected lockLost, got \(outcome)")
            return
        }
        #expect(id == "r1" && reason.contains("not renewed in time"), "\(reason)")
        try expectStoppedAtTheLoss(setup, lock, reason: "not renewed in time")
    }

    /// A cluster lock held by another controller refuses the run before anything is recorded or sent.
    @Test func aClusterLockHeldElsewhereRefusesBeforeAnythingIsRecorded() async throws {
        let setup = try Setup()
        let refusal = ClusterLockError.held(lock: "kube-system/upkeep", holder: "other-1 (apply r9)", renewedAt: nil, expiresAt: nil)
        let lock = ScriptedLock(refusing: refusal)
        let runtime = RolloutRuntime(store: setup.store, transport: setup.world, observer: setup.world, lock: lock,
                                     configuration: RuntimeConfiguration(holder: "test"))
        await #expect(throws: RuntimeError.lock(refusal)) { try await runtime.start(try RolloutFixtures.engine("r1")) }
        #expect(lock.operations == ["apply r1"])
        #expect(try setup.reader.history(limit: 5).isEmpty)
        #expect(setup.world.snapshot.received.isEmpty)
        #expect(try setup.reader.currentLease() == nil, "the state directory's lease is given back")
    }

    /// Who started what: the rollout's maker, then each resume, with the configured initiator.
    @Test func everyOperationRecordsWhoStartedIt() async throws {
        let setup = try Setup()
        let transport = PersistedFirstTransport(world: setup.world, reader: setup.reader, rolloutID: "r1", silentNode: "agent-2")
        let lock = ScriptedLock()
        let alice = Initiator(user: "root", sudoUser: "alice", host: "ctl-1")
        let serve = Initiator.serve(user: "upkeep", host: "ctl-2", policy: "automation.k3s: patch")
        let first = RolloutRuntime(store: setup.store, transport: transport, observer: setup.world, lock: lock,
                                   configuration: RuntimeConfiguration(holder: "test", initiator: alice))
        _ = try await bounded("the rollout to block") { try await first.start(try RolloutFixtures.engine("r1"), as: .rollback) }
        transport.silent.withLock { $0 = false }
        let second = RolloutRuntime(store: setup.store, transport: transport, observer: setup.world, lock: lock,
                                    configuration: RuntimeConfiguration(holder: "test", initiator: serve))
        #expect(try await bounded("the resumed rollout") { try await second.resume() } == .finished(.completed))
        #expect(lock.operations == ["rollback r1", "resume r1"] && lock.releases == 2)
        let detail = try setup.reader.rollout(id: "r1")
        #expect(detail.operations.map(\.summary) == ["rollback by root (sudo by alice)@ctl-1", "resume by serve@ctl-2 (policy automation.k3s: patch)"])
        #expect(detail.record.startedBy?.kind == .rollback && detail.record.startedBy?.by == alice)
        #expect(try setup.reader.history(limit: 1).first?.startedBy == detail.operations.first)
    }

    /// What the two loss tests share: the last transition is the loss, with nothing sent; the
    /// rollout is blocked saying so; only the one install that was answered ran; nothing more runs.
    private func expectStoppedAtTheLoss(_ setup: Setup, _ lock: ScriptedLock, reason: String) throws {
        let transitions = try setup.reader.transitions(rolloutID: "r1")
        let last = try #require(transitions.last)
        #expect(last.event.hasPrefix("lock lost: ") && last.event.contains(reason) && !last.actions.contains("send"), "\(last)")
        guard case .blocked(let why)? = try setup.reader.unfinishedRollout()?.status else {
            Issue.record("the rollout is not recorded blocked")
            return
        }
        #expect(why.contains("lost the cluster lock") && why.contains(reason), "\(why)")
        let executed = setup.world.snapshot.executed.count
        Thread.sleep(forTimeInterval: 0.3)
        #expect(setup.world.snapshot.executed.count == executed, "an operation ran after the run stopped")
        #expect(setup.world.snapshot.executed.filter { $0.command.name == "install" }.count == 1)
        #expect(lock.releases == 1)
    }
}

