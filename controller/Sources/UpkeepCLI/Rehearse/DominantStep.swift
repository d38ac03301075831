import Foundation
import UpkeepCore
import UpkeepStore

/// Each node's longest agent operation in a recorded rollout: from the transition that sent it
/// (`send ID to NODE`) to the one its reply arrived with (`replied ID: …`), by the method its
/// id names (`r…:f3:install:1` → install). What the rehearsal reports as the step that dominates
/// a node's time. Pure: it reads the transition log's words (TransitionLog).
struct DominantStep: Encodable, Equatable {
    var method: String
    var seconds: Double

    static func byNode(_ transitions: [TransitionRecord]) -> [String: DominantStep] {
        var sent: [String: (node: String, atMs: Int64)] = [:]
        var longest: [String: DominantStep] = [:]
        for transition in transitions {
            if transition.event.hasPrefix("replied ") {
                let id = Self.operationID(String(transition.event.dropFirst("replied ".count)))
                if let start = sent.removeValue(forKey: id) {
                    let step = DominantStep(method: Self.method(of: id), seconds: Double(transition.at.milliseconds - start.atMs) / 1000)
                    if step.seconds > longest[start.node]?.seconds ?? -1 { longest[start.node] = step }
                }
            }
            for action in transition.actions.split(separator: ";").map({ $0.trimmingCharacters(in: .whitespaces) }) where action.hasPrefix("send ") {
                let words = action.dropFirst("send ".count).components(separatedBy: " to ")
                guard words.count == 2 else { continue }
                sent[words[0]] = (words[1], transition.at.milliseconds)
            }
        }
        return longest
    }

    /// `r…:f3:install:1` from the start of `replied r…:f3:install:1: …`: four colon-separated parts.
    static func operationID(_ text: String) -> String {
        text.split(separator: ":", omittingEmptySubsequences: false).prefix(4).joined(separator: ":")
    }

    static func method(of id: String) -> String {
        let parts = id.split(separator: ":")
        return parts.count >= 2 ? String(parts[parts.count - 2]) : id
    }
}
