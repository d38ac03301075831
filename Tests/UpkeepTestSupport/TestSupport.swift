import Foundation
import UpkeepPOSIX

/// A fresh directory under the system temporary directory, removed when dropped.
public final class TemporaryDirectory {
    public let path: String

    public init() throws {
        let base = NSTemporaryDirectory().hasSuffix("/") ? String(NSTemporaryDirectory().dropLast()) : NSTemporaryDirectory()
        var template = Array("\(base)/upkeep-test-XXXXXX".utf8CString)
        guard let created = mkdtemp(&template) else { throw CocoaError(.fileWriteUnknown) }
        path = String(cString: created)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// `name` inside the directory (not created).
    public func file(_ name: String) -> String { "\(path)/\(name)" }

    /// Writes `text` to `name` inside the directory and returns its path.
    public func write(_ text: String, to name: String) throws -> String {
        try text.write(toFile: file(name), atomically: false, encoding: .utf8)
        return file(name)
    }

    /// Writes a kubeconfig naming an API nobody listens on (port 1 of loopback) to `name`: for
    /// commands that need a kubeconfig but must never reach, or must fail to reach, the API.
    public func writeUnreachableKubeconfig(to name: String) throws -> String {
        try write("""
            apiVersion: v1
            kind: Config
            clusters: [{name: c, cluster: {server: "http://127.0.0.1:1"}}]
            contexts: [{name: c, context: {cluster: c, user: u}}]
            current-context: c
            users: [{name: u, user: {}}]
            """, to: name)
    }
}

/// What a finished process printed and returned.
public struct ProcessResult: Sendable {
    public let status: Int32
    public let output: String
    public let error: String
    /// True when the process had to be killed at the timeout.
    public let timedOut: Bool
}

/// Runs `executable` (a path, or a name looked up in PATH) with stdin closed, collecting
/// stdout and stderr; the process is terminated after `timeoutSeconds` (SIGTERM, then SIGKILL
/// five seconds later). Started with posix_spawn (`PosixSpawn`, as the product starts programs),
/// not Foundation's `Process`: on Linux its `run()` can over-read `/proc/self/fd`'s directory
/// entries and crash the test process at random
/// (https://github.com/swiftlang/swift-corelibs-foundation/pull/5472). Its status is the exit
/// code, or the signal's number when a signal ended it, as `Process.terminationStatus` gives.
public func runProcess(_ executable: String, _ arguments: [String], timeoutSeconds: Double = 30) throws -> ProcessResult {
    guard let path = locateExecutable(executable) else { throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: executable]) }
    let directory = try TemporaryDirectory()
    let (outputFile, errorFile) = (directory.file("stdout"), directory.file("stderr"))
    let pid = try PosixSpawn.spawn([path] + arguments, environment: ProcessInfo.processInfo.environment,
                                   standardOutput: .appending(toFile: outputFile), standardError: .appending(toFile: errorFile))
    var status = reapChild(pid, timeoutSeconds: timeoutSeconds)
    let timedOut = status == nil
    if timedOut {
        kill(pid, SIGTERM)
        status = reapChild(pid, timeoutSeconds: 5)
        if status == nil {
            kill(pid, SIGKILL)
            status = reapChild(pid, timeoutSeconds: 30)
        }
    }
    let ended = WaitStatus(status ?? 0)
    let read = { (file: String) in String(decoding: FileManager.default.contents(atPath: file) ?? Data(), as: UTF8.self) }
    return ProcessResult(status: ended.exitCode ?? ended.signal ?? 0, output: read(outputFile), error: read(errorFile), timedOut: timedOut)
}

/// `name` as a path, or looked up on PATH.
private func locateExecutable(_ name: String) -> String? {
    if name.contains("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
    for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin").split(separator: ":") {
        let candidate = "\(directory)/\(name)"
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    return nil
}

/// Waits (bounded) for child `pid` and reaps it: its wait status, or nil while it still runs.
private func reapChild(_ pid: pid_t, timeoutSeconds: Double) -> Int32? {
    let deadline = Date().addingTimeInterval(timeoutSeconds)
    var pause: useconds_t = 1000
    while true {
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        if result == pid { return status }
        if result < 0 && errno != EINTR { return 0 }
        if Date() >= deadline { return nil }
        usleep(pause)
        pause = min(pause * 2, 20_000)
    }
}

/// Runs the real `openssl` binary.
public func openssl(_ arguments: [String], timeoutSeconds: Double = 30) throws -> ProcessResult {
    try runProcess("openssl", arguments, timeoutSeconds: timeoutSeconds)
}

/// A TCP port on 127.0.0.1 that nothing listens on at this moment (the kernel's choice for a
/// socket bound to port 0, then closed): for a child process to bind, or to dial and be refused.
public func unusedLoopbackPort() throws -> Int {
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard descriptor >= 0 else { throw CocoaError(.fileWriteUnknown) }
    defer { close(descriptor) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) == 0 && getsockname(descriptor, $0, &length) == 0 }
    }
    guard bound else { throw CocoaError(.fileWriteUnknown) }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// The seed of a test that draws a new random case on every run: `UPKEEP_TEST_SEED` when set (to
/// replay a failure), else a fresh one. The test seeds `UpkeepCore.SeededGenerator` with it and
/// names it in every failure message, so any run can be repeated exactly.
public enum TestSeed {
    public static func fresh() -> UInt64 {
        ProcessInfo.processInfo.environment["UPKEEP_TEST_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 1...UInt64.max)
    }
}
