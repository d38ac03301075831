import Foundation
import UpkeepTestSupport

/// The built `upkeep-agent` executable beside the test bundle (`swift build --build-tests` builds it).
enum AgentBinary {
    struct NotBuilt: Error, CustomStringConvertible {
        let looked: [String]
        var description: String { "no built upkeep-agent at \(looked.joined(separator: " or ")); run 'swift build --build-tests' first" }
    }

    static func path() throws -> String {
        var candidates: [String] = []
        if let testBinary = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            candidates.append((testBinary as NSString).deletingLastPathComponent + "/upkeep-agent")
        }
        candidates.append(FileManager.default.currentDirectoryPath + "/.build/debug/upkeep-agent")
        guard let found = candidates.first(where: FileManager.default.isExecutableFile(atPath:)) else { throw NotBuilt(looked: candidates) }
        return found
    }

    static func run(_ arguments: [String], timeoutSeconds: Double = 60) throws -> ProcessResult {
        try runProcess(path(), arguments, timeoutSeconds: timeoutSeconds)
    }
}
