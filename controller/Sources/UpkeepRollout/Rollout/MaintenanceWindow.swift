import UpkeepCore

/// A weekly span of time, in UTC, in which a rollout may start nodes: `Sat 02:00-06:00`,
/// `Mon-Fri 22:00-02:00` (past midnight: it ends the next day), `Sat,Sun 00:00-24:00`,
/// `daily 01:00-05:00`. The days name when a window opens. Written and stored as that text.
///
/// Pure: it reads no clock; `Instant`s are Unix milliseconds in production.
public struct MaintenanceWindow: Codable, Hashable, Sendable, CustomStringConvertible {
    /// Monday = 0 … Sunday = 6.
    public let days: Set<Int>
    /// Minutes after midnight UTC when it opens.
    public let startMinute: Int
    /// 1 ... 1440.
    public let durationMinutes: Int
    public let description: String

    static let dayNames = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    static let dayTitles = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    static let minuteMilliseconds: Int64 = 60_000
    static let dayMilliseconds: Int64 = 86_400_000

    /// Parses the text form; the error says what is wrong and shows the accepted forms.
    public init(_ text: String) throws(MaintenanceWindowError) {
        let parts = text.split(separator: " ", omittingEmptySubsequences: true)
        guard parts.count == 2 else { throw .init(text, "expected DAYS HH:MM-HH:MM") }
        days = try Self.days(String(parts[0]), text)
        let times = parts[1].split(separator: "-", omittingEmptySubsequences: false)
        guard times.count == 2 else { throw .init(text, "expected a time span HH:MM-HH:MM") }
        let start = try Self.minute(String(times[0]), text, allowEndOfDay: false)
        let end = try Self.minute(String(times[1]), text, allowEndOfDay: true)
        guard end != start else { throw .init(text, "the window is empty; for a whole day write 00:00-24:00") }
        startMinute = start
        durationMinutes = end > start ? end - start : end + 1440 - start
        description = parts.joined(separator: " ")
    }

    private static func days(_ text: String, _ whole: String) throws(MaintenanceWindowError) -> Set<Int> {
        let lower = text.lowercased()
        if lower == "daily" { return Set(0..<7) }
        var days = Set<Int>()
        for item in lower.split(separator: ",", omittingEmptySubsequences: false) {
            let range = item.split(separator: "-", omittingEmptySubsequences: false)
            guard (1...2).contains(range.count), let first = dayNames.firstIndex(of: String(range[0])),
                  let last = dayNames.firstIndex(of: String(range[range.count - 1])) else {
                throw .init(whole, "\"\(item)\" is not a day; use Mon … Sun, a range like Mon-Fri, a list like Sat,Sun, or daily")
            }
            var day = first
            while true {
                days.insert(day)
                if day == last { break }
                day = (day + 1) % 7
            }
        }
        return days
    }

