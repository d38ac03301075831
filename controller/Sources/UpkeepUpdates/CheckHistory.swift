import Foundation

/// One check as the history keeps it: when, what it found, how it ended. Small on purpose: the
/// full report is printed, the history answers "what did checks say over time".
public struct CheckRecord: Sendable, Equatable, Codable {
    public struct ComponentSummary: Sendable, Equatable, Codable {
        public var component: Component
        public var installed: String?
        public var target: String?
        public var updateAvailable: Bool
        public var path: [String]
        public var warnings: [String]

        public init(component: Component, installed: String?, target: String?, updateAvailable: Bool, path: [String], warnings: [String]) {
            self.component = component
            self.installed = installed
            self.target = target
            self.updateAvailable = updateAvailable
            self.path = path
            self.warnings = warnings
        }
    }

    public var checkedAt: String
    /// `up-to-date`, `updates-available` or `failed`.
    public var outcome: String
    public var exitCode: Int32
    public var releaseSource: String
    public var components: [ComponentSummary]
    public var error: String?

    public init(checkedAt: String, outcome: String, exitCode: Int32, releaseSource: String, components: [ComponentSummary], error: String?) {
        self.checkedAt = checkedAt
        self.outcome = outcome
        self.exitCode = exitCode
        self.releaseSource = releaseSource
        self.components = components
        self.error = error
    }

    public init(report: CheckReport, exitCode: Int32) {
        self.init(checkedAt: report.checkedAt, outcome: report.updatesAvailable ? "updates-available" : "up-to-date", exitCode: exitCode,
                  releaseSource: report.releaseSource,
                  components: report.components.map { component in
                      ComponentSummary(component: component.component,
                                       installed: component.installed.version.map { "\($0)" } ?? component.installed.state.rawValue,
                                       target: component.target.map { "\($0)" }, updateAvailable: component.updateAvailable,
                                       path: component.path.map { "\($0.version)" }, warnings: component.warnings.map(\.code))
                  }, error: nil)
    }

    public static func failure(checkedAt: String, exitCode: Int32, releaseSource: String, error: String) -> CheckRecord {
        CheckRecord(checkedAt: checkedAt, outcome: "failed", exitCode: exitCode, releaseSource: releaseSource, components: [], error: error)
    }
}

/// Where check records go. The controller's store implements it once it exists; until then
/// `JSONLinesCheckHistory` keeps them in a file.
public protocol CheckRecorder: Sendable {
    func record(_ record: CheckRecord) throws
    /// The most recent records, oldest first, at most `limit`.
    func recent(limit: Int) throws -> [CheckRecord]
}

/// Why the history could not be written or read.
public struct CheckHistoryError: Error, Equatable, Sendable, CustomStringConvertible {
    public var path: String
    public var problem: String
    public var description: String { "cannot use the check history \(path): \(problem)" }
}

/// Check records as JSON lines in `<state dir>/check-history.jsonl` (mode 0600): one line per
/// check, appended with a single `write` so concurrent checks never interleave, and synced.
/// When the file passes `bytesMax`, the older half is dropped (rewritten atomically).
/// Unreadable lines (a torn tail after a crash) are skipped when reading, and the next record
/// starts on a new line.
public struct JSONLinesCheckHistory: CheckRecorder {
    public static let fileName = "check-history.jsonl"
    public let path: String
    public let bytesMax: Int

    public init(stateDirectory: String, bytesMax: Int = 4 << 20) {
        path = "\(stateDirectory)/\(Self.fileName)"
        self.bytesMax = max(4096, bytesMax)
    }

    public func record(_ record: CheckRecord) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var line = try encoder.encode(record)
        line.append(UInt8(ascii: "\n"))
        let directory = (path as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw CheckHistoryError(path: path, problem: "cannot create \(directory): \(error.localizedDescription)")
        }
        let fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw CheckHistoryError(path: path, problem: String(cString: strerror(errno))) }
        defer { close(fd) }
        // A crash may have left a torn last line: start on a fresh one so this record stays whole.
        var info = stat()
        if fstat(fd, &info) == 0, info.st_size > 0 {
            var last: UInt8 = 0
            if pread(fd, &last, 1, info.st_size - 1) == 1, last != UInt8(ascii: "\n") { line.insert(UInt8(ascii: "\n"), at: 0) }
        }
        let written = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == line.count else { throw CheckHistoryError(path: path, problem: "short write: \(String(cString: strerror(errno)))") }
        fsync(fd)
        if fstat(fd, &info) == 0, Int(info.st_size) > bytesMax { try compact() }
    }

    public func recent(limit: Int) throws -> [CheckRecord] {
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        guard let data = FileManager.default.contents(atPath: path) else { throw CheckHistoryError(path: path, problem: "unreadable") }
        let decoder = JSONDecoder()
        let records = data.split(separator: UInt8(ascii: "\n")).compactMap { try? decoder.decode(CheckRecord.self, from: Data($0)) }
        return Array(records.suffix(max(0, limit)))
    }

    /// Keeps the newer half of the lines.
    private func compact() throws {
        guard let data = FileManager.default.contents(atPath: path) else { return }
        let lines = data.split(separator: UInt8(ascii: "\n"))
        var kept = Data()
        for line in lines.suffix(lines.count / 2) {
            kept.append(contentsOf: line)
            kept.append(UInt8(ascii: "\n"))
        }
        let temporary = "\(path).tmp-\(getpid())"
        guard FileManager.default.createFile(atPath: temporary, contents: kept, attributes: [.posixPermissions: 0o600]),
              rename(temporary, path) == 0 else {
            unlink(temporary)
            throw CheckHistoryError(path: path, problem: "cannot compact: \(String(cString: strerror(errno)))")
        }
    }
}
