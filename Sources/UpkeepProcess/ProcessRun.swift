import Foundation
import UpkeepCore
import UpkeepPOSIX

/// Runs a program to completion with a time limit, collecting stdout and stderr together.
///
/// Used by the controller (git for `upkeep update`, the sandbox program for `upkeep demo`), by the
/// sandbox to drive real tools (kubectl, ip, the systemctl stand-in), and by tests. A program
/// still running at the limit is terminated, then killed, and reported as timed out.
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
    ///
    /// Completion is the child's exit (reaped by pid), not the end of its output: a daemon the
    /// child leaves behind (a systemctl stand-in starting its unit supervisor) does not hold the
    /// call up. At the limit the child's process group gets SIGTERM, then SIGKILL two seconds later.
    public static func run(_ program: String, _ arguments: [String], environment: [String: String]? = nil,
                           timeoutSeconds: Double = 60, outputBytesMax: Int = 4 << 20) async throws -> Outcome
    {
        guard let path = locate(program) else { throw NotFound(program: program) }
        let outputFile = FileManager.default.temporaryDirectory.appendingPathComponent("upkeep-run-\(UUID().uuidString)").path
        defer { unlink(outputFile) }
        let pid = try PosixSpawn.spawn([path] + arguments, environment: environment ?? ProcessInfo.processInfo.environment,
                                       standardOutput: .appending(toFile: outputFile), standardError: .standardOutput,
                                       grouping: .ownGroup)
        var timedOut = false
        var status = await reap(pid, timeoutSeconds: timeoutSeconds)
        if status == nil {
            timedOut = true
            kill(-pid, SIGTERM)
            status = await reap(pid, timeoutSeconds: 2)
            if status == nil {
                kill(-pid, SIGKILL)
                status = await reap(pid, timeoutSeconds: 10)
            }
        }
        let data = FileManager.default.contents(atPath: outputFile) ?? Data()
        let output = String(decoding: data.prefix(outputBytesMax), as: UTF8.self)
        return Outcome(status: status.map { WaitStatus($0).shellCode } ?? 137, output: output, timedOut: timedOut)
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

    /// Waits (bounded) for our child `pid` to exit and reaps it; nil if it still runs at the deadline.
    public static func reap(_ pid: pid_t, timeoutSeconds: Double) async -> Int32? {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        var pause: UInt64 = 1_000_000
        while true {
            var status: Int32 = 0
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid { return status }
            if result < 0 && errno != EINTR { return 0 }  // not our child, or already reaped
            if Date() >= deadline { return nil }
            try? await Task.sleep(nanoseconds: pause)
            pause = min(pause * 2, 20_000_000)
        }
    }
}
