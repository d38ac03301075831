@preconcurrency import Dispatch

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Termination signals as an async value, for every long-running process (the agent, the
/// sandbox's processes, `upkeep serve`): no handler runs code in signal context; Dispatch
/// delivers them.
public enum Signals {
    /// Starts listening for `signals` now, turning their default action off for the rest of the
    /// process, and returns a function that waits for the first of them: one that arrives before
    /// anyone waits is kept, not lost. Call the function once.
    public static func listen(for signals: [Int32]) -> @Sendable () async -> Int32 {
        let stream = AsyncStream<Int32>(bufferingPolicy: .bufferingOldest(1)) { continuation in
            let sources = signals.map { number in
                signal(number, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
                source.setEventHandler { continuation.yield(number) }
                source.resume()
                return source
            }
            continuation.onTermination = { _ in sources.forEach { $0.cancel() } }
        }
        return {
            for await number in stream { return number }
            return signals.first ?? SIGTERM
        }
    }

    /// Suspends until one of `signals` arrives and returns it.
    public static func wait(for signals: [Int32]) async -> Int32 {
        await listen(for: signals)()
    }
}
