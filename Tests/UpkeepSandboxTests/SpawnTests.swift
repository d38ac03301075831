import Foundation
import Testing
import UpkeepCore
@testable import UpkeepSandbox
import UpkeepTestSupport
import UpkeepPOSIX

/// How the sandbox tells a running process from a zombie (`Spawn.isZombie`, which `isAlive` and
/// so every stop of a node relies on): the `/proc/PID/stat` parser on made-up lines, then real
/// processes, one of them named to fool a parser that takes the first ')'.
@Suite struct SpawnTests {
    /// A name with a space, parentheses and ") Z (" in it, as a file name gives one (15 bytes at most).
    static let trickyName = "x) Z (y z"

    @Test(arguments: [
        ("1234 (sleep) S 1 1234 1234 0 -1 4194560 93 0 0 0", "S"),
        ("1234 (k3s server) Z 1 1234 1234 0 -1 4194560", "Z"),
        ("1234 (\(trickyName)) R 1 1234 1234 0 -1", "R"),
        ("1234 (x) Z (y) S 1 1234", "S"),
        ("1234 ()) D 1 1234", "D"),
        ("1234 (() T 1 1234", "T"),
        ("1234 (a\nb) I 2 0 0", "I"),
        ("1234 (sleep) t\n", "t"),
        ("1234 (sleep) X", "X"),
    ] as [(String, Character)])
    func theStateIsTheFieldAfterTheLastParenthesis(line: String, state: Character) {
        #expect(Spawn.processState(stat: Array(line.utf8)) == state, "\(line.debugDescription)")
    }

    @Test(arguments: ["", "1234", "1234 (sleep)", "1234 (sleep) ", "1234 sleep S 1", "1234 sleep) S 1", "1234 (sleep)S 1",
                      "1234 (sleep) 12 1", "1234 (sleep) SS 1", "1234 (sleep) \u{e9} 1", "1234 (sleep)  S 1"])
    func aLineThatIsNotAStatLineHasNoState(line: String) {
        #expect(Spawn.processState(stat: Array(line.utf8)) == nil, "\(line.debugDescription)")
    }

    /// The thread reading its own stat is running (the process's stat shows the main thread's
    /// state, which sleeps while the tests run).
    @Test func theReadingThreadIsRunning() throws {
        let stat = try BoundedRead.bytes("/proc/thread-self/stat", bytesMax: Spawn.statBytesMax)
        #expect(Spawn.processState(stat: stat) == "R", "\(String(decoding: stat, as: UTF8.self))")
        #expect(!Spawn.isZombie(getpid()))
    }

    /// A real child named `trickyName` (a link to sleep): not a zombie while it runs (a parser
    /// taking the first ')' reads its name's "Z"); once it has exited and before it is reaped, a
    /// zombie, which `isAlive` counts as gone and reaps; afterwards neither.
    @Test func aChildIsAZombieOnlyBetweenItsExitAndItsReaping() throws {
        let directory = try TemporaryDirectory()
        let program = directory.file(Self.trickyName)
        try FileManager.default.createSymbolicLink(atPath: program, withDestinationPath: "/bin/sleep")
        let pid = try Spawn.detached([program, "120"], environment: [:], logFile: directory.file("log"))
        var reaped = false
        defer {
            if !reaped {
                kill(pid, SIGKILL)
                waitpid(pid, nil, 0)
            }
        }
        // posix_spawn returns once the child has exec'd, so its name is the link's by now.
        let comm = String(decoding: try BoundedRead.bytes("/proc/\(pid)/comm", bytesMax: 64), as: UTF8.self)
        #expect(comm == Self.trickyName + "\n", "the child is named \(comm.debugDescription)")
        #expect(!Spawn.isZombie(pid), "a running child counted as a zombie")
        #expect(Spawn.isAlive(pid))

        kill(pid, SIGKILL)
        // Blocks until the child has exited, leaving it unreaped (WNOWAIT); no polling, no timing.
        var info = siginfo_t()
        try #require(waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) == 0, "waitid: \(String(cString: strerror(errno)))")
        #expect(Spawn.isZombie(pid), "an exited, unreaped child is not seen as a zombie")
        #expect(!Spawn.isAlive(pid), "a zombie counted as alive")
        // isAlive reaped it: nothing is left to wait for, and no /proc entry to read.
        reaped = waitpid(pid, nil, WNOHANG) == -1 && errno == ECHILD
        #expect(reaped, "isAlive did not reap the zombie")
        #expect(!Spawn.isZombie(pid))
    }
}
