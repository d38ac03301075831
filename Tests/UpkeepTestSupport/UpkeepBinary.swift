import Foundation

/// The built `upkeep` executable: beside the test bundle in the build directory
/// (`.build/debug`), which `swift build --build-tests` fills. Shared by the CLI and end-to-end tests.
public enum UpkeepBinary {
    public struct NotBuilt: Error, CustomStringConvertible {
        public let looked: [String]
        public var description: String { "no built upkeep binary at \(looked.joined(separator: " or ")); run 'swift build --build-tests' first" }
    }

    public static func path() throws -> String {
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
    public static func run(_ arguments: [String], timeoutSeconds: Double = 60) throws -> ProcessResult {
        try runProcess(path(), arguments, timeoutSeconds: timeoutSeconds)
    }

    public static func run(_ arguments: String...) throws -> ProcessResult {
        try run(arguments)
    }
}
