#if canImport(Glibc)
import Glibc
#endif

/// How a process that carries chunk streams (the agent receiving a release, the controller
/// sending one) sets glibc's allocator, and gives memory back after a stream.
///
/// A stream allocates a window's worth (4 MiB) of buffers of a few hundred KiB at a steady rate:
/// TLS plaintext, chunk frames assembled from it, ciphertext. glibc's defaults (an mmap threshold
/// of 128 KiB that adapts to the largest block freed, and a trim threshold of twice that) give
/// such buffers back to the kernel as the window drains and fault them in again as it refills:
/// measured on `bench/tls-throughput`'s artifact stream, about 110,000 page faults and a quarter
/// of the process's CPU time per GiB (docs/decisions/2026-12-07-artifact-stream-allocator.md).
/// With blocks up to 1 MiB taken from the heap and up to 8 MiB of free heap kept, the same
/// stream faults about 2,600 times. `returnFreeMemory()` hands what a finished stream left
/// free back (`malloc_trim`), so an idle process does not keep it.
public enum StreamAllocator {
    /// Blocks at least this large are mapped on their own (`M_MMAP_THRESHOLD`).
    public static let mmapThresholdBytes: Int32 = 1 << 20
    /// Free memory at the top of a heap beyond this is given back at once (`M_TRIM_THRESHOLD`).
    public static let trimThresholdBytes: Int32 = 8 << 20

    /// Sets both thresholds (process-wide; call once at start).
    public static func configure() {
        guard let mallopt = CLibrary.mallopt else { return }
        _ = mallopt(mmapThresholdOption, mmapThresholdBytes)
        _ = mallopt(trimThresholdOption, trimThresholdBytes)
    }

    /// Gives free heap memory back to the kernel (after a stream, once start-up is done).
    public static func returnFreeMemory() {
        _ = CLibrary.mallocTrim?(0)
    }

    /// `M_TRIM_THRESHOLD` and `M_MMAP_THRESHOLD` (glibc's malloc.h, which Swift's Glibc module
    /// does not import).
    static let trimThresholdOption: Int32 = -1
    static let mmapThresholdOption: Int32 = -3

    /// glibc's `mallopt` and `malloc_trim`, looked up by name (not in Swift's Glibc module); nil
    /// with another C library, where nothing is tuned.
    private enum CLibrary {
        static let mallopt = function("mallopt", as: (@convention(c) (Int32, Int32) -> Int32).self)
        static let mallocTrim = function("malloc_trim", as: (@convention(c) (Int) -> Int32).self)

        static func function<F>(_ name: String, as type: F.Type) -> F? {
            #if canImport(Glibc)
            guard let symbol = dlsym(nil, name) else { return nil }
            return unsafeBitCast(symbol, to: type)
            #else
            return nil
            #endif
        }
    }
}
