import Subprocess
import SystemPackage

/// What a finished child process returned and printed.
public struct ProcessOutcome: Equatable, Sendable {
    /// The exit code, or nil when a signal ended it.
    public var exitCode: Int32?
    public var output: String
    public var error: String

    public var succeeded: Bool { exitCode == 0 }

    /// The first non-empty line of stderr (else stdout), for messages.
    public var summary: String {
        let text = error.isEmpty ? output : error
        return text.split(separator: "\n").first.map { String($0.prefix(300)) } ?? ""
    }
}

/// Runs a program with a hard time bound: at the deadline it gets SIGTERM, then SIGKILL two
/// seconds later. Output is capped; a child that prints more fails the run.
public enum ProcessRunner {
    public static let outputBytesMax = 256 * 1024

    public static func run(_ path: String, _ arguments: [String], timeoutSeconds: Double,
                           environment: [String: String] = [:]) async throws(AgentFailure) -> ProcessOutcome {
        let command = ([path] + arguments).joined(separator: " ")
        do {
            return try await withThrowingTaskGroup(of: ProcessOutcome?.self) { group in
                group.addTask {
                    var options = PlatformOptions()
                    options.teardownSequence = [.gracefulShutDown(allowedDurationToNextStep: .seconds(2))]
                    let updates = Dictionary(uniqueKeysWithValues: environment.map { (Environment.Key(stringLiteral: $0.key), Optional($0.value)) })
                    let result = try await Subprocess.run(.path(FilePath(path)), arguments: Arguments(arguments),
                                                          environment: environment.isEmpty ? .inherit : .inherit.updating(updates),
                                                          platformOptions: options,
                                                          output: .string(limit: outputBytesMax), error: .string(limit: outputBytesMax))
                    let code: Int32? = if case .exited(let code) = result.terminationStatus { code } else { nil }
                    return ProcessOutcome(exitCode: code, output: result.standardOutput, error: result.standardError)
                }
                group.addTask {
                    try await Task.sleep(for: .milliseconds(Int64(timeoutSeconds * 1000)))
                    return nil
                }
                let first = try await group.next() ?? nil
                group.cancelAll()
                guard let first else {
                    throw AgentFailure(.io, "\(command) did not finish within \(timeoutSeconds) s and was stopped")
                }
                return first
            }
        } catch let failure as AgentFailure {
            throw failure
        } catch {
            throw AgentFailure(.io, "\(command) could not run: \(error)")
        }
    }
}
