import Testing
import UpkeepProtocol

#if canImport(Glibc)
import Glibc
#endif

/// The allocator settings chunk streams run with (`StreamAllocator`): a window of chunk-sized
/// buffers that is drained and refilled stays in memory instead of being given back to the kernel
/// and faulted in again each time.
@Suite struct StreamAllocatorTests {
    /// 12 buffers of 512 KiB (a 4 MiB window of 256 KiB chunks, as buffers round up) allocated,
    /// written, freed, four times over on one thread: with glibc's defaults each round faults its
    /// 6 MiB in again (about 1,500 faults a round); configured, only the first does.
    @Test func aRefilledWindowIsNotFaultedInAgain() {
        StreamAllocator.configure()
        defer { StreamAllocator.returnFreeMemory() }
        func faults() -> Int {
            var usage = rusage()
            getrusage(__rusage_who_t(1), &usage)  // RUSAGE_THREAD: this thread's faults only
            return usage.ru_minflt
        }
        func window() {
            let blocks = (0..<12).map { _ -> UnsafeMutableRawPointer in
                guard let block = malloc(512 << 10) else { preconditionFailure("malloc") }
                memset(block, 0x5a, 512 << 10)
                return block
            }
            for block in blocks { free(block) }
        }
        window()
        let before = faults()
        for _ in 0..<4 { window() }
        let refaulted = faults() - before
        #expect(refaulted < 500, "\(refaulted) page faults refilling the window four times")
    }
}