    private static func minute(_ text: String, _ whole: String, allowEndOfDay: Bool) throws(MaintenanceWindowError) -> Int {
        let pieces = text.split(separator: ":", omittingEmptySubsequences: false)
        guard pieces.count == 2, pieces[0].count == 2, pieces[1].count == 2, let hour = Int(pieces[0]), let minute = Int(pieces[1]),
              (0...59).contains(minute), (0...23).contains(hour) || (allowEndOfDay && hour == 24 && minute == 0) else {
            throw .init(whole, "\"\(text)\" is not a time HH:MM (00:00 … 23:59\(allowEndOfDay ? ", or 24:00 to end at midnight" : ""))")
        }
        return hour * 60 + minute
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do { self = try MaintenanceWindow(text) } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.description))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }

    // MARK: - Time

    /// When the occurrences that could contain or follow `instant` open (from the day before).
    private func openings(around instant: Instant, daysAhead: Int) -> [Instant] {
        let day = CivilDate.floorDivide(instant.milliseconds, Self.dayMilliseconds)
        return (day - 1...day + Int64(daysAhead)).compactMap { index in
            guard days.contains(CivilDate.weekday(days: index)) else { return nil }
            return Instant(milliseconds: index * Self.dayMilliseconds + Int64(startMinute) * Self.minuteMilliseconds)
        }
    }

    private var durationMilliseconds: Int64 { Int64(durationMinutes) * Self.minuteMilliseconds }

    /// Whether the window is open at `instant` (opening inclusive, closing exclusive).
    public func contains(_ instant: Instant) -> Bool {
        openings(around: instant, daysAhead: 0).contains { $0 <= instant && instant < $0.adding(milliseconds: durationMilliseconds) }
    }

    /// The first moment at or after `instant` at which the window is open.
    public func nextOpen(atOrAfter instant: Instant) -> Instant {
        if contains(instant) { return instant }
        return openings(around: instant, daysAhead: 7).filter { $0 > instant }.min() ?? instant
    }

    /// When the occurrence open at `instant` closes, if it is open.
    public func closing(after instant: Instant) -> Instant? {
        openings(around: instant, daysAhead: 0).filter { $0 <= instant && instant < $0.adding(milliseconds: durationMilliseconds) }
            .map { $0.adding(milliseconds: durationMilliseconds) }.max()
    }
}

extension [MaintenanceWindow] {
    /// No windows: always open.
    public func isOpen(at instant: Instant) -> Bool { isEmpty || contains { $0.contains(instant) } }

    /// The first moment at or after `instant` when one of the windows is open.
    public func nextOpen(atOrAfter instant: Instant) -> Instant {
        map { $0.nextOpen(atOrAfter: instant) }.min() ?? instant
    }

    /// When the windows open at `instant` stop being open (following overlapping and adjoining
    /// occurrences), if one is open; nil when none is, when there are no windows at all, or when
    /// together they never close (`daily 00:00-24:00`: open for a whole week, so for ever).
    public func closing(after instant: Instant) -> Instant? {
        guard var end = compactMap({ $0.closing(after: instant) }).max() else { return nil }
        let weekLater = instant.adding(milliseconds: 7 * MaintenanceWindow.dayMilliseconds)
        // Each step moves past another occurrence, and every occurrence the walk can reach before
        // a week is covered opens on one of 9 days (the day before `instant` to a week after), at
        // most once per window and day: so the walk ends within this many steps.
        let stepsMax = count * 9 + 1
        for _ in 0..<stepsMax {
            if end >= weekLater { return nil }
            guard let later = compactMap({ $0.closing(after: end) }).max(), later > end else { return end }
            end = later
        }
        preconditionFailure("closing(after: \(instant)) of \(listed) did not end within \(stepsMax) steps")
    }

    public var listed: String { map(\.description).joined(separator: ", ") }
}

public struct MaintenanceWindowError: Error, Equatable, Sendable, CustomStringConvertible {
    public let description: String
    init(_ text: String, _ problem: String) {
        description = "maintenance window \"\(text)\": \(problem) (examples: \"Sat 02:00-06:00\", \"Mon-Fri 22:00-02:00\", \"daily 01:00-05:00\"; times in UTC)"
    }
}

/// Formats a Unix-milliseconds `Instant` as `Sat 2026-11-28 02:00 UTC` without Foundation.
public enum MaintenanceWindowClock {
    public static func text(_ instant: Instant) -> String {
        let day = CivilDate.floorDivide(instant.milliseconds, MaintenanceWindow.dayMilliseconds)
        let minutes = (instant.milliseconds - day * MaintenanceWindow.dayMilliseconds) / MaintenanceWindow.minuteMilliseconds
        let (year, month, dayOfMonth) = CivilDate.date(days: day)
        func two(_ value: Int64) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(MaintenanceWindow.dayTitles[CivilDate.weekday(days: day)]) \(year)-\(two(month))-\(two(dayOfMonth)) "
            + "\(two(minutes / 60)):\(two(minutes % 60)) UTC"
    }
}
