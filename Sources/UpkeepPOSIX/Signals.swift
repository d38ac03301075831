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
    /// How long `listen` waits for Dispatch to install its signal sources.
    static let registrationTimeoutSeconds = 5.0

    /// Starts listening for `signals`, turning their default action off for the rest of the
    /// process, and returns once they are caught: a function that waits for the first of them,
    /// where one that arrives at any time after `listen` returned is kept, not lost. Call the
    /// function once.
    public static func listen(for signals: [Int32]) -> @Sendable () async -> Int32 {
        let stream = AsyncStream<Int32>(bufferingPolicy: .bufferingOldest(1)) { continuation in
            let sources = signals.map { number in
                signal(number, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
                let registered = DispatchSemaphore(value: 0)
                source.setEventHandler { continuation.yield(number) }
                source.setRegistrationHandler { registered.signal() }
                source.resume()
                return (source, registered)
            }
            // Dispatch installs a source on its own thread after `resume`; until then an
            // ignored signal is dropped. Waiting here (microseconds, bounded) is what makes a
            // signal sent right after `listen` returned arrive.
            for (_, registered) in sources { _ = registered.wait(timeout: .now() + registrationTimeoutSeconds) }
            continuation.onTermination = { _ in sources.forEach { $0.0.cancel() } }
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
