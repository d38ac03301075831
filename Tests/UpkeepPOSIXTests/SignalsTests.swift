import Dispatch
import Testing
import UpkeepPOSIX

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `Signals.listen` in this process, with SIGUSR2 (which nothing else here uses; it stays
/// ignored afterwards) standing in for SIGTERM.
@Suite struct SignalsTests {
    /// The earliest a signal can come: from this thread, the instant `listen` returned, before
    /// anyone waits. Before the fix it was dropped whenever it beat Dispatch's installation of
    /// the source (nearly always, this early).
    @Test func aSignalSentTheMomentListenReturnsIsKept() async throws {
        let wait = Signals.listen(for: [SIGUSR2])
        #expect(kill(getpid(), SIGUSR2) == 0)
        let received = await withTaskGroup(of: Int32?.self) { group in
            group.addTask { await wait() }
            group.addTask {
                try? await Task.sleep(nanoseconds: 10_000_000_000)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        #expect(received == SIGUSR2, "the SIGUSR2 sent right after listen returned did not arrive within 10 s")
    }
}
