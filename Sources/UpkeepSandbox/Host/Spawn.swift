import Foundation

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
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var flags = Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)
        if newSession {
            flags |= Int16(0x80)  // POSIX_SPAWN_SETSID (glibc), not exported to Swift
        } else if ownGroup {
            flags |= Int16(POSIX_SPAWN_SETPGROUP)
            posix_spawnattr_setpgroup(&attributes, 0)
        }
        posix_spawnattr_setflags(&attributes, flags)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigfillset(&defaults)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logFile, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        guard let closeFrom = closeFromAction else {
            throw SandboxError("this C library cannot close inherited descriptors at spawn (posix_spawn_file_actions_addclosefrom_np, glibc 2.34 or newer)")
        }
        guard closeFrom(&actions, 3) == 0 else { throw SandboxError("posix_spawn_file_actions_addclosefrom_np failed") }
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, arguments[0], &actions, &attributes, argv, envp)
        guard result == 0 else { throw SandboxError("cannot start \(arguments[0]): \(String(cString: strerror(result)))") }
        return pid
    }

    /// glibc's `posix_spawn_file_actions_addclosefrom_np`, declared only under _GNU_SOURCE,
    /// which Swift's Glibc module does not define.
    private static let closeFromAction: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
        guard let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
    }()

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

    /// The exit code of a `waitpid` status, or 128 + the signal that ended the process.
    public static func exitCode(_ status: Int32) -> Int32 {
        (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
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

    /// The environment to pass on: this process's, with `changes` applied (nil removes).
    public static func environment(_ changes: [String: String?]) -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        for (key, value) in changes { environment[key] = value }
        return environment
    }
}
