import Foundation
import Testing
import UpkeepRollout
import UpkeepCore

/// The runtime persists the whole engine as JSON in SQLite after every event, and a later
/// controller (perhaps a newer build) resumes from it. Tests/Fixtures/rollout-engine-states.jsonl
/// holds three states written by the engine before its `Instant` moved to UpkeepCore (stopping
/// with a deadline, rolling back with a retry due, settling); they must still load, mean the
/// same moments, and encode to the same bytes.
@Suite struct PersistedEngineFormatTests {
    static let fixture = URL(filePath: #filePath).deletingLastPathComponent()
        .appending(path: "../Fixtures/rollout-engine-states.jsonl").standardized

    static func states() throws -> [String] {
        try String(contentsOf: fixture, encoding: .utf8).split(separator: "\n").map(String.init)
    }

    static func engine(_ json: String) throws -> RolloutEngine {
        try JSONDecoder().decode(RolloutEngine.self, from: Data(json.utf8))
    }

    @Test func statesWrittenEarlierEncodeToTheSameBytes() throws {
        let states = try Self.states()
        #expect(states.count == 3)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]  // as StateStore writes it
        for state in states {
            #expect(String(decoding: try encoder.encode(try Self.engine(state)), as: UTF8.self) == state)
        }
    }

    @Test func aLoadedDeadlineIsTheMomentThatWasWritten() throws {
        // Stopping: server-3 waits to be Ready at its old version until 1765000328000; the last
        // look at the cluster was asked for at 1765000028000 (polls 1 s apart).
        var engine = try Self.engine(try Self.states()[0])
        #expect(engine.status == .stopping)
        let early = engine.handle(.tick, now: Instant(milliseconds: 1_765_000_028_500))
        #expect(early == [.wake(at: Instant(milliseconds: 1_765_000_029_000))])
        let unhealthy = Notice(.error, node: "server-3", "not Ready at v1.30.6+k3s1 within 300 s after going back; left cordoned")
        #expect(!engine.handle(.tick, now: Instant(milliseconds: 1_765_000_327_999)).contains(.notice(unhealthy)))
        #expect(engine.handle(.tick, now: Instant(milliseconds: 1_765_000_328_000)).contains(.notice(unhealthy)))
    }

    @Test func aLoadedRetryIsSentAtTheMomentThatWasWritten() throws {
        // Rolling back: the stage for server-1's way back failed once and is due again at 1765000036000.
        var engine = try Self.engine(try Self.states()[1])
        let sends = { (actions: [RolloutEngine.Action]) in
            actions.compactMap { if case .send(let request) = $0 { request.operationID } else { nil } }
        }
        #expect(sends(engine.handle(.tick, now: Instant(milliseconds: 1_765_000_035_999))).isEmpty)
        #expect(sends(engine.handle(.tick, now: Instant(milliseconds: 1_765_000_036_000))) == ["r1:r0:stage:6"])
    }
}
