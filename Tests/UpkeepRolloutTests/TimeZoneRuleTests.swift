import Foundation
import Testing
import UpkeepCore
import UpkeepRollout
import UpkeepTestSupport

/// The zone rules read from the system's tzdata (RFC 8536 TZif files) against `zdump`, glibc's
/// own reader of the same files, as the independent witness.
@Suite struct TimeZoneRuleTests {
    static let directory = "/usr/share/zoneinfo"

    /// The rule of `name` read from the system's tzdata (the tests' ground: scripts/install-deps
    /// installs the tzdata package).
    static func rule(_ name: String) throws -> TimeZoneRule {
        let bytes = try #require(FileManager.default.contents(atPath: "\(directory)/\(name)"), "no \(directory)/\(name): install tzdata")
        return try TZif.parse(Array(bytes), name: name)
    }

    /// Unix seconds of a UTC time, through Foundation's calendar.
    static func at(_ text: String) -> Instant {
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = TimeZone(identifier: "UTC")
        guard let date = formatter.date(from: text) else { preconditionFailure("bad time \(text)") }
        return Instant(milliseconds: Int64(date.timeIntervalSince1970 * 1000))
    }

    /// One line of `zdump -v`: a UTC moment and the offset, daylight flag and abbreviation there.
    struct ZdumpPoint: CustomStringConvertible {
        var at: Instant
        var seconds: Int
        var isDaylight: Bool
        var abbreviation: String
        var description: String { "\(MaintenanceWindowClock.text(at)) \(abbreviation) \(seconds) dst=\(isDaylight)" }
    }

    /// `zdump -v -c FROM,TO ZONE`: both sides of every transition in those years.
    static func zdump(_ zone: String, years: ClosedRange<Int>) throws -> [ZdumpPoint] {
        let result = try runProcess("zdump", ["-v", "-c", "\(years.lowerBound),\(years.upperBound)", zone])
        try #require(result.status == 0, "zdump failed: \(result.error)")
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "EEE MMM d HH:mm:ss yyyy"
        return try result.output.split(separator: "\n").compactMap { line -> ZdumpPoint? in
            let sides = line.components(separatedBy: " UT = ")
            guard sides.count == 2 else { return nil }  // the NULL lines at the ends of time
            let utc = sides[0].split(separator: " ").suffix(5).joined(separator: " ")
            let local = sides[1].split(separator: " ")
            let date = try #require(formatter.date(from: utc), "zdump time \(utc)")
            let seconds = try #require(local.last.flatMap { Int($0.dropFirst("gmtoff=".count)) }, "\(line)")
            return ZdumpPoint(at: Instant(milliseconds: Int64(date.timeIntervalSince1970) * 1000), seconds: seconds,
                              isDaylight: local[local.count - 2] == "isdst=1", abbreviation: String(local[local.count - 3]))
        }
    }

    /// Zones with every kind of rule: northern and southern daylight time, offsets of half and
    /// three quarters of an hour, half-hour daylight time (Lord Howe), two-hour daylight time
    /// (Troll), negative daylight time (Dublin's winter is its "daylight" time), rule times
    /// past 24:00 and below 0 (Santiago, Nuuk), no daylight time, and a table of irregular
    /// transitions (Casablanca).
    static let zones = ["Europe/Berlin", "America/New_York", "Australia/Sydney", "America/Santiago", "Pacific/Chatham", "Asia/Kolkata",
                        "America/Nuuk", "Africa/Casablanca", "Europe/Dublin", "America/St_Johns", "Antarctica/Troll",
                        "Australia/Lord_Howe", "Asia/Tehran", "America/Sao_Paulo"]

