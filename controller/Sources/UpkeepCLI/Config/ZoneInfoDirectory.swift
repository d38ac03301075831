import Glibc
import UpkeepCore
import UpkeepPOSIX
import UpkeepRollout

/// The system's time zone database: the TZif files the tzdata package installs under
/// /usr/share/zoneinfo (or `$TZDIR`, where glibc looks too), one per IANA zone name. The
/// controller's edge for the zones maintenance windows name: it reads a zone's file, bounded,
/// and hands the pure rule to the windows.
public struct ZoneInfoDirectory: TimeZoneSource {
    public static let systemPath = "/usr/share/zoneinfo"

    public let path: String
    /// Rules are kept from this moment on (`TimeZoneRule.from`): windows are asked about now
    /// and later only, and a rollout stores its windows' rules with every state.
    public let since: Instant

    public init(path: String, since: Instant) {
        self.path = path
        self.since = since
    }

    /// `$TZDIR` when it names a directory, else /usr/share/zoneinfo; rules from a week before `now`.
    public static func system(environment: [String: String], now: Instant = .wallClockNow()) -> ZoneInfoDirectory {
        let directory = environment["TZDIR"].flatMap { $0.hasPrefix("/") ? $0 : nil } ?? systemPath
        return ZoneInfoDirectory(path: directory, since: now.adding(seconds: -7 * 86_400))
    }

    public func rule(named name: String) throws(TimeZoneError) -> TimeZoneRule {
        guard Self.isZoneName(name) else { throw .badName(name) }
        let file = "\(path)/\(name)"
        let bytes: [UInt8]
        do {
            bytes = try BoundedRead.bytes(file, bytesMax: TZif.fileBytesMax)
        } catch {
            switch error {
            // A directory (`Europe`) opens, and fails on read.
            case .open(ENOENT), .open(ENOTDIR), .read(EISDIR): throw .unknownZone(name, directory: path)
            case .open(let code), .read(let code): throw .badFile(name, path: file, problem: "cannot be read: \(String(cString: strerror(code)))")
            case .tooLarge: throw .badFile(name, path: file, problem: "larger than \(TZif.fileBytesMax) bytes")
            }
        }
        do {
            return try TZif.parse(bytes, name: name).from(since)
        } catch {
            throw .badFile(name, path: file, problem: error.problem)
        }
    }

    /// The database's own rule for names (https://data.iana.org/time-zones/theory.html, "Names
    /// of timezones"): parts of ASCII letters, digits, `.`, `-`, `_` and `+` (`Etc/GMT+5`)
    /// separated by `/`, none empty, `.` or `..`; so a name never leaves the directory.
    static func isZoneName(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= 255 else { return false }
        return name.split(separator: "/", omittingEmptySubsequences: false).allSatisfy { part in
            !part.isEmpty && part != "." && part != ".."
                && part.utf8.allSatisfy { byte in
                    (65...90).contains(byte) || (97...122).contains(byte) || (48...57).contains(byte)
                        || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "+")
                }
        }
    }
}
