import Foundation
import Logging

/// Log lines as a test sees them: a `Logger` whose every line (level, message, metadata) is kept.
public final class RecordedLog: @unchecked Sendable {
    private let lock = NSLock()
    private var recorded: [(level: Logger.Level, message: String, metadata: Logger.Metadata)] = []

    public init() {}

    public var logger: Logger {
        Logger(label: "test") { _ in Handler(log: self) }
    }

    /// Every line so far, in order.
    public var lines: [(level: Logger.Level, message: String, metadata: Logger.Metadata)] { lock.withLock { recorded } }

    fileprivate func append(_ event: LogEvent) {
        lock.withLock { recorded.append((event.level, event.message.description, event.metadata ?? [:])) }
    }

    struct Handler: LogHandler {
        let log: RecordedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) { log.append(event) }
    }
}
