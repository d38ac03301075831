import Foundation

/// Runs a program to completion with a time limit, collecting stdout and stderr together.
///
/// Used by the sandbox to drive real tools (kubectl, ip, the systemctl stand-in) and by tests.
/// A program still running at the limit is terminated, then killed, and reported as timed out.
public enum ProcessRun {
    public struct Outcome: Sendable, Equatable {
        public var status: Int32
        public var output: String
        public var timedOut: Bool
    }

    public struct NotFound: Error, CustomStringConvertible {
        public let program: String
        public var description: String { "\(program) was not found on PATH; install it or put it on PATH" }
    }

    /// `program` is a path, or a name looked up on `PATH`.
    public static func run(_ program: String, _ arguments: [String], environment: [String: String]? = nil,
                           timeoutSeconds: Double = 60, outputBytesMax: Int = 4 << 20) async throws -> Outcome
    {
        guard let path = locate(program) else { throw NotFound(program: program) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        if let environment { process.environment = environment }
        let outputFile = FileManager.default.temporaryDirectory.appendingPathComponent("upkeep-run-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: outputFile.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: outputFile) }
        let handle = try FileHandle(forWritingTo: outputFile)
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try? handle.close()
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        var timedOut = false
        while process.isRunning {
            if Date() >= deadline {
                timedOut = true
                process.terminate()
                let killAt = Date().addingTimeInterval(2)
                while process.isRunning && Date() < killAt { try? await Task.sleep(nanoseconds: 20_000_000) }
                if process.isRunning { kill(process.processIdentifier, SIGKILL) }
                break
            }
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
        process.waitUntilExit()
        let data = (try? Data(contentsOf: outputFile)) ?? Data()
        let output = String(decoding: data.prefix(outputBytesMax), as: UTF8.self)
        return Outcome(status: process.terminationStatus, output: output, timedOut: timedOut)
    }

    public static func locate(_ program: String) -> String? {
        if program.contains("/") { return FileManager.default.isExecutableFile(atPath: program) ? program : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(program)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}
