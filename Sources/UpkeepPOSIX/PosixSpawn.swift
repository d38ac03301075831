#if canImport(Glibc)
import Glibc

/// Starts programs with `posix_spawn` the one way every Upkeep process does (the agent's
/// `systemctl` and `k3s` runs, the sandbox's daemons): argv without a shell, exactly the
/// environment given, stdin from /dev/null (or a descriptor the caller names), stdout and stderr
/// where the caller says, **no other descriptor** of the caller (TLS sockets, journals, listen
/// sockets, other children's pipes), an empty signal mask and every signal's default disposition
/// (a caller that ignores SIGTERM would otherwise hand that on across exec). It never waits for
/// the program: see `WaitStatus`.
public enum PosixSpawn {
    /// Where the child's stdout or stderr goes.
    public enum Output: Sendable, Equatable {
        /// This descriptor of the caller (say, a pipe's write end), duplicated onto the stream.
        case descriptor(Int32)
        /// A file opened for appending (created with mode 0644).
        case appending(toFile: String)
        /// Wherever the child's stdout goes (for stderr only).
        case standardOutput
    }

    /// The child's session and process group.
    public enum Grouping: Sendable, Equatable {
        /// The caller's, as a plain child.
        case inherit
        /// Its own process group, so a timeout can signal it and everything it starts there.
        case ownGroup
        /// Its own session (a daemon, detached from the caller's terminal).
        case newSession
    }

    /// Why a program could not be started; the message names the program and the cause.
    public struct Failure: Error, Equatable, Sendable, CustomStringConvertible {
        public let message: String
        public init(_ message: String) { self.message = message }
        public var description: String { message }
    }

    /// Starts `arguments[0]` (a path; no PATH lookup) and returns its pid.
    /// `standardInput`: a descriptor of the caller to read from (say, a pipe's read end whose
    /// writer tells the child when to go), or nil for /dev/null.
    public static func spawn(_ arguments: [String], environment: [String: String], standardInput: Int32? = nil,
                             standardOutput: Output, standardError: Output, grouping: Grouping = .inherit) throws(Failure) -> pid_t
    {
        guard let path = arguments.first else { throw Failure("no program to start (empty argument list)") }
        guard let closeFrom = closeFromAction else {
            throw Failure("this C library cannot close inherited descriptors at spawn (posix_spawn_file_actions_addclosefrom_np, glibc 2.34 or newer)")
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var flags = Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)
        switch grouping {
        case .inherit: break
        case .ownGroup:
            flags |= Int16(POSIX_SPAWN_SETPGROUP)
            posix_spawnattr_setpgroup(&attributes, 0)
        case .newSession:
            flags |= Int16(0x80)  // POSIX_SPAWN_SETSID (glibc), not exported to Swift
        }
        posix_spawnattr_setflags(&attributes, flags)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigdefault(&attributes, &all)

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let standardInput {
            posix_spawn_file_actions_adddup2(&actions, standardInput, 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        for (target, output) in [(Int32(1), standardOutput), (Int32(2), standardError)] {
            switch output {
            case .descriptor(let descriptor): posix_spawn_file_actions_adddup2(&actions, descriptor, target)
            case .appending(let file): posix_spawn_file_actions_addopen(&actions, target, file, O_WRONLY | O_CREAT | O_APPEND, 0o644)
            case .standardOutput: posix_spawn_file_actions_adddup2(&actions, 1, target)
            }
        }
        guard closeFrom(&actions, 3) == 0 else { throw Failure("posix_spawn_file_actions_addclosefrom_np failed") }

        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, path, &actions, &attributes, argv, envp)
        guard result == 0 else { throw Failure("cannot start \(path): \(String(cString: strerror(result)))") }
        return pid
    }

    /// This process's environment (read from `environ` now) with `changes` applied; nil removes.
    public static func inheritedEnvironment(applying changes: [String: String?] = [:]) -> [String: String] {
        var environment: [String: String] = [:]
        var entry = environ
        while let pointer = entry.pointee {
            let text = String(cString: pointer)
            if let equals = text.firstIndex(of: "=") {
                environment[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            entry += 1
        }
        for (key, value) in changes { environment[key] = value }
        return environment
    }

    /// A pipe whose two descriptors are close-on-exec from the start (`pipe2(O_CLOEXEC)`), so a
    /// program another thread starts at the same moment cannot inherit them.
    public static func pipe() throws(Failure) -> (read: Int32, write: Int32) {
        guard let pipe2 = pipe2Function else { throw Failure("this C library has no pipe2") }
        var descriptors: [Int32] = [-1, -1]
        guard pipe2(&descriptors, O_CLOEXEC) == 0 else { throw Failure("cannot create a pipe: \(String(cString: strerror(errno)))") }
        return (descriptors[0], descriptors[1])
    }

    /// A descriptor (close-on-exec) that polls readable once child `pid` has ended, or nil when the
    /// C library or kernel has no `pidfd_open` (glibc 2.36, Linux 5.3).
    public static func processDescriptor(_ pid: pid_t) -> Int32? {
        guard let pidfdOpen = pidfdOpenFunction else { return nil }
        let descriptor = pidfdOpen(pid, 0)
        return descriptor >= 0 ? descriptor : nil
    }

    // glibc functions declared only under _GNU_SOURCE (or in headers Swift's Glibc module does not
    // include), looked up once.
    private static let closeFromAction = lookUp("posix_spawn_file_actions_addclosefrom_np",
                                                as: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
    private static let pipe2Function = lookUp("pipe2", as: (@convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Int32).self)
    private static let pidfdOpenFunction = lookUp("pidfd_open", as: (@convention(c) (pid_t, UInt32) -> Int32).self)

    private static func lookUp<Function>(_ name: String, as type: Function.Type) -> Function? {
        guard let symbol = dlsym(nil, name) else { return nil }
        return unsafeBitCast(symbol, to: type)
    }
}
#endif
