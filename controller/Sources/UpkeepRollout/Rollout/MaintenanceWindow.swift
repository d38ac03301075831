import UpkeepCore

/// A weekly span of local time in one time zone in which a rollout may start nodes:
/// `Sat 02:00-06:00 Europe/Berlin`, `Mon-Fri 22:00-02:00` (past midnight: it ends the next day;
/// no zone: UTC), `Sat,Sun 00:00-24:00`, `daily 01:00-05:00 America/New_York`. The days name
/// when a window opens, in its zone. Written and stored as that text (with `UTC` when it names
/// no zone), and with the zone's rule when it names one.
///
/// A window is open while a clock on the wall in its zone shows a time inside it, on one of its
/// days. So on the day daylight-saving time starts, the local times the clocks skip never show:
/// `Sun 02:00-06:00` in Berlin opens at 03:00 CEST, when the clocks jump (an hour shorter), and a
/// window that lies wholly inside the skipped hour does not open that day. On the day it ends
/// the repeated hour shows twice: `Sun 02:00-06:00` is open through both (an hour longer), and
/// `Sun 01:00-02:30` opens at 01:00 CEST, closes at 02:30 CEST and opens again from 02:00 to
/// 02:30 CET (docs/controller.md, "Maintenance windows").
///
/// Pure: it reads no clock and no zone database (the zone is handed in by a `TimeZoneSource`);
/// `Instant`s are Unix milliseconds in production.
public struct MaintenanceWindow: Codable, Hashable, Sendable, CustomStringConvertible {
    /// Monday = 0 … Sunday = 6, in the window's zone.
    public let days: Set<Int>
    /// Minutes after local midnight when it opens.
    public let startMinute: Int
    /// 1 ... 1440, of the local clock.
    public let durationMinutes: Int
    public let zone: TimeZoneRule
    /// `Sat 02:00-06:00 Europe/Berlin`; `UTC` ends a window written without a zone.
    public let description: String

    static let dayNames = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    static let dayTitles = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    static let minuteMilliseconds: Int64 = 60_000
    static let dayMilliseconds: Int64 = 86_400_000
    static let daySeconds: Int64 = 86_400

