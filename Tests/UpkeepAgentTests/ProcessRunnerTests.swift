import Foundation
import Testing
@testable import UpkeepAgent
import UpkeepAgentCore
import UpkeepHTTP
import UpkeepCore
import UpkeepTestSupport
import UpkeepPOSIX

/// The agent's child processes (systemctl, k3s) through ProcessRunner, with real programs. The
/// tests taking a `WatchedChild.ExitWatch` run both ways the runner learns of an exit: the pidfd
/// production uses here, and the 10 ms polling it falls back to on systems without pidfd_open.
@Suite(.serialized) struct ProcessRunnerTests {
    typealias ExitWatch = WatchedChild.ExitWatch

    /// Without this, the tests below would run the pidfd path twice and never the fallback.
    @Test func theExitWatchAskedForIsTheOneUsed() throws {
        for exitWatch in ExitWatch.allCases {
            let child = try WatchedChild.start(["/bin/true"], environment: [:], exitWatch: exitWatch)
            let ending = child.watch(deadline: .now + .seconds(30), outputBytesMax: 1024)
            // Debian 12 (glibc 2.36, Linux 6.1) has pidfd_open: here the default must use it.
            #expect(child.exitWatch == exitWatch, "asked for \(exitWatch), got \(child.exitWatch)")
            #expect(ending.status?.exitCode == 0 && ending.stopReason == nil, "\(exitWatch): \(ending)")
        }
    }

    @Test(arguments: ExitWatch.allCases) func capturesStdoutStderrAndTheExitCode(exitWatch: ExitWatch) async throws {
        let outcome = try await ProcessRunner.run("/bin/sh", ["-c", "echo out; echo err >&2; exit 3"], timeoutSeconds: 30,
                                                  environment: [:], exitWatch: exitWatch)
        #expect(outcome.exitCode == 3 && outcome.output == "out\n" && outcome.error == "err\n", "\(outcome)")
        #expect(!outcome.succeeded)
    }

    @Test func argumentsReachTheProgramWithoutAShell() async throws {
        let outcome = try await ProcessRunner.run("/bin/echo", ["$HOME", "a b", "*"], timeoutSeconds: 30)
        #expect(outcome.exitCode == 0 && outcome.output == "$HOME a b *\n" && outcome.error.isEmpty, "\(outcome)")
    }

    @Test(arguments: ExitWatch.allCases) func aChildEndedBySignalHasNoExitCode(exitWatch: ExitWatch) async throws {
        let outcome = try await ProcessRunner.run("/bin/sh", ["-c", "echo before; kill -KILL $$"], timeoutSeconds: 30,
                                                  environment: [:], exitWatch: exitWatch)
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
    @Test(arguments: ExitWatch.allCases) func readsLargeStdoutAndStderrTogether(exitWatch: ExitWatch) async throws {
        let script = "i=0; while [ $i -lt 100 ]; do printf '%1024s' o; printf '%1024s' e >&2; i=$((i+1)); done"
        let outcome = try await ProcessRunner.run("/bin/sh", ["-c", script], timeoutSeconds: 60, environment: [:], exitWatch: exitWatch)
        #expect(outcome.exitCode == 0)
        #expect(outcome.output.utf8.count == 100 * 1024 && outcome.output.hasSuffix("o"))
        #expect(outcome.error.utf8.count == 100 * 1024 && outcome.error.hasSuffix("e"))
    }

    @Test(arguments: ["", ">&2"], ExitWatch.allCases) func outputOverTheCapFailsTheRun(redirect: String, exitWatch: ExitWatch) async throws {
        let bytes = ProcessRunner.outputBytesMax + 1
        let stream = redirect.isEmpty ? "stdout" : "stderr"
        let before = ProcessRunner.limits.count(.outputBytes)
        let failure = await #expect(throws: AgentFailure.self) {
            try await ProcessRunner.run("/bin/sh", ["-c", "head -c \(bytes) /dev/zero \(redirect)"], timeoutSeconds: 60,
                                        environment: [:], exitWatch: exitWatch)
        }
        #expect(failure?.message == "/bin/sh -c head -c \(bytes) /dev/zero \(redirect) printed more than \(ProcessRunner.outputBytesMax) bytes on \(stream) and was stopped")
        #expect(ProcessRunner.limits.count(.outputBytes) > before, "counted for the agent's metrics")
    }

    @Test func outputExactlyAtTheCapIsKept() async throws {
        let outcome = try await ProcessRunner.run("/usr/bin/head", ["-c", "\(ProcessRunner.outputBytesMax)", "/dev/zero"], timeoutSeconds: 60)
        #expect(outcome.exitCode == 0)
        #expect(outcome.output.utf8.count == ProcessRunner.outputBytesMax)
    }

