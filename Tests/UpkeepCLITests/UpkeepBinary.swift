import Foundation
import UpkeepTestSupport

/// The built `upkeep` executable: beside the test bundle in the build directory
/// (`.build/debug`), which `swift build --build-tests` fills.
enum UpkeepBinary {
    struct NotBuilt: Error, CustomStringConvertible {
        let looked: [String]
        var description: String { "no built upkeep binary at \(looked.joined(separator: " or ")); run 'swift build --build-tests' first" }
    }

    static func path() throws -> String {
        var candidates: [String] = []
        if let testBinary = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            candidates.append((testBinary as NSString).deletingLastPathComponent + "/upkeep")
        }
        candidates.append(FileManager.default.currentDirectoryPath + "/.build/debug/upkeep")
        guard let found = candidates.first(where: FileManager.default.isExecutableFile(atPath:)) else {
            throw NotBuilt(looked: candidates)
        }
        return found
    }

    /// Runs `upkeep` with `arguments`, killed after `timeoutSeconds`.
    static func run(_ arguments: [String], timeoutSeconds: Double = 60) throws -> ProcessResult {
        try runProcess(path(), arguments, timeoutSeconds: timeoutSeconds)
    }

    static func run(_ arguments: String...) throws -> ProcessResult {
        try run(arguments)
    }
}
