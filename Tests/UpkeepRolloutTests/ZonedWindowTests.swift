import Foundation
import Testing
import UpkeepCore
import UpkeepRollout

/// Windows in a zone, on the real tzdata, across the daylight-saving changes of 2026: Berlin
/// springs forward on Sunday March 29 at 01:00 UTC (02:00 CET becomes 03:00 CEST) and falls back
/// on Sunday October 25 at 01:00 UTC (03:00 CEST becomes 02:00 CET); New York springs forward on
/// Sunday March 8 at 07:00 UTC (02:00 EST becomes 03:00 EDT) and falls back on Sunday November 1
/// at 06:00 UTC (02:00 EDT becomes 01:00 EST) (`zdump -v -c 2026,2027 Europe/Berlin America/New_York`,
/// checked in TimeZoneRuleTests). A window is open while the local clock shows a time inside it.
@Suite struct ZonedWindowTests {
    /// The system's tzdata, as the controller reads it.
    struct SystemZones: TimeZoneSource {
        func rule(named name: String) throws(TimeZoneError) -> TimeZoneRule {
            guard let bytes = FileManager.default.contents(atPath: "\(TimeZoneRuleTests.directory)/\(name)") else {
                throw TimeZoneError.unknownZone(name, directory: TimeZoneRuleTests.directory)
            }
            do { return try TZif.parse(Array(bytes), name: name) } catch {
                throw TimeZoneError.badFile(name, path: name, problem: error.problem)
            }
        }
    }

    static func window(_ text: String) throws -> MaintenanceWindow { try MaintenanceWindow(text, zones: SystemZones()) }
    static func at(_ text: String) -> Instant { TimeZoneRuleTests.at(text) }

    @Test func anOrdinarySundayInBerlinIsAnHourBeforeUTC() throws {
        let window = try Self.window("Sun 02:00-06:00 Europe/Berlin")
        #expect(window.description == "Sun 02:00-06:00 Europe/Berlin")
        #expect(!window.contains(Self.at("2026-03-22T00:59:59Z")) && window.contains(Self.at("2026-03-22T01:00:00Z")))
        #expect(window.closing(after: Self.at("2026-03-22T02:00:00Z")) == Self.at("2026-03-22T05:00:00Z"))
        // In summer time, two hours before.
        #expect(window.nextOpen(atOrAfter: Self.at("2026-06-01T00:00:00Z")) == Self.at("2026-06-07T00:00:00Z"))
    }

    /// 02:00-03:00 never shows on the clocks: the window opens when they jump to 03:00 CEST.
    @Test func springForwardOpensWhenTheClocksJumpAndIsAnHourShorter() throws {
        let window = try Self.window("Sun 02:00-06:00 Europe/Berlin")
        #expect(window.nextOpen(atOrAfter: Self.at("2026-03-28T12:00:00Z")) == Self.at("2026-03-29T01:00:00Z"))
        #expect(!window.contains(Self.at("2026-03-29T00:59:59Z")), "01:59:59 CET")
        #expect(window.contains(Self.at("2026-03-29T01:00:00Z")), "03:00 CEST")
        #expect(window.closing(after: Self.at("2026-03-29T01:00:00Z")) == Self.at("2026-03-29T04:00:00Z"), "06:00 CEST: three hours")
        #expect([window].nextOpenText(atOrAfter: Self.at("2026-03-28T12:00:00Z")) == "Sun 2026-03-29 03:00 CEST (01:00 UTC)")
    }

    /// A window wholly inside the skipped hour does not open that day; a week later it does.
    @Test func aWindowInsideTheSkippedHourDoesNotOpenThatDay() throws {
        let window = try Self.window("Sun 02:00-02:30 Europe/Berlin")
        #expect(!window.contains(Self.at("2026-03-29T01:00:00Z")) && !window.contains(Self.at("2026-03-29T00:59:00Z")))
        #expect(window.nextOpen(atOrAfter: Self.at("2026-03-28T12:00:00Z")) == Self.at("2026-04-05T00:00:00Z"), "02:00 CEST a week later")
    }

