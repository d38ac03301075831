import Foundation
import Testing

/// A fresh directory under the system temporary directory, removed when dropped.
final class TemporaryDirectory {
    let path: String

    init() throws {
        var template = Array("\(NSTemporaryDirectory())/upkeep-pki-XXXXXX".utf8CString)
        guard let created = mkdtemp(&template) else { throw CocoaError(.fileWriteUnknown) }
        path = String(cString: created)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> String { "\(path)/\(name)" }

    func write(_ text: String, to name: String) throws -> String {
        try text.write(toFile: file(name), atomically: false, encoding: .utf8)
        return file(name)
    }
}

/// What a finished process printed and returned.
struct ProcessResult {
    let status: Int32
    let output: String
    let error: String
}

/// Runs the real `openssl` binary, killing it after `timeoutSeconds`.
func openssl(_ arguments: [String], timeoutSeconds: Double = 30) throws -> ProcessResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["openssl"] + arguments
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
    if finished.wait(timeout: .now() + timeoutSeconds) == .timedOut {
        process.terminate()
        Issue.record("openssl \(arguments.joined(separator: " ")) did not finish within \(timeoutSeconds) s")
        finished.wait()
    }
    drained.wait()
    let outputData = outputBox.data
    let errorData = errorBox.data
    return ProcessResult(status: process.terminationStatus,
                         output: String(decoding: outputData, as: UTF8.self),
                         error: String(decoding: errorData, as: UTF8.self))
}

/// Bytes handed from a reader thread to the test; the DispatchGroup orders the accesses.
private final class DataBox: @unchecked Sendable {
    var data = Data()
}
