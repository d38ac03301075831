// Runs one rollout against a file-backed world (UpkeepRuntimeTestSupport.FileWorld) so a test
// can kill it with SIGKILL mid-rollout and resume from what it left on disk.
//
//   upkeep-runtime-probe <state-dir> <world.json> <rollout-id> <node>:<command>
//
// The world pauses (creating <world.json>.paused) after running <command> on <node>.
// Prints one line per notice; exits 0 when the rollout completed, 1 otherwise.
// UPKEEP_PROBE_SNAPSHOT_BYTES: the store's journalBytesPerSnapshotMin (snapshots taken more often).
import Foundation
import UpkeepRollout
import UpkeepRuntime
import UpkeepRuntimeTestSupport
import UpkeepStore

/// Unbuffered, so the lines written before a SIGKILL are all there.
func say(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }

let arguments = CommandLine.arguments
let pause = arguments.count == 5 ? arguments[4].split(separator: ":").map(String.init) : []
guard pause.count == 2 else {
    FileHandle.standardError.write(Data("usage: upkeep-runtime-probe <state-dir> <world.json> <rollout-id> <node>:<command>\n".utf8))
    exit(2)
}
do {
    let world = try FileWorld(loading: arguments[2], pauseAfter: (pause[0], pause[1]))
    let engine = try RolloutEngine(rolloutID: arguments[3], plan: RolloutFixtures.plan(world.snapshot), policy: RolloutFixtures.policy())
    let snapshotBytes = ProcessInfo.processInfo.environment["UPKEEP_PROBE_SNAPSHOT_BYTES"].flatMap { Int($0) }
    let store = try StateStore(stateDirectory: arguments[1], journalBytesPerSnapshotMin: snapshotBytes ?? StateStore.journalBytesPerSnapshotMinDefault)
    let runtime = RolloutRuntime(store: store, transport: world, observer: world,
                                 configuration: RuntimeConfiguration(holder: "probe pid \(getpid())", leaseTTLMilliseconds: 60_000)) { update in
        if case .notice(let notice, _) = update { say("notice: \(notice.node.map { "\($0): " } ?? "")\(notice.message)") }
    }
    let result = try await runtime.start(engine)
    say("result: \(result)")
    exit(result == .finished(.completed) ? 0 : 1)
} catch {
    say("error: \(error)")
    exit(1)
}
