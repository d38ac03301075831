import Foundation
import Testing
import UpkeepRollout
import UpkeepRuntime
import UpkeepRuntimeTestSupport
import UpkeepStore
import UpkeepTestSupport

@Suite struct CrashResumeTests {
    /// A real controller process (upkeep-runtime-probe) is killed with SIGKILL right after an
    /// agent ran an operation and before its answer was recorded; this process takes over the
    /// same database and world files and finishes the rollout. The agents' journals show every
    /// operation ran once, at its first attempt, and the interrupted one was asked again by id.
    @Test(arguments: ["server-1:install", "agent-1:cordon", "agent-2:commit"])
    func aControllerKilledMidRolloutResumesFromTheDatabaseAndRunsEachOperationOnce(pauseAt: String) async throws {
        let directory = try TemporaryDirectory()
        let worldPath = directory.file("world.json")
        let state = directory.file("state")
        _ = try FileWorld(path: worldPath, model: RolloutFixtures.world())
        let output = directory.file("probe.out")
        _ = FileManager.default.createFile(atPath: output, contents: nil)
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: try probePath())
        probe.arguments = [state, worldPath, "r1", pauseAt]
        probe.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
        probe.standardError = probe.standardOutput
        probe.standardInput = FileHandle.nullDevice
        try probe.run()
        defer {
            if probe.isRunning {
                kill(probe.processIdentifier, SIGKILL)
                probe.waitUntilExit()
            }
        }
        let paused = try await bounded("the probe to reach \(pauseAt)", seconds: 90) {
            while probe.isRunning {
                if FileManager.default.fileExists(atPath: worldPath + ".paused") { return true }
                try await Task.sleep(for: .milliseconds(5))
            }
            return false
        }
        let printed = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        try #require(paused, "the probe exited before reaching \(pauseAt): \(printed)")
        kill(probe.processIdentifier, SIGKILL)
        probe.waitUntilExit()
        #expect(probe.terminationReason == .uncaughtSignal)

        let store = try StateStore(stateDirectory: state)
        let left = try #require(try store.unfinishedRollout(), "the probe finished before it was killed: \(printed)")
        #expect(left.id == "r1")
        let recordedBeforeKill = try store.rollout(id: "r1").transitionCount
        let lease = try #require(try store.currentLease())
        #expect(lease.holder == "probe pid \(probe.processIdentifier)")

        let world = try FileWorld(loading: worldPath)
        // The dead controller's lease still stands: a polite controller is kept out...
        let polite = RolloutRuntime(store: store, transport: world, observer: world, configuration: RuntimeConfiguration(holder: "test"))
        await #expect(throws: RuntimeError.store(.leaseHeld(holder: lease.holder, until: lease.expiresAt))) { try await polite.resume() }
        // ...and an operator who knows it is gone takes over.
        let runtime = RolloutRuntime(store: store, transport: world, observer: world,
                                     configuration: RuntimeConfiguration(holder: "test", forceTakeover: true))
        let result = try await bounded("the resumed rollout to finish") { try await runtime.resume() }
        #expect(result == .finished(.completed))

        let model = world.snapshot
        let parts = pauseAt.split(separator: ":").map(String.init)
        let interrupted = try #require(model.executed(parts[1], on: parts[0]).first)
        #expect(model.received.filter { $0 == interrupted }.count == 2, "\(interrupted) was not asked again by its id")
        let ids = model.executed.map(\.operationID)
        #expect(Set(ids).count == ids.count, "an operation ran twice: \(ids)")
        #expect(model.executed.allSatisfy { $0.command.name == "stage" || $0.operationID.hasSuffix(":1") }, "a step was redone: \(ids)")
        for node in ["server-1", "agent-1", "agent-2"] {
            #expect(model.executed("install", on: node).count == 1)
            #expect(model.executed("cordon", on: node).count == 1)
            let after = model.node(node)
            #expect(after?.version == RolloutFixtures.target && after?.cordoned == false && after?.watch == nil)
        }
        let transitions = try store.transitions(rolloutID: "r1", limit: 100_000)
        #expect(transitions.map(\.sequence) == Array(1...transitions.count))
        #expect(transitions.first { $0.sequence == recordedBeforeKill + 1 }?.event == "resume")
        #expect(try store.history(limit: 1).first?.outcome == .completed)
    }
}
