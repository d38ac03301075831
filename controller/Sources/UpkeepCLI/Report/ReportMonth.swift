import UpkeepCore
import UpkeepRollout

/// A calendar month, `2026-11`, and the moments it spans in a time zone: from the first moment
/// of its first day to the first moment of the next month's, both as that zone's clocks show them
/// (a month in `Europe/Berlin` starts an hour before the same month in UTC). Pure arithmetic on
/// the proleptic Gregorian calendar; the zone's rule is given.
struct ReportMonth: Equatable, Sendable, CustomStringConvertible {
    let year: Int
    /// 1 … 12.
    let month: Int

    init(year: Int, month: Int) {
        precondition((1...12).contains(month), "month \(month) out of 1…12")
        self.year = year
        self.month = month
    }

    /// `YYYY-MM` exactly (e.g. `2026-11`), a year 1970 … 9999; nil for anything else.
    init?(_ text: String) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].count == 4, parts[1].count == 2, parts.allSatisfy({ $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }),
              let year = Int(parts[0]), let month = Int(parts[1]), (1970...9999).contains(year), (1...12).contains(month) else { return nil }
        self.init(year: year, month: month)
    }

    /// `2026-11`.
    var description: String { "\(year)-\(month < 10 ? "0" : "")\(month)" }

    /// `November 2026`.
    var name: String {
        let names = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"]
        return "\(names[month - 1]) \(year)"
    }

    var next: ReportMonth { month == 12 ? ReportMonth(year: year + 1, month: 1) : ReportMonth(year: year, month: month + 1) }
    var previous: ReportMonth { month == 1 ? ReportMonth(year: year - 1, month: 12) : ReportMonth(year: year, month: month - 1) }

    /// 28 … 31.
    var days: Int {
        let next = self.next
        return Int(CivilDate.days(year: Int64(next.year), month: Int64(next.month), day: 1) - CivilDate.days(year: Int64(year), month: Int64(month), day: 1))
    }

    /// The month that holds `instant` on `zone`'s clocks.
    static func containing(_ instant: Instant, zone: TimeZoneRule) -> ReportMonth {
        let local = instant.milliseconds + Int64(zone.offset(at: instant).seconds) * 1000
        let date = CivilDate.date(days: CivilDate.floorDivide(local, 86_400_000))
        return ReportMonth(year: Int(date.year), month: Int(date.month))
    }

    /// The last month that has ended at `now` (the default of `upkeep report --monthly`).
    static func lastComplete(at now: Instant, zone: TimeZoneRule) -> ReportMonth {
        containing(now, zone: zone).previous
    }

    /// The first moment of `day` (1 … days + 1; days + 1 is the next month's first) on `zone`'s
    /// clocks. Where midnight is skipped (a daylight-saving change at 00:00) it is the moment the
    /// clocks jump past it.
    func start(day: Int, zone: TimeZoneRule) -> Instant {
        let localSeconds = CivilDate.days(year: Int64(year), month: Int64(month), day: Int64(day)) * 86_400
        // The offset in force just before the local midnight decides it; asked twice because the
        // first guess uses the offset at the same reading taken as UTC.
        let guess = localSeconds - Int64(zone.offset(at: Instant(milliseconds: localSeconds * 1000)).seconds)
        let offset = zone.offset(at: Instant(milliseconds: guess * 1000)).seconds
        return Instant(milliseconds: (localSeconds - Int64(offset)) * 1000)
    }

    /// [start, end) of the month on `zone`'s clocks.
    func span(zone: TimeZoneRule) -> (start: Instant, end: Instant) {
        (start(day: 1, zone: zone), start(day: days + 1, zone: zone))
    }
}
