import Foundation
import Testing
import UpkeepStore
@testable import UpkeepCLI

/// The rehearsal's longest step per node, read from the transition log's words as the store
/// keeps them: the operation from its `send` to its reply, by the method its id names.
struct DominantStepTests {
    static func transitions(_ rows: [(Int64, String, String)]) throws -> [TransitionRecord] {
        let objects = rows.enumerated().map { index, row in
            ["sequence": index + 1, "at": row.0, "event": row.1, "actions": row.2] as [String: Any]
        }
        return try JSONDecoder().decode([TransitionRecord].self, from: JSONSerialization.data(withJSONObject: objects))
    }

    @Test func eachNodesLongestOperationFromItsSendToItsReply() throws {
        let log = try Self.transitions([
            (1_000, "start", "send r1:f0:cordon:1 to agent-1; observe"),
            (1_500, "replied r1:f0:cordon:1: ok", "send r1:f0:drain:1 to agent-1"),
            (9_500, "replied r1:f0:drain:1: drained 3 pods", "send r1:f0:install:1 to agent-1; send r1:h1:backup:1 to server-1; 2 notices"),
            (12_000, "replied r1:h1:backup:1: sealed", "observe"),
            (14_000, "replied r1:f0:install:1: installed", "send r1:f0:uncordon:1 to agent-1"),
            (14_200, "no answer to r1:f0:uncordon:1: connection reset", "wake at 15000"),
            (15_000, "replied r1:f9:drain:1: stray", ""),
        ])
        let steps = DominantStep.byNode(log)
        #expect(steps["agent-1"] == DominantStep(method: "drain", seconds: 8))
        #expect(steps["server-1"] == DominantStep(method: "backup", seconds: 2.5))
        #expect(steps.count == 2, "a reply to an operation never sent counts for no node")
    }
}
