import Foundation

/// Starts programs as their own session (detached from the caller's terminal and process
/// group), with output appended to a log file, and signals them.
public enum Spawn {
    /// Starts `arguments[0]` (an absolute path) and returns its pid; stdin is /dev/null,
    /// stdout and stderr append to `logFile`.
    public static func detached(_ arguments: [String], environment: [String: String], logFile: String,
                                newSession: Bool = true) throws -> pid_t
    {
        try FileManager.default.createDirectory(atPath: (logFile as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var flags = Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)
        if newSession { flags |= Int16(0x80) }  // POSIX_SPAWN_SETSID (glibc), not exported to Swift
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

    public static func isAlive(_ pid: pid_t) -> Bool {
        guard pid > 0 else { return false }
        if kill(pid, 0) == 0 { return !isZombie(pid) }
        return errno == EPERM
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

    /// The environment to pass on: this process's, with `changes` applied (nil removes).
    public static func environment(_ changes: [String: String?]) -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        for (key, value) in changes { environment[key] = value }
        return environment
    }
}
