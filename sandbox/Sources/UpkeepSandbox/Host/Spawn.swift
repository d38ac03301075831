import Foundation
import UpkeepCore
import UpkeepPOSIX

/// Starts programs as their own session (detached from the caller's terminal and process
/// group), with output appended to a log file, and signals them.
public enum Spawn {
    /// Starts `arguments[0]` (an absolute path) and returns its pid; stdin is /dev/null,
    /// stdout and stderr append to `logFile`, and no other descriptor of this process is
    /// inherited. That matters: a long-lived child holding a pipe or Foundation's per-process
    /// socket of whoever started *us* makes that caller wait for it forever.
    /// `newSession`: its own session (a daemon); else `ownGroup`: its own process group (so a
    /// timeout can signal it and everything it started in that group).
    public static func detached(_ arguments: [String], environment: [String: String], logFile: String,
                                newSession: Bool = true, ownGroup: Bool = false) throws -> pid_t
    {
        try FileManager.default.createDirectory(atPath: (logFile as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        do {
            return try PosixSpawn.spawn(arguments, environment: environment, standardOutput: .appending(toFile: logFile),
                                        standardError: .standardOutput,
                                        grouping: newSession ? .newSession : ownGroup ? .ownGroup : .inherit)
        } catch {
            throw SandboxError(error.message)
        }
    }

    /// Whether `pid` runs. A zombie counts as gone (and is reaped when it is our child).
    public static func isAlive(_ pid: pid_t) -> Bool {
        guard pid > 0 else { return false }
        if kill(pid, 0) == 0 {
            guard isZombie(pid) else { return true }
            _ = waitpid(pid, nil, WNOHANG)
            return false
        }
        return errno == EPERM
    }

    /// A child that exited but was not reaped still answers `kill(pid, 0)`.
    static func isZombie(_ pid: pid_t) -> Bool {
        guard let stat = try? BoundedRead.bytes("/proc/\(pid)/stat", bytesMax: statBytesMax) else { return false }
        return processState(stat: stat) == "Z"
    }

    /// A stat line is some 50 numbers and a name of at most 64 bytes: far below this.
    static let statBytesMax = 4096

    /// The state letter (R, S, D, Z, T...) in the text of a `/proc/PID/stat` file, or nil when it
    /// is not one. The second field is the command name in parentheses, which may itself hold
    /// spaces, parentheses and ") Z (" (a program is named after its file): the state is the field
    /// after the last ')', as no field after the name can hold one.
    static func processState(stat: [UInt8]) -> Character? {
        guard let open = stat.firstIndex(of: UInt8(ascii: "(")), let close = stat.lastIndex(of: UInt8(ascii: ")")),
              open < close, close + 2 < stat.count, stat[close + 1] == UInt8(ascii: " ")
        else { return nil }
        let state = Character(Unicode.Scalar(stat[close + 2]))
        let end = close + 3 == stat.count || stat[close + 3] == UInt8(ascii: " ") || stat[close + 3] == UInt8(ascii: "\n")
        return state.isASCII && state.isLetter && end ? state : nil
    }

    /// SIGTERM, then SIGKILL after `graceSeconds`; returns once the process is gone (bounded).
    public static func terminate(_ pid: pid_t, graceSeconds: Double) {
        guard isAlive(pid) else { return }
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(graceSeconds)
        while isAlive(pid) && Date() < deadline { usleep(20_000) }
        if isAlive(pid) {
            kill(pid, SIGKILL)
            let hard = Date().addingTimeInterval(5)
            while isAlive(pid) && Date() < hard { usleep(20_000) }
        }
    }

    /// Runs the blocking `work` (bounded waits for processes to stop) for every item at once on
    /// Dispatch threads, off Swift's cooperative pool, and returns when all are done.
    public static func offload<Item: Sendable>(_ items: [Item], _ work: @escaping @Sendable (Item) -> Void) async {
        guard !items.isEmpty else { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let group = DispatchGroup()
            for item in items { DispatchQueue.global().async(group: group) { work(item) } }
            group.notify(queue: .global()) { continuation.resume() }
        }
    }
}
