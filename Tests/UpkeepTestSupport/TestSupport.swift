import Foundation

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
/// stdout and stderr; the process is terminated after `timeoutSeconds`.
public func runProcess(_ executable: String, _ arguments: [String], timeoutSeconds: Double = 30) throws -> ProcessResult {
    let process = Process()
    if executable.contains("/") {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
    } else {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [executable] + arguments
    }
    let output = Pipe()
    let error = Pipe()
    process.standardOutput = output
    process.standardError = error
    process.standardInput = FileHandle.nullDevice
    let finished = DispatchSemaphore(value: 0)
    process.terminationHandler = { _ in finished.signal() }
    try process.run()
    // Drain both pipes while the child runs so a chatty child cannot block on a full pipe.
    let drained = DispatchGroup()
    let outputBox = DataBox()
    let errorBox = DataBox()
    for (pipe, box) in [(output, outputBox), (error, errorBox)] {
        DispatchQueue.global().async(group: drained) { box.data = pipe.fileHandleForReading.readDataToEndOfFile() }
    }
    var timedOut = false
    if finished.wait(timeout: .now() + timeoutSeconds) == .timedOut {
        timedOut = true
        process.terminate()
        finished.wait()
    }
    drained.wait()
    return ProcessResult(status: process.terminationStatus,
                         output: String(decoding: outputBox.data, as: UTF8.self),
                         error: String(decoding: errorBox.data, as: UTF8.self),
                         timedOut: timedOut)
}

/// Runs the real `openssl` binary.
public func openssl(_ arguments: [String], timeoutSeconds: Double = 30) throws -> ProcessResult {
    try runProcess("openssl", arguments, timeoutSeconds: timeoutSeconds)
}

/// Bytes handed from a reader thread to the caller; the DispatchGroup orders the accesses.
private final class DataBox: @unchecked Sendable {
    var data = Data()
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
