import Foundation
import NIOConcurrencyHelpers
import UpkeepKube

/// Log lines that may repeat many times a second (every write while the datastore is down),
/// at most one per kind per `intervalSeconds`, the next one saying how many were held back.
/// Lines go to `write` (the sandbox process's stdout: `sandbox.log`).
public final class ThrottledLog: Sendable {
    private struct Kind {
        var lastAt: Double
        var heldBack: Int
    }

    private let kinds = NIOLockedValueBox<[String: Kind]>([:])
    let intervalSeconds: Double
    let clock: @Sendable () -> Double
    let write: @Sendable (String) -> Void

    public init(intervalSeconds: Double = 10, clock: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 },
                write: @escaping @Sendable (String) -> Void = { line in FileHandle.standardOutput.write(Data((line + "\n").utf8)) })
    {
        self.intervalSeconds = intervalSeconds
        self.clock = clock
        self.write = write
    }

    /// Writes `message` unless a line of `kind` was written less than `intervalSeconds` ago.
    public func note(_ kind: String, _ message: @autoclosure () -> String) {
        let now = clock()
        let heldBack: Int? = kinds.withLockedValue { kinds in
            if let last = kinds[kind], now - last.lastAt < intervalSeconds {
                kinds[kind]?.heldBack += 1
                return nil
            }
            let held = kinds[kind]?.heldBack ?? 0
            kinds[kind] = Kind(lastAt: now, heldBack: 0)
            return held
        }
        guard let heldBack else { return }
        write("\(KubeTime.format(now)) \(kind): \(message())" + (heldBack > 0 ? " (\(heldBack) more since the last such line)" : ""))
    }
}
