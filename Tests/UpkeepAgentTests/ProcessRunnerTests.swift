import Foundation
import Testing
import UpkeepAgent
import UpkeepTestSupport

/// The agent's child processes (systemctl, k3s) through ProcessRunner, with real programs.
@Suite(.serialized) struct ProcessRunnerTests {
    @Test func capturesStdoutStderrAndTheExitCode() async throws {
        let outcome = try await ProcessRunner.run("/bin/sh", ["-c", "echo out; echo err >&2; exit 3"], timeoutSeconds: 30)
        #expect(outcome.exitCode == 3 && outcome.output == "out\n" && outcome.error == "err\n", "\(outcome)")
        #expect(!outcome.succeeded)
    }

    @Test func argumentsReachTheProgramWithoutAShell() async throws {
        let outcome = try await ProcessRunner.run("/bin/echo", ["$HOME", "a b", "*"], timeoutSeconds: 30)
        #expect(outcome.exitCode == 0 && outcome.output == "$HOME a b *\n" && outcome.error.isEmpty, "\(outcome)")
    }

    @Test func aChildEndedBySignalHasNoExitCode() async throws {
        let outcome = try await ProcessRunner.run("/bin/sh", ["-c", "echo before; kill -KILL $$"], timeoutSeconds: 30)
        #expect(outcome.exitCode == nil)
        #expect(outcome.output == "before\n")
    }