    /// A child that ends on SIGTERM gets it at the deadline (its trap records it and stops its sleep).
    @Test(arguments: ExitWatch.allCases) func atTheDeadlineTheChildGetsSIGTERM(exitWatch: ExitWatch) async throws {
        let directory = try TemporaryDirectory()
        let pidFile = directory.file("pid")
        let termFile = directory.file("term")
        let script = "trap 'kill $!; echo TERM > \(termFile); exit 0' TERM; echo $$ > \(pidFile); sleep 60 & wait"
        let failure = await #expect(throws: AgentFailure.self) {
            try await ProcessRunner.run("/bin/sh", ["-c", script], timeoutSeconds: 2, environment: [:], exitWatch: exitWatch)
        }
        #expect(failure?.message.hasSuffix("did not finish within 2.0 s and was stopped") == true, "\(String(describing: failure))")
        let term = try? String(contentsOfFile: termFile, encoding: .utf8)
        #expect(term == "TERM\n", "the child's SIGTERM trap did not run (it wrote \(String(describing: term)))")
        let pid = try #require(readPID(pidFile))
        #expect(isGone(pid), "pid \(pid) still exists after the run returned")
    }

    @Test(arguments: ExitWatch.allCases) func aChildIgnoringSIGTERMIsKilledAfterTheTimeout(exitWatch: ExitWatch) async throws {
        let directory = try TemporaryDirectory()
        let pidFile = directory.file("pid")
        let failure = await #expect(throws: AgentFailure.self) {
            try await ProcessRunner.run("/bin/sh", ["-c", "trap '' TERM; echo $$ > \(pidFile); exec sleep 60"], timeoutSeconds: 1,
                                        environment: [:], exitWatch: exitWatch)
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

    @Test(arguments: [false, true], ExitWatch.allCases) func cancellingTheTaskStopsTheChild(ignoresSIGTERM: Bool, exitWatch: ExitWatch) async throws {
        let directory = try TemporaryDirectory()
        let pidFile = directory.file("pid")
        let script = (ignoresSIGTERM ? "trap '' TERM; " : "") + "echo $$ > \(pidFile).tmp; mv \(pidFile).tmp \(pidFile); exec sleep 60"
        let run = Task { try await ProcessRunner.run("/bin/sh", ["-c", script], timeoutSeconds: 120, environment: [:], exitWatch: exitWatch) }
        let started = await waitUntil(seconds: 30) { readPID(pidFile) != nil }
        try #require(started, "the child did not write its pid within 30 s")
        let pid = try #require(readPID(pidFile))
        run.cancel()
        let result = await run.result
        #expect(throws: AgentFailure(.io, "/bin/sh -c \(script) was cancelled and was stopped")) { try result.get() }
        #expect(isGone(pid), "pid \(pid) still exists after the cancelled run returned")
    }

    /// The child exits but a program it started in the background keeps both pipes open: the run
    /// still ends at the child's exit. Nothing is printed, no pipe closes and the deadline is an
    /// hour away, so only the exit watch can end this run: a fallback that did not look every
    /// 10 ms would leave it waiting (the test then cancels it after 60 s and fails). The child
    /// exits only when the test tells it (SIGUSR1), after it has written its pids: by then the
    /// watch, started with it, is waiting (were the exit already past, no fault would show).
    @Test(arguments: ExitWatch.allCases) func theRunEndsWithTheChildThoughAProgramItLeftHoldsThePipes(exitWatch: ExitWatch) async throws {
        let directory = try TemporaryDirectory()
        let pidsFile = directory.file("pids")
        let script = "trap 'exit 5' USR1; sleep 120 & echo \"$$ $!\" > \(pidsFile).tmp; mv \(pidsFile).tmp \(pidsFile); wait"
        let run = Task { try await ProcessRunner.run("/bin/sh", ["-c", script], timeoutSeconds: 3600, environment: [:], exitWatch: exitWatch) }
        defer { run.cancel() }
        let started = await waitUntil(seconds: 30) { FileManager.default.fileExists(atPath: pidsFile) }
        try #require(started, "the child did not write its pids within 30 s")
        let pids = try String(contentsOfFile: pidsFile, encoding: .utf8).split(whereSeparator: \.isWhitespace).compactMap { pid_t($0) }
        try #require(pids.count == 2, "\(pids)")
        defer { kill(pids[1], SIGKILL) }
        kill(pids[0], SIGUSR1)
        let endedByItself = await endsWithin(seconds: 60, run)
        #expect(endedByItself, "\(exitWatch): the run did not end within 60 s of the child's exit")
        let outcome = try await run.value
        #expect(outcome.exitCode == 5 && outcome.output.isEmpty && outcome.error.isEmpty, "\(outcome)")
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

    /// Whether `run` ends within `seconds`; if not, it is cancelled (which ends it) and this is false.
    private func endsWithin(seconds: Int, _ run: Task<ProcessOutcome, any Error>) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask { _ = await run.result; return true }
            group.addTask {
                try? await Task.sleep(for: .seconds(seconds))
                return false
            }
            let ended = await group.next() ?? false
            if !ended { run.cancel() }
            group.cancelAll()
            return ended
        }
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