    /// 2026 to 2045 covers the files' tables (to 2037) and the footer's rule after them.
    @Test(arguments: zones)
    func offsetsMatchZdumpOnBothSidesOfEveryTransition(zone: String) throws {
        let full = try Self.rule(zone)
        let trimmed = full.from(Self.at("2026-01-01T00:00:00Z"))
        let points = try Self.zdump(zone, years: 2026...2045)
        #expect(points.count >= 2 || zone == "Asia/Kolkata" || zone == "Asia/Tehran" || zone == "America/Sao_Paulo", "\(points.count) points")
        for point in points {
            for (label, rule) in [("full", full), ("trimmed", trimmed)] {
                let offset = rule.offset(at: point.at)
                #expect(offset.seconds == point.seconds && offset.isDaylight == point.isDaylight && offset.abbreviation == point.abbreviation,
                        "\(zone) (\(label)) at \(point): \(offset)")
            }
        }
        // Between transitions too: every six hours of 2026-2045, the trimmed rule as the full one.
        var instant = Self.at("2026-01-01T00:00:00Z")
        let end = Self.at("2046-01-01T00:00:00Z")
        while instant < end {
            #expect(trimmed.offset(at: instant) == full.offset(at: instant), "\(zone) at \(MaintenanceWindowClock.text(instant))")
            instant = instant.adding(seconds: 6 * 3600)
        }
    }

    /// A rule stored with every rollout state keeps only what its footer does not give.
    @Test func aTrimmedRuleIsSmallAndRoundTrips() throws {
        let berlin = try Self.rule("Europe/Berlin").from(Self.at("2026-12-07T00:00:00Z"))
        let json = try JSONEncoder().encode(berlin)
        #expect(json.count < 300, "\(String(decoding: json, as: UTF8.self))")
        #expect(String(decoding: json, as: UTF8.self).contains("CET-1CEST,M3.5.0,M10.5.0\\/3"), "\(String(decoding: json, as: UTF8.self))")
        #expect(try JSONDecoder().decode(TimeZoneRule.self, from: json) == berlin)
    }

    @Test func posixRulesParseAndBadOnesSayWhy() throws {
        #expect(try PosixTimeZone("CET-1CEST,M3.5.0,M10.5.0/3").daylight?.offset.seconds == 7200)
        #expect(try PosixTimeZone("<+1245>-12:45<+1345>,M9.5.0/2:45,M4.1.0/3:45").standard.seconds == 12 * 3600 + 45 * 60)
        #expect(try PosixTimeZone("IST-5:30").daylight == nil)
        // Daylight time all year (RFC 8536 3.3.1): always the daylight offset.
        #expect(try PosixTimeZone("EST5EDT,0/0,J365/25").daylight?.offset.seconds == -4 * 3600)
        for text in ["", "C1", "CET", "CET-1CEST", "CET-1CEST,M3.5.0", "CET-1CEST,M13.5.0,M10.5.0", "CET-25", "<CET-1", "CET-1CEST,J0,J100",
                     "CET-1CEST,M3.5.0,M10.5.0/3x"] {
            #expect(throws: TimeZoneError.self, "\(text) was accepted") { try PosixTimeZone(text) }
        }
    }

    /// A file cut short anywhere, or with bytes changed, is refused with a reason; never read
    /// past its end, never a crash.
    @Test func damagedFilesAreRefused() throws {
        let bytes = try #require(FileManager.default.contents(atPath: "\(Self.directory)/Europe/Berlin")).map { $0 }
        for length in 0..<bytes.count - 1 {
            do {
                _ = try TZif.parse(Array(bytes.prefix(length)), name: "Europe/Berlin")
                Issue.record("a file cut to \(length) of \(bytes.count) bytes was accepted")
            } catch {
                #expect(!error.problem.isEmpty)
            }
        }
        var generator = SeededGenerator(seed: 17)
        for _ in 0..<2000 {
            var damaged = bytes
            for _ in 0..<Int.random(in: 1...8, using: &generator) {
                damaged[Int.random(in: 0..<damaged.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
            }
            _ = try? TZif.parse(damaged, name: "Europe/Berlin")  // refused or read; it must only return
        }
        #expect(throws: TZifError.self) { try TZif.parse(Array("TZif2".utf8) + [UInt8](repeating: 0, count: 39), name: "x") }
        #expect(throws: TZifError.self) { try TZif.parse([UInt8](repeating: 0x41, count: 100), name: "x") }
    }

    @Test func leapSecondZonesAreRefusedWithTheWayOut() throws {
        guard let bytes = FileManager.default.contents(atPath: "\(Self.directory)/right/Europe/Berlin") else { return }  // not every tzdata has right/
        do {
            _ = try TZif.parse(Array(bytes), name: "right/Europe/Berlin")
            Issue.record("a leap-second zone was accepted")
        } catch {
            #expect(error.problem == "it counts leap seconds (a right/ zone); name the zone without right/")
        }
    }
}