    @Test func aProgramThatCannotStartFailsNamingIt() async throws {
        let failure = await #expect(throws: AgentFailure.self) {
            try await ProcessRunner.run("/nonexistent/k3s", ["--version"], timeoutSeconds: 30)
        }
        #expect(failure?.message.contains("/nonexistent/k3s --version could not run") == true, "\(String(describing: failure))")
        #expect(failure?.message.contains("No such file or directory") == true, "\(String(describing: failure))")
    }

    /// 100 KiB on each stream, written alternately in 1 KiB pieces: a reader that waited for the
    /// end of stdout before reading stderr would leave the child blocked on a full stderr pipe.
    @Test func readsLargeStdoutAndStderrTogether() async throws {
        let script = "i=0; while [ $i -lt 100 ]; do printf '%1024s' o; printf '%1024s' e >&2; i=$((i+1)); done"
        let outcome = try await ProcessRunner.run("/bin/sh", ["-c", script], timeoutSeconds: 60)
        #expect(outcome.exitCode == 0)
        #expect(outcome.output.utf8.count == 100 * 1024 && outcome.output.hasSuffix("o"))
        #expect(outcome.error.utf8.count == 100 * 1024 && outcome.error.hasSuffix("e"))
    }

    @Test(arguments: ["", ">&2"]) func outputOverTheCapFailsTheRun(redirect: String) async throws {
        let bytes = ProcessRunner.outputBytesMax + 1
        let stream = redirect.isEmpty ? "stdout" : "stderr"
        let failure = await #expect(throws: AgentFailure.self) {
            try await ProcessRunner.run("/bin/sh", ["-c", "head -c \(bytes) /dev/zero \(redirect)"], timeoutSeconds: 60)
        }
        #expect(failure?.message == "/bin/sh -c head -c \(bytes) /dev/zero \(redirect) printed more than \(ProcessRunner.outputBytesMax) bytes on \(stream) and was stopped")
    }

    @Test func outputExactlyAtTheCapIsKept() async throws {
        let outcome = try await ProcessRunner.run("/usr/bin/head", ["-c", "\(ProcessRunner.outputBytesMax)", "/dev/zero"], timeoutSeconds: 60)
        #expect(outcome.exitCode == 0)
        #expect(outcome.output.utf8.count == ProcessRunner.outputBytesMax)
    }

    @Test func aChildIgnoringSIGTERMIsKilledAfterTheTimeout() async throws {
        let directory = try TemporaryDirectory()
        let pidFile = directory.file("pid")
        let failure = await #expect(throws: AgentFailure.self) {
            try await ProcessRunner.run("/bin/sh", ["-c", "trap '' TERM; echo $$ > \(pidFile); exec sleep 60"], timeoutSeconds: 1)
        }
        #expect(failure?.message.hasSuffix("did not finish within 1.0 s and was stopped") == true, "\(String(describing: failure))")
        let pid = try #require(readPID(pidFile))
        #expect(isGone(pid), "pid \(pid) still exists after the run returned")
    }

    @Test func theEnvironmentIsInheritedWithOverrides() async throws {
        let path = try #require(ProcessInfo.processInfo.environment["PATH"])
        let outcome = try await ProcessRunner.run("/bin/sh", ["-c", "echo \"$UPKEEP_TEST_VALUE|$HOME|$PATH\""], timeoutSeconds: 30,
                                                  environment: ["UPKEEP_TEST_VALUE": "a value", "HOME": "/overridden"])
        #expect(outcome.output == "a value|/overridden|\(path)\n")
    }

    /// The agent holds TLS sockets, its journal and listen sockets; none may reach a child.
    @Test func noDescriptorOfTheCallerIsInherited() async throws {
        let directory = try TemporaryDirectory()
        let leaky = open(try directory.write("x", to: "held-open"), O_RDONLY)  // no O_CLOEXEC on purpose
        try #require(leaky > 2)
        defer { close(leaky) }
        // Each descriptor of the child and what it points to; the shell's glob itself briefly opens
        // the directory (listed, but closed again when readlink looks at it).
        let outcome = try await ProcessRunner.run("/bin/sh", ["-c", "for f in /proc/$$/fd/*; do printf '%s ' ${f##*/}; readlink $f || echo; done"],
                                                  timeoutSeconds: 30)
        let targets = Dictionary(outcome.output.split(separator: "\n").map { line in
            let parts = line.split(separator: " ", maxSplits: 1)
            return (Int(parts[0]) ?? -1, parts.count == 2 ? String(parts[1]) : "")
        }, uniquingKeysWith: { first, _ in first })
        let inherited = targets.filter { $0.key > 2 && !$0.value.isEmpty }
        #expect(inherited.isEmpty, "the child inherited \(inherited) (the test holds \(leaky) open)")
        #expect(targets[0] == "/dev/null" && targets[1]?.hasPrefix("pipe:") == true && targets[2]?.hasPrefix("pipe:") == true, "\(targets)")
    }

    /// The agent ignores SIGTERM and SIGINT (Dispatch sources handle them); ignored dispositions
    /// survive exec unless the spawn resets them, and a k3s ignoring SIGTERM could not be stopped.
    @Test func theChildStartsWithDefaultSignalDispositionsAndNoMask() async throws {
        var ignore = sigaction()
        ignore.__sigaction_handler.sa_handler = SIG_IGN
        var previous = sigaction()
        sigaction(SIGTERM, &ignore, &previous)
        defer { sigaction(SIGTERM, &previous, nil) }
        let outcome = try await ProcessRunner.run("/bin/cat", ["/proc/self/status"], timeoutSeconds: 30)
        let masks = Dictionary(outcome.output.split(separator: "\n").compactMap { line -> (String, UInt64)? in
            let parts = line.split(separator: "\t")
            return parts.count == 2 && parts[0].hasPrefix("Sig") ? (String(parts[0]), UInt64(parts[1], radix: 16) ?? .max) : nil
        }, uniquingKeysWith: { first, _ in first })
        // glibc's posix_spawn leaves its own two internal signals (32 and 33, bits 31 and 32) ignored
        // in every child it starts; the program's C library installs its handlers for them anew.
        let glibcInternal: UInt64 = 1 << 31 | 1 << 32
        let ignored = try #require(masks["SigIgn:"], "\(outcome.output)")
        #expect(ignored & ~glibcInternal == 0, "ignored signals: \(String(ignored, radix: 16))")
        #expect(masks["SigBlk:"] == 0, "\(masks)")
    }

    @Test(arguments: [false, true]) func cancellingTheTaskStopsTheChild(ignoresSIGTERM: Bool) async throws {
        let directory = try TemporaryDirectory()
        let pidFile = directory.file("pid")
        let script = (ignoresSIGTERM ? "trap '' TERM; " : "") + "echo $$ > \(pidFile).tmp; mv \(pidFile).tmp \(pidFile); exec sleep 60"
        let run = Task { try await ProcessRunner.run("/bin/sh", ["-c", script], timeoutSeconds: 120) }
        let started = await waitUntil(seconds: 30) { readPID(pidFile) != nil }
        try #require(started, "the child did not write its pid within 30 s")
        let pid = try #require(readPID(pidFile))
        run.cancel()
        let result = await run.result
        #expect(throws: AgentFailure(.io, "/bin/sh -c \(script) was cancelled and was stopped")) { try result.get() }
        #expect(isGone(pid), "pid \(pid) still exists after the cancelled run returned")
    }

    /// swift-subprocess kept three threads for the rest of the process after its first run; this
    /// runner waits on Dispatch workers, which libdispatch retires after a few idle seconds. Runs
    /// overlap so that workers are started for them; only threads that appeared during the runs
    /// are followed (others come and go with other work), and each must end within a bound far
    /// above Dispatch's idle time. (A library that started its threads for an earlier test in this
    /// process would not show here: bench/agent-idle's thread count covers the fresh daemon.)
    @Test func noThreadStaysBehindAfterRuns() async throws {
        let before = threadIDs()
        try await withThrowingTaskGroup(of: ProcessOutcome.self) { group in
            for _ in 0..<3 { group.addTask { try await ProcessRunner.run("/bin/sleep", ["0.5"], timeoutSeconds: 30) } }
            for try await outcome in group { #expect(outcome.exitCode == 0) }
        }
        let appeared = threadIDs().subtracting(before)
        let ended = await waitUntil(seconds: 60) { threadIDs().isDisjoint(with: appeared) }
        let remaining = threadIDs().intersection(appeared)
        #expect(ended, "threads started during the runs are still there 60 s later: \(remaining.map(threadName))")
    }

    private func readPID(_ file: String) -> pid_t? {
        (try? String(contentsOfFile: file, encoding: .utf8)).flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// Neither running nor a zombie: the runner reaped it.
    private func isGone(_ pid: pid_t) -> Bool {
        kill(pid, 0) == -1 && errno == ESRCH
    }

    private func threadIDs() -> Set<String> {
        Set((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? [])
    }

    private func threadName(_ id: String) -> String {
        let name = (try? String(contentsOfFile: "/proc/self/task/\(id)/comm", encoding: .utf8)) ?? "?"
        return "\(id) \(name.trimmingCharacters(in: .whitespacesAndNewlines))"
    }
}
