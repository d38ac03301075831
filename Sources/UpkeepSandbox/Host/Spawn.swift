import Foundation
import UpkeepCore

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

    /// A child that exited but was not reaped still answers `kill(pid, 0)`.
    static func isZombie(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")")
        else { return false }
        return stat[stat.index(close, offsetBy: 2)...].hasPrefix("Z")
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