    /// 02:00-03:00 shows twice: open through both, five hours from 02:00 CEST to 06:00 CET.
    @Test func fallBackKeepsTheWindowOpenThroughTheRepeatedHour() throws {
        let window = try Self.window("Sun 02:00-06:00 Europe/Berlin")
        #expect(window.nextOpen(atOrAfter: Self.at("2026-10-24T12:00:00Z")) == Self.at("2026-10-25T00:00:00Z"), "02:00 CEST")
        for time in ["2026-10-25T00:59:59Z", "2026-10-25T01:00:00Z", "2026-10-25T04:59:59Z"] {
            #expect(window.contains(Self.at(time)), "\(time)")
        }
        #expect(!window.contains(Self.at("2026-10-25T05:00:00Z")), "06:00 CET")
        #expect(window.closing(after: Self.at("2026-10-25T00:30:00Z")) == Self.at("2026-10-25T05:00:00Z"))
        #expect([window].closing(after: Self.at("2026-10-25T00:30:00Z")) == Self.at("2026-10-25T05:00:00Z"))
    }

    /// A window that ends inside the repeated hour is open twice: 01:00-02:30 CEST, then again
    /// 02:00-02:30 CET, as the clocks show those times twice.
    @Test func aWindowEndingInTheRepeatedHourOpensTwice() throws {
        let window = try Self.window("Sun 01:00-02:30 Europe/Berlin")
        #expect(window.contains(Self.at("2026-10-24T23:00:00Z")), "01:00 CEST")
        #expect(window.contains(Self.at("2026-10-25T00:15:00Z")), "02:15 CEST")
        #expect(!window.contains(Self.at("2026-10-25T00:45:00Z")), "02:45 CEST")
        #expect(window.contains(Self.at("2026-10-25T01:15:00Z")), "02:15 CET")
        #expect(!window.contains(Self.at("2026-10-25T01:30:00Z")), "02:30 CET")
        #expect(window.closing(after: Self.at("2026-10-25T00:15:00Z")) == Self.at("2026-10-25T00:30:00Z"))
        #expect(window.nextOpen(atOrAfter: Self.at("2026-10-25T00:45:00Z")) == Self.at("2026-10-25T01:00:00Z"))
        #expect(window.closing(after: Self.at("2026-10-25T01:00:00Z")) == Self.at("2026-10-25T01:30:00Z"))
    }

    /// A night window across the spring-forward: Saturday 22:00 CET to Sunday 04:00 CEST, five hours.
    @Test func aNightWindowAcrossTheChangeEndsByTheNewClock() throws {
        let window = try Self.window("Sat 22:00-04:00 Europe/Berlin")
        #expect(window.nextOpen(atOrAfter: Self.at("2026-03-28T12:00:00Z")) == Self.at("2026-03-28T21:00:00Z"))
        #expect(window.closing(after: Self.at("2026-03-28T21:30:00Z")) == Self.at("2026-03-29T02:00:00Z"))
    }

    @Test func newYorkSkipsAndRepeatsItsOwnHour() throws {
        let window = try Self.window("Sun 01:00-03:00 America/New_York")
        // March 8: 01:00 EST (06:00 UTC) until the clocks jump from 02:00 to 03:00 EDT (07:00 UTC).
        #expect(window.nextOpen(atOrAfter: Self.at("2026-03-07T12:00:00Z")) == Self.at("2026-03-08T06:00:00Z"))
        #expect(window.closing(after: Self.at("2026-03-08T06:30:00Z")) == Self.at("2026-03-08T07:00:00Z"), "one hour")
        #expect(!window.contains(Self.at("2026-03-08T07:00:00Z")))
        // November 1: 01:00 EDT (05:00 UTC), back to 01:00 EST at 06:00 UTC, until 03:00 EST (08:00 UTC).
        #expect(window.nextOpen(atOrAfter: Self.at("2026-10-31T12:00:00Z")) == Self.at("2026-11-01T05:00:00Z"))
        #expect(window.closing(after: Self.at("2026-11-01T05:30:00Z")) == Self.at("2026-11-01T08:00:00Z"), "three hours")
        #expect([window].nextOpenText(atOrAfter: Self.at("2026-10-31T12:00:00Z")) == "Sun 2026-11-01 01:00 EDT (05:00 UTC)")
    }

