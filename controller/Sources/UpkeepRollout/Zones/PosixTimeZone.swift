import UpkeepCore

/// A POSIX `TZ` rule such as `CET-1CEST,M3.5.0,M10.5.0/3` or `EST5EDT,M3.2.0,M11.1.0`: a
/// standard time, and optionally a daylight-saving time with the dates and local times it starts
/// and ends each year. A TZif file's footer holds one: it gives the zone's offsets after the
/// file's last transition (RFC 8536, section 3.3, https://www.rfc-editor.org/rfc/rfc8536#section-3.3;
/// the syntax is POSIX's, https://pubs.opengroup.org/onlinepubs/9799919799/basedefs/V1_chap08.html#tag_08_03,
/// with RFC 8536's extension of rule times to -167…167 hours).
///
/// Pure: parsing and evaluation are arithmetic on the proleptic Gregorian calendar. Encoded as
/// its text.
public struct PosixTimeZone: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The text it was read from.
    public let description: String
    public let standard: TimeZoneRule.Offset
    public let daylight: Daylight?

    /// Daylight-saving time: its offset, and when in each year it starts and ends (local time:
    /// the start in standard time, the end in daylight time, as POSIX defines them).
    public struct Daylight: Hashable, Sendable {
        public let offset: TimeZoneRule.Offset
        public let start: YearDay
        public let end: YearDay
    }

    /// A day of the year and a local time on it.
    public struct YearDay: Hashable, Sendable {
        public enum Day: Hashable, Sendable {
            /// `Jn`: day 1…365, February 29 never counted.
            case julianNoLeap(Int)
            /// `n`: day 0…365, February 29 counted in leap years.
            case zeroBased(Int)
            /// `Mm.w.d`: weekday `d` (0 = Sunday) of week `w` (1…4, 5 = the last) of month `m`.
            case monthWeek(month: Int, week: Int, weekday: Int)
        }
        public let day: Day
        /// Seconds after local midnight, -167…167 hours (default 02:00:00).
        public let seconds: Int

        /// Local seconds since 1970-01-01 00:00 of this moment in `year`.
        func localSeconds(in year: Int64) -> Int64 {
            let days: Int64
            switch day {
            case .julianNoLeap(let n):
                // March 1st onwards is one later in a leap year, so February 29 is never named.
                let base = CivilDate.days(year: year, month: 1, day: 1) + Int64(n - 1)
                days = n >= 60 && Self.isLeap(year) ? base + 1 : base
            case .zeroBased(let n):
                days = CivilDate.days(year: year, month: 1, day: 1) + Int64(n)
            case .monthWeek(let month, let week, let weekday):
                let first = CivilDate.days(year: year, month: Int64(month), day: 1)
                // CivilDate's weekdays start on Monday (0); POSIX's on Sunday (0).
                let firstWeekday = (CivilDate.weekday(days: first) + 1) % 7
                var day = first + Int64((weekday - firstWeekday + 7) % 7) + Int64(week - 1) * 7
                let next = month == 12 ? CivilDate.days(year: year + 1, month: 1, day: 1) : CivilDate.days(year: year, month: Int64(month) + 1, day: 1)
                while day >= next { day -= 7 }  // week 5: the last such weekday of the month
                days = day
            }
            return days * 86_400 + Int64(seconds)
        }

        static func isLeap(_ year: Int64) -> Bool { (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 }
    }

    /// Parses `text`; the error names what is wrong.
    public init(_ text: String) throws(TimeZoneError) {
        var reader = Reader(Array(text.utf8), text: text)
        let standardName = try reader.name()
        let standardSeconds = try -reader.time(hoursMax: 24)
        standard = TimeZoneRule.Offset(seconds: standardSeconds, isDaylight: false, abbreviation: standardName)
        if reader.atEnd {
            daylight = nil
        } else {
            let daylightName = try reader.name()
            var daylightSeconds = standardSeconds + 3600
            if !reader.atEnd && reader.peek != UInt8(ascii: ",") { daylightSeconds = try -reader.time(hoursMax: 24) }
            guard reader.take(",") else {
                throw TimeZoneError.badRule(text, "daylight time \(daylightName) without the dates it starts and ends")
            }
            let start = try reader.yearDay()
            guard reader.take(",") else { throw TimeZoneError.badRule(text, "daylight time without the date it ends") }
            let end = try reader.yearDay()
            guard reader.atEnd else { throw TimeZoneError.badRule(text, "unexpected text after the end date") }
            daylight = Daylight(offset: TimeZoneRule.Offset(seconds: daylightSeconds, isDaylight: true, abbreviation: daylightName),
                                start: start, end: end)
        }
        description = text
    }

    /// The changes of offset in `year` (UTC seconds), in order; none without daylight time.
    /// When daylight time lasts the whole year (RFC 8536, 3.3.1: `EST5EDT,0/0,J365/25`) its end
    /// and the next year's start fall on the same second; the start is listed after the end.
    func changes(in year: Int64) -> [TimeZoneRule.Transition] {
        guard let daylight else { return [] }
        let start = TimeZoneRule.Transition(at: daylight.start.localSeconds(in: year) - Int64(standard.seconds), offset: daylight.offset)
        let end = TimeZoneRule.Transition(at: daylight.end.localSeconds(in: year) - Int64(daylight.offset.seconds), offset: standard)
        return start.at < end.at ? [start, end] : [end, start]
    }

    /// The offset in force at `seconds` (UTC, since the epoch).
    func offset(atSeconds seconds: Int64) -> TimeZoneRule.Offset {
        guard daylight != nil else { return standard }
        let year = CivilDate.date(days: CivilDate.floorDivide(seconds, 86_400)).year
        var current = standard
        // The year before decides the start of this one (a southern zone is in daylight time on
        // January 1st); the year after can begin before this year ends in UTC.
        for change in changes(in: year - 1) + changes(in: year) + changes(in: year + 1) where change.at <= seconds {
            current = change.offset
        }
        return current
    }

    /// The changes of offset in `(after, through]` (UTC seconds), in order, each a real change
    /// (a whole-year daylight time makes none).
    func changes(after: Int64, through: Int64) -> [TimeZoneRule.Transition] {
        guard daylight != nil, after < through else { return [] }
        let first = CivilDate.date(days: CivilDate.floorDivide(after, 86_400)).year - 1
        let last = CivilDate.date(days: CivilDate.floorDivide(through, 86_400)).year + 1
        // Of changes at the same second the last counts (whole-year daylight time).
        var inRange: [TimeZoneRule.Transition] = []
        var year = first
        while year <= last {
            for change in changes(in: year) where change.at > after && change.at <= through {
                if inRange.last?.at == change.at { inRange.removeLast() }
                inRange.append(change)
            }
            year += 1
        }
        var current = offset(atSeconds: after)
        var out: [TimeZoneRule.Transition] = []
        for change in inRange where change.offset != current {
            out.append(change)
            current = change.offset
        }
        return out
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do { self = try PosixTimeZone(text) } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.description))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }

    /// Reads a TZ string left to right.
    private struct Reader {
        let bytes: [UInt8]
        let text: String
        var index = 0

        init(_ bytes: [UInt8], text: String) {
            self.bytes = bytes
            self.text = text
        }

        var atEnd: Bool { index >= bytes.count }
        var peek: UInt8? { atEnd ? nil : bytes[index] }

        mutating func take(_ character: Unicode.Scalar) -> Bool {
            guard peek == UInt8(ascii: character) else { return false }
            index += 1
            return true
        }

        /// `CET`, or `<+03>` (quoted: letters, digits, + and -); at least three characters.
        mutating func name() throws(TimeZoneError) -> String {
            var name: [UInt8] = []
            if take("<") {
                while let byte = peek, byte != UInt8(ascii: ">") {
                    guard Self.isLetter(byte) || Self.isDigit(byte) || byte == UInt8(ascii: "+") || byte == UInt8(ascii: "-") else {
                        throw TimeZoneError.badRule(text, "a quoted zone abbreviation holds letters, digits, + and - only")
                    }
                    name.append(byte)
                    index += 1
                }
                guard take(">") else { throw TimeZoneError.badRule(text, "a quoted zone abbreviation is not closed with >") }
            } else {
                while let byte = peek, Self.isLetter(byte) {
                    name.append(byte)
                    index += 1
                }
            }
            guard name.count >= 3 else { throw TimeZoneError.badRule(text, "expected a zone abbreviation of at least three characters") }
            return String(decoding: name, as: UTF8.self)
        }

        /// `[+-]hh[:mm[:ss]]` in seconds, hours at most `hoursMax`.
        mutating func time(hoursMax: Int) throws(TimeZoneError) -> Int {
            var sign = 1
            if take("-") { sign = -1 } else { _ = take("+") }
            var parts: [Int] = []
            repeat {
                parts.append(try number(expecting: "a time [+-]hh[:mm[:ss]]"))
            } while parts.count < 3 && take(":")
            guard parts[0] <= hoursMax, parts.dropFirst().allSatisfy({ $0 <= 59 }) else {
                throw TimeZoneError.badRule(text, "a time out of range (hours at most \(hoursMax), minutes and seconds at most 59)")
            }
            return sign * (parts[0] * 3600 + (parts.count > 1 ? parts[1] * 60 : 0) + (parts.count > 2 ? parts[2] : 0))
        }

        /// `Jn`, `n` or `Mm.w.d`, then an optional `/time`.
        mutating func yearDay() throws(TimeZoneError) -> YearDay {
            let day: YearDay.Day
            if take("J") {
                let n = try number()
                guard (1...365).contains(n) else { throw TimeZoneError.badRule(text, "Jn takes a day 1…365") }
                day = .julianNoLeap(n)
            } else if take("M") {
                let month = try number()
                guard take(".") else { throw TimeZoneError.badRule(text, "expected Mm.w.d") }
                let week = try number()
                guard take(".") else { throw TimeZoneError.badRule(text, "expected Mm.w.d") }
                let weekday = try number()
                guard (1...12).contains(month), (1...5).contains(week), (0...6).contains(weekday) else {
                    throw TimeZoneError.badRule(text, "Mm.w.d takes a month 1…12, a week 1…5 and a weekday 0…6")
                }
                day = .monthWeek(month: month, week: week, weekday: weekday)
            } else {
                let n = try number()
                guard (0...365).contains(n) else { throw TimeZoneError.badRule(text, "a day number is 0…365") }
                day = .zeroBased(n)
            }
            let seconds = take("/") ? try time(hoursMax: 167) : 7200
            return YearDay(day: day, seconds: seconds)
        }

        /// At most three digits.
        mutating func number(expecting what: String = "a number") throws(TimeZoneError) -> Int {
            var value = 0
            var digits = 0
            while let byte = peek, Self.isDigit(byte), digits < 3 {
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
                digits += 1
                index += 1
            }
            guard digits > 0 else { throw TimeZoneError.badRule(text, "expected \(what)") }
            return value
        }

        static func isLetter(_ byte: UInt8) -> Bool { (65...90).contains(byte) || (97...122).contains(byte) }
        static func isDigit(_ byte: UInt8) -> Bool { (48...57).contains(byte) }
    }
}