    /// Parses the text form, taking the zone it names (if any) from `zones`; the error says what
    /// is wrong and shows the accepted forms.
    public init(_ text: String, zones: any TimeZoneSource = UTCOnly()) throws(MaintenanceWindowError) {
        let parts = text.split(separator: " ", omittingEmptySubsequences: true)
        guard parts.count == 2 || parts.count == 3 else { throw .init(text, "expected DAYS HH:MM-HH:MM [ZONE]") }
        days = try Self.days(String(parts[0]), text)
        let times = parts[1].split(separator: "-", omittingEmptySubsequences: false)
        guard times.count == 2 else { throw .init(text, "expected a time span HH:MM-HH:MM") }
        let start = try Self.minute(String(times[0]), text, allowEndOfDay: false)
        let end = try Self.minute(String(times[1]), text, allowEndOfDay: true)
        guard end != start else { throw .init(text, "the window is empty; for a whole day write 00:00-24:00") }
        startMinute = start
        durationMinutes = end > start ? end - start : end + 1440 - start
        let zoneName = parts.count == 3 ? String(parts[2]) : "UTC"
        do {
            zone = TimeZoneRule.isUTC(zoneName) ? .utc : try zones.rule(named: zoneName)
        } catch {
            throw .init(text, error.description)
        }
        description = "\(parts[0]) \(parts[1]) \(zone.name)"
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

    // MARK: - Stored form

    private enum CodingKeys: String, CodingKey { case text, zone }

    /// A UTC window is its text (as every window was before zones); a zoned one its text and rule.
    public init(from decoder: any Decoder) throws {
        let text: String
        let zones: any TimeZoneSource
        if let single = try? decoder.singleValueContainer().decode(String.self) {
            (text, zones) = (single, UTCOnly())
        } else {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            text = try container.decode(String.self, forKey: .text)
            zones = StoredZone(rule: try container.decode(TimeZoneRule.self, forKey: .zone))
        }
        do { self = try MaintenanceWindow(text, zones: zones) } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.description))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        if zone == .utc {
            var container = encoder.singleValueContainer()
            try container.encode(description)
        } else {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(description, forKey: .text)
            try container.encode(zone, forKey: .zone)
        }
    }

    /// The rule a stored window carries, for reading it back.
    private struct StoredZone: TimeZoneSource {
        let rule: TimeZoneRule
        func rule(named name: String) throws(TimeZoneError) -> TimeZoneRule {
            guard name == rule.name else { throw TimeZoneError.unknownZone(name, directory: nil) }
            return rule
        }
    }

    // MARK: - Time

    /// Local milliseconds since 1970-01-01 00:00 in the window's zone.
    private func local(_ instant: Instant) -> Int64 {
        instant.milliseconds + Int64(zone.offset(at: instant).seconds) * 1000
    }

    /// The local day (days since 1970-01-01 in the zone) that `instant` falls on.
    private func localDay(_ instant: Instant) -> Int64 {
        CivilDate.floorDivide(local(instant), Self.dayMilliseconds)
    }

    /// Whether the window is open at `instant` (opening inclusive, closing exclusive): the local
    /// clock shows a time inside an occurrence, which opened today or (past midnight) yesterday.
    public func contains(_ instant: Instant) -> Bool {
        let local = local(instant)
        let today = CivilDate.floorDivide(local, Self.dayMilliseconds)
        return (today - 1...today).contains { day in
            guard days.contains(CivilDate.weekday(days: day)) else { return false }
            let opens = day * Self.dayMilliseconds + Int64(startMinute) * Self.minuteMilliseconds
            return opens <= local && local < opens + Int64(durationMinutes) * Self.minuteMilliseconds
        }
    }

    /// The UTC spans (milliseconds, in order, none empty, adjoining ones joined) during which the
    /// occurrence opening on local day `day` is open: the moments whose local time lies in it.
    func spans(openingOn day: Int64) -> [(start: Int64, end: Int64)] {
        guard days.contains(CivilDate.weekday(days: day)) else { return [] }
        let opens = day * Self.daySeconds + Int64(startMinute) * 60
        let closes = opens + Int64(durationMinutes) * 60
        // Offsets lie within -25 … +26 hours, so these UTC moments bound every candidate.
        let margin: Int64 = 26 * 3600
        var out: [(start: Int64, end: Int64)] = []
        for span in zone.spans(from: opens - margin, to: closes + margin) {
            let offset = Int64(span.offset.seconds)
            let start = max(span.start, opens - offset), end = min(span.end, closes - offset)
            guard start < end else { continue }
            if let last = out.last, last.end == start * 1000 {
                out[out.count - 1].end = end * 1000
            } else {
                out.append((start * 1000, end * 1000))
            }
        }
        return out
    }

    /// The first moment at or after `instant` at which the window is open.
    public func nextOpen(atOrAfter instant: Instant) -> Instant {
        if contains(instant) { return instant }
        let today = localDay(instant)
        // A week and a day covers every weekday; a second week, an occurrence lost in a skipped
        // hour. The earliest of all: where clocks go back, a later day's span can come first.
        let starts = (today - 1...today + 15).flatMap { spans(openingOn: $0) }.filter { $0.end > instant.milliseconds }.map(\.start)
        return starts.min().map { Instant(milliseconds: max($0, instant.milliseconds)) } ?? instant
    }

    /// When the span open at `instant` closes, if one is.
    public func closing(after instant: Instant) -> Instant? {
        let today = localDay(instant)
        return (today - 1...today).flatMap { spans(openingOn: $0) }
            .filter { $0.start <= instant.milliseconds && instant.milliseconds < $0.end }
            .map { Instant(milliseconds: $0.end) }.max()
    }
}

extension [MaintenanceWindow] {
    /// No windows: always open.
    public func isOpen(at instant: Instant) -> Bool { isEmpty || contains { $0.contains(instant) } }

    /// The first moment at or after `instant` when one of the windows is open.
    public func nextOpen(atOrAfter instant: Instant) -> Instant {
        nextOpening(atOrAfter: instant)?.at ?? instant
    }