    @Test func windowsOfEveryDayInAZoneNeverClose() throws {
        let always = [try Self.window("daily 00:00-24:00 America/New_York")]
        for time in ["2026-03-08T06:30:00Z", "2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z"] {
            #expect(always.isOpen(at: Self.at(time)) && always.closing(after: Self.at(time)) == nil, "\(time)")
        }
    }

    @Test func windowsInSeveralZonesTogether() throws {
        // Saturday 02:00-06:00 in Berlin is 01:00-05:00 UTC in winter; 05:00-07:00 UTC adjoins it.
        let windows = [try Self.window("Sat 02:00-06:00 Europe/Berlin"), try Self.window("Sat 05:00-07:00")]
        #expect(windows.listed == "Sat 02:00-06:00 Europe/Berlin, Sat 05:00-07:00 UTC")
        #expect(windows.closing(after: Self.at("2026-12-12T01:30:00Z")) == Self.at("2026-12-12T07:00:00Z"))
        #expect(windows.sharedZone == .utc)
        #expect(windows.nextOpenText(atOrAfter: Self.at("2026-12-12T08:00:00Z")) == "Sat 2026-12-19 02:00 CET (01:00 UTC)")
    }

    /// A window with a zone is stored with the zone's rule: a rollout resumed on a machine
    /// without that zone still reads it; one written before zones reads as UTC.
    @Test func aZonedWindowIsStoredWithItsRule() throws {
        let policy = RolloutPolicy(maintenanceWindows: [try MaintenanceWindow(
            "Sat 02:00-06:00 Europe/Berlin", zones: TrimmedZones(since: Self.at("2026-12-07T00:00:00Z"))), try Self.window("daily 23:00-01:00")])
        let json = String(decoding: try JSONEncoder().encode(policy), as: UTF8.self)
        #expect(json.contains("\"text\":\"Sat 02:00-06:00 Europe\\/Berlin\"") && json.contains("\"daily 23:00-01:00 UTC\""), "\(json)")
        #expect(json.utf8.count < 1200, "\(json.utf8.count) bytes: \(json)")
        let read = try JSONDecoder().decode(RolloutPolicy.self, from: Data(json.utf8))
        #expect(read == policy)
        #expect(read.maintenanceWindows?.first?.contains(Self.at("2026-12-12T01:30:00Z")) == true)
        let old = try JSONDecoder().decode([MaintenanceWindow].self, from: Data("[\"Sat 02:00-06:00\"]".utf8))
        #expect(old.first?.description == "Sat 02:00-06:00 UTC" && old.first?.zone == .utc)
    }

    struct TrimmedZones: TimeZoneSource {
        var since: Instant
        func rule(named name: String) throws(TimeZoneError) -> TimeZoneRule { try SystemZones().rule(named: name).from(since) }
    }

    @Test func aZoneNobodyKnowsIsAWindowError() {
        do {
            _ = try Self.window("Sat 02:00-06:00 Europe/Atlantis")
            Issue.record("accepted")
        } catch {
            #expect("\(error)".contains("no time zone \"Europe/Atlantis\" in /usr/share/zoneinfo"), "\(error)")
        }
        #expect(throws: MaintenanceWindowError.self) { try MaintenanceWindow("Sat 02:00-06:00 Europe/Berlin") }
    }

    /// The engine blocks outside a zoned window and names the next opening in the window's zone.
    @Test func aRolloutOutsideAZonedWindowNamesTheOpeningInItsZone() throws {
        var harness = try EngineHarness(plan: RolloutEngineTests.plan(), inventory: RolloutEngineTests.inventory,
                                        policy: RolloutPolicy(pollIntervalMilliseconds: 1000,
                                                              maintenanceWindows: [try Self.window("Sat 02:00-06:00 Europe/Berlin")]))
        harness.handle(.start)
        harness.observe()
        guard case .blocked(let reason) = harness.engine.status else {
            Issue.record("expected blocked, got \(harness.engine.status)")
            return
        }
        #expect(reason.contains("outside the maintenance windows (Sat 02:00-06:00 Europe/Berlin); the next opens at Sat 1970-01-03 02:00 CET (01:00 UTC)"),
                "\(reason)")
        #expect(harness.sentRequests.isEmpty)
    }
}
