import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Logs one line per message to stderr. Under systemd (`JOURNAL_STREAM` set) each line starts
/// with the syslog priority `<N>` that journald turns into the entry's level; otherwise with the
/// level's name. Metadata follows as `key=value`.
public struct StderrLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    private let label: String
    private let forJournald: Bool

    public init(label: String, level: Logger.Level, forJournald: Bool = getenv("JOURNAL_STREAM") != nil) {
        self.label = label
        logLevel = level
        self.forJournald = forJournald
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = forJournald ? "<\(Self.priority(event.level))>" : "\(event.level.rawValue.uppercased()) "
        line += event.message.description
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        for key in merged.keys.sorted() { line += " \(key)=\(merged[key]!)" }
        line += "\n"
        _ = line.utf8CString.withUnsafeBufferPointer { write(2, $0.baseAddress, $0.count - 1) }
    }

    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }
}