    /// The first moment at or after `instant` when one of the windows is open, and that window
    /// (to say the time in its zone); nil without windows.
    public func nextOpening(atOrAfter instant: Instant) -> (at: Instant, window: MaintenanceWindow)? {
        map { ($0.nextOpen(atOrAfter: instant), $0) }.min { $0.0 < $1.0 }
    }

    /// When the windows open at `instant` stop being open (following overlapping and adjoining
    /// occurrences), if one is open; nil when none is, when there are no windows at all, or when
    /// together they never close (`daily 00:00-24:00`: open for a whole week, so for ever).
    public func closing(after instant: Instant) -> Instant? {
        guard var end = compactMap({ $0.closing(after: instant) }).max() else { return nil }
        let weekLater = instant.adding(milliseconds: 7 * MaintenanceWindow.dayMilliseconds)
        // Each step moves past another span, and every span the walk can reach before a week is
        // covered belongs to an occurrence opening on one of 10 local days (the day before
        // `instant` to a week and a day after), at most two spans per occurrence (the repeated
        // hour of a daylight-saving change): so the walk ends within this many steps.
        let stepsMax = count * 20 + 1
        for _ in 0..<stepsMax {
            if end >= weekLater { return nil }
            guard let later = compactMap({ $0.closing(after: end) }).max(), later > end else { return end }
            end = later
        }
        preconditionFailure("closing(after: \(instant)) of \(listed) did not end within \(stepsMax) steps")
    }

    /// `Sat 02:00-06:00 Europe/Berlin, daily 00:00-24:00 UTC`.
    public var listed: String { map(\.description).joined(separator: ", ") }

    /// The zone to say times in: the windows' own when they share one, else UTC.
    public var sharedZone: TimeZoneRule {
        guard let first = first, allSatisfy({ $0.zone.name == first.zone.name }) else { return .utc }
        return first.zone
    }

    /// When the next window opens, in that window's zone: `Sat 2026-12-12 02:00 CET (01:00 UTC)`.
    public func nextOpenText(atOrAfter instant: Instant) -> String {
        guard let next = nextOpening(atOrAfter: instant) else { return MaintenanceWindowClock.text(instant) }
        return MaintenanceWindowClock.text(next.at, in: next.window.zone)
    }
}

public struct MaintenanceWindowError: Error, Equatable, Sendable, CustomStringConvertible {
    public let description: String
    init(_ text: String, _ problem: String) {
        description = "maintenance window \"\(text)\": \(problem) (examples: \"Sat 02:00-06:00 Europe/Berlin\", \"Mon-Fri 22:00-02:00\", "
            + "\"daily 00:00-24:00\"; without a zone the times are UTC)"
    }
}

/// Formats a Unix-milliseconds `Instant` as `Sat 2026-11-28 02:00 UTC`, or in a zone as
/// `Sun 2026-03-29 03:00 CEST (01:00 UTC)`, without Foundation.
public enum MaintenanceWindowClock {
    public static func text(_ instant: Instant) -> String {
        civil(instant.milliseconds) + " UTC"
    }

    /// The local time in `zone` with its abbreviation, then the UTC time; just UTC for UTC.
    public static func text(_ instant: Instant, in zone: TimeZoneRule) -> String {
        guard zone != .utc else { return text(instant) }
        let offset = zone.offset(at: instant)
        let utc = civil(instant.milliseconds)
        return civil(instant.milliseconds + Int64(offset.seconds) * 1000) + " \(offset.abbreviation) (\(utc.suffix(5)) UTC)"
    }

    /// `Sat 2026-11-28 02:00` of milliseconds since 1970-01-01 00:00 (on whatever clock).
    private static func civil(_ milliseconds: Int64) -> String {
        let day = CivilDate.floorDivide(milliseconds, MaintenanceWindow.dayMilliseconds)
        let minutes = (milliseconds - day * MaintenanceWindow.dayMilliseconds) / MaintenanceWindow.minuteMilliseconds
        let (year, month, dayOfMonth) = CivilDate.date(days: day)
        func two(_ value: Int64) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(MaintenanceWindow.dayTitles[CivilDate.weekday(days: day)]) \(year)-\(two(month))-\(two(dayOfMonth)) "
            + "\(two(minutes / 60)):\(two(minutes % 60))"
    }
}
