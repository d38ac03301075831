import Dispatch
import UpkeepAgentCore
import UpkeepCore
import UpkeepHTTP
import UpkeepPOSIX

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

/// The bounds of a child process, as `ProcessRunner.limits` counts them.
public enum ChildLimit: String, CaseIterable, Hashable, Sendable {
    /// A child ran past its time bound (systemctl's, `k3s --version`'s, the cluster reset's, …)
    /// and was stopped.
    case timeout = "child_timeout"
    /// A child printed more than `ProcessRunner.outputBytesMax` on stdout or stderr and was stopped.
    case outputBytes = "child_output_bytes"
}

/// Runs a program (argv, no shell) with a hard time bound: at the deadline it gets SIGTERM, then
/// SIGKILL two seconds later; cancelling the calling task stops it the same way. Stdout and
/// stderr are captured up to `outputBytesMax` each; a child that prints more is stopped and the
/// run fails. The child inherits this process's environment plus `environment`, stdin from
/// /dev/null, and no other descriptor (see `PosixSpawn`). The runner learns of the child's exit
/// from a pidfd, or where the system has none by looking every 10 ms.
///
/// The waiting happens on a Dispatch worker, never on Swift's cooperative pool; no thread is kept
/// for it once the run has returned (Dispatch retires idle workers after a few seconds), which
/// matters for the agent's idle memory target (docs/agent.md).
public enum ProcessRunner {
    public static let outputBytesMax = 256 * 1024
    /// Every child of the process stopped at a bound (`AgentLimits` exports them; the run's
    /// failure says which).
    public static let limits = LimitTally<ChildLimit>()

    /// `whenTimedOut` runs when the deadline stopped the child, before the run fails, so a caller
    /// can count its bound reached (`AgentLimits`).
    public static func run(_ path: String, _ arguments: [String], timeoutSeconds: Double,
                           environment: [String: String] = [:], whenTimedOut: () -> Void = {}) async throws(AgentFailure) -> ProcessOutcome {
        try await run(path, arguments, timeoutSeconds: timeoutSeconds, environment: environment, exitWatch: .processDescriptor,
                      whenTimedOut: whenTimedOut)
    }

    /// `run` learning of the exit as `exitWatch` says (tests run the polling fallback with it).
    static func run(_ path: String, _ arguments: [String], timeoutSeconds: Double, environment: [String: String],
                    exitWatch: WatchedChild.ExitWatch, whenTimedOut: () -> Void = {}) async throws(AgentFailure) -> ProcessOutcome {
        let command = ([path] + arguments).joined(separator: " ")
        guard !Task.isCancelled else { throw AgentFailure(.io, "\(command) was not started: the task was cancelled") }
        let deadline = ContinuousClock.now + .milliseconds(Int64(timeoutSeconds * 1000))
        let child: WatchedChild
        do {
            child = try WatchedChild.start([path] + arguments,
                                           environment: PosixSpawn.inheritedEnvironment(applying: environment.mapValues(Optional.some)),
                                           exitWatch: exitWatch)
        } catch {
            throw AgentFailure(.io, "\(command) could not run: \(error.message)")
        }
        let ending = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<WatchedChild.Ending, Never>) in
                // A queue of its own targets Dispatch's overcommit pool: a long wait (systemctl
                // restart) never holds one of the few workers of DispatchQueue.global(), where the
                // agent's signal sources run.
                DispatchQueue(label: "upkeep.process-runner").async {
                    continuation.resume(returning: child.watch(deadline: deadline, outputBytesMax: outputBytesMax))
                }
            }
        } onCancel: {
            child.cancel()
        }
        let stopped = ending.status == nil
            ? "and did not end even after SIGKILL (pid \(child.pid) left to the kernel)" : "and was stopped"
        switch ending.stopReason {
        case .timedOut?:
            limits.add(.timeout)
            whenTimedOut()
            throw AgentFailure(.io, "\(command) did not finish within \(timeoutSeconds) s \(stopped)")
        case .cancelled?:
            throw AgentFailure(.io, "\(command) was cancelled \(stopped)")
        case .outputTooLarge(let stream)?:
            limits.add(.outputBytes)
            throw AgentFailure(.io, "\(command) printed more than \(outputBytesMax) bytes on \(stream) \(stopped)")
        case nil:
            return ProcessOutcome(exitCode: ending.status?.exitCode, output: String(decoding: ending.output, as: UTF8.self),
                                  error: String(decoding: ending.error, as: UTF8.self))
        }
    }
}
