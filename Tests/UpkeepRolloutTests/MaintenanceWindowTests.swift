import Foundation
import Testing
import UpkeepRollout
import UpkeepCore

@Suite struct MaintenanceWindowTests {
    /// Unix milliseconds of a UTC wall-clock time, through Foundation (an independent calendar).
    static func at(_ text: String) -> Instant {
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = TimeZone(identifier: "UTC")
        guard let date = formatter.date(from: text) else { preconditionFailure("bad time \(text)") }
        return Instant(milliseconds: Int64(date.timeIntervalSince1970 * 1000))
    }

    static func window(_ text: String) throws -> MaintenanceWindow { try MaintenanceWindow(text) }

    @Test func aWeeklyWindowOpensInclusiveAndClosesExclusive() throws {
        let saturday = try Self.window("Sat 02:00-06:00")  // 2026-11-28 is a Saturday
        #expect(!saturday.contains(Self.at("2026-11-28T01:59:59Z")))
        #expect(saturday.contains(Self.at("2026-11-28T02:00:00Z")))
        #expect(saturday.contains(Self.at("2026-11-28T05:59:59Z")))
        #expect(!saturday.contains(Self.at("2026-11-28T06:00:00Z")))
        #expect(!saturday.contains(Self.at("2026-11-29T03:00:00Z")), "Sunday is not in it")
        #expect(saturday.nextOpen(atOrAfter: Self.at("2026-11-28T06:00:00Z")) == Self.at("2026-12-05T02:00:00Z"))
        #expect(saturday.nextOpen(atOrAfter: Self.at("2026-11-28T03:00:00Z")) == Self.at("2026-11-28T03:00:00Z"))
        #expect(saturday.closing(after: Self.at("2026-11-28T03:00:00Z")) == Self.at("2026-11-28T06:00:00Z"))
    }

    @Test func aWindowPastMidnightEndsOnTheNextDay() throws {
        let nights = try Self.window("Mon-Fri 22:00-02:00")
        #expect(nights.contains(Self.at("2026-11-27T23:30:00Z")), "Friday night")
        #expect(nights.contains(Self.at("2026-11-28T01:59:00Z")), "Friday's window runs into Saturday")
        #expect(!nights.contains(Self.at("2026-11-28T22:30:00Z")), "no window opens on Saturday")
        #expect(nights.nextOpen(atOrAfter: Self.at("2026-11-28T02:00:00Z")) == Self.at("2026-11-30T22:00:00Z"))
        #expect(nights.closing(after: Self.at("2026-11-28T01:00:00Z")) == Self.at("2026-11-28T02:00:00Z"))
    }

    @Test func severalWindowsCloseWhenTheLastAdjoiningOrOverlappingOneDoes() throws {
        let windows = [try Self.window("Sat 02:00-04:00"), try Self.window("Sat 03:00-05:00"), try Self.window("Sat 05:00-06:00"),
                       try Self.window("Sat 07:00-08:00")]
        #expect(windows.closing(after: Self.at("2026-11-28T02:30:00Z")) == Self.at("2026-11-28T06:00:00Z"), "overlap, then adjoin")
        #expect(windows.closing(after: Self.at("2026-11-28T07:30:00Z")) == Self.at("2026-11-28T08:00:00Z"))
        #expect(windows.closing(after: Self.at("2026-11-28T06:30:00Z")) == nil, "closed now")
        let weekend = [try Self.window("Sat-Sun 00:00-24:00")]
        #expect(weekend.closing(after: Self.at("2026-11-28T12:00:00Z")) == Self.at("2026-11-30T00:00:00Z"), "Saturday runs into Sunday")
        #expect([MaintenanceWindow]().closing(after: Self.at("2026-11-28T12:00:00Z")) == nil)
    }

    /// The walk along adjoining occurrences once stopped after a fixed number of steps and
    /// reported that moment as the closing time; windows covering the whole week never close.
    @Test func windowsThatCoverTheWholeWeekNeverClose() throws {
        let now = Self.at("2026-11-28T12:00:00Z")
        #expect([try Self.window("daily 00:00-24:00")].closing(after: now) == nil)
        #expect([try Self.window("Mon-Fri 00:00-24:00"), try Self.window("Sat,Sun 00:00-24:00")].closing(after: now) == nil)
        #expect([try Self.window("daily 12:00-24:00"), try Self.window("daily 00:00-12:00")].closing(after: now) == nil)
        // Six whole days and one with a gap: it closes at the gap, five days on.
        let gap = [try Self.window("Sun-Thu 00:00-24:00"), try Self.window("Sat 00:00-24:00"), try Self.window("Fri 00:00-23:00")]
        #expect(gap.closing(after: now) == Self.at("2026-12-04T23:00:00Z"))
    }

    @Test func dayListsRangesThatWrapAndDaily() throws {
        #expect(try Self.window("Sat-Mon 00:00-24:00").days == [5, 6, 0])
        #expect(try Self.window("sat,SUN 01:00-03:00").days == [5, 6])
        let daily = try Self.window("daily 01:00-05:00")
        #expect(daily.days.count == 7 && daily.durationMinutes == 240)
        #expect(daily.nextOpen(atOrAfter: Self.at("2026-11-28T05:00:00Z")) == Self.at("2026-11-29T01:00:00Z"))
        let whole = try Self.window("Sun 00:00-24:00")
        #expect(whole.contains(Self.at("2026-11-29T23:59:59Z")) && !whole.contains(Self.at("2026-11-30T00:00:00Z")))
    }

    @Test(arguments: [
        ("Sat", "expected DAYS HH:MM-HH:MM"),
        ("Someday 02:00-06:00", "is not a day"),
        ("Sat 2:00-06:00", "is not a time HH:MM"),
        ("Sat 02:00-25:00", "is not a time HH:MM"),
        ("Sat 24:00-02:00", "is not a time HH:MM"),
        ("Sat 02:00-02:00", "the window is empty"),
        ("Sat 02:00", "expected a time span"),
    ])
    func badWindowsSayWhatIsWrong(text: String, problem: String) {
        do {
            _ = try MaintenanceWindow(text)
            Issue.record("\(text) was accepted")
        } catch {
            #expect(error.description.contains(problem) && error.description.contains("Sat 02:00-06:00"), "\(error)")
        }
    }

    @Test func windowsTravelAsTheirText() throws {
        let policy = RolloutPolicy(maintenanceWindows: [try Self.window("Sat 02:00-06:00"), try Self.window("daily 23:00-01:00")])
        let json = String(decoding: try JSONEncoder().encode(policy), as: UTF8.self)
        #expect(json.contains("\"maintenanceWindows\":[\"Sat 02:00-06:00 UTC\",\"daily 23:00-01:00 UTC\"]"), "\(json)")
        #expect(try JSONDecoder().decode(RolloutPolicy.self, from: Data(json.utf8)) == policy)
        // A policy stored before windows existed still reads.
        let old = json.replacingOccurrences(of: ",\"maintenanceWindows\":[\"Sat 02:00-06:00 UTC\",\"daily 23:00-01:00 UTC\"]", with: "")
            .replacingOccurrences(of: "\"maintenanceWindows\":[\"Sat 02:00-06:00 UTC\",\"daily 23:00-01:00 UTC\"],", with: "")
        #expect(try JSONDecoder().decode(RolloutPolicy.self, from: Data(old.utf8)).maintenanceWindows == nil, "\(old)")
    }

    @Test func theClockTextMatchesFoundationsCalendar() {
        #expect(MaintenanceWindowClock.text(Self.at("2026-11-28T02:00:00Z")) == "Sat 2026-11-28 02:00 UTC")
        #expect(MaintenanceWindowClock.text(Self.at("2024-02-29T23:59:00Z")) == "Thu 2024-02-29 23:59 UTC")
        #expect(MaintenanceWindowClock.text(Instant(milliseconds: 0)) == "Thu 1970-01-01 00:00 UTC")
    }

    // MARK: - The engine

    /// 1970-01-01 (the harness's clock starts at 0) was a Thursday.
    static func policy(_ window: String) throws -> RolloutPolicy {
        RolloutPolicy(pollIntervalMilliseconds: 1000, maintenanceWindows: [try Self.window(window)])
    }

    /// A rollout whose server wave ran inside `Thu 00:00-00:05`, and whose next wave came due
    /// after the window closed.
    static func closedBeforeTheSecondWave() throws -> EngineHarness {
        var harness = try EngineHarness(plan: RolloutEngineTests.plan(), inventory: RolloutEngineTests.inventory,
                                        policy: try Self.policy("Thu 00:00-00:05"))
        harness.handle(.start)
        harness.observe()
        // The server's wave starts inside the window and finishes; then the window closes.
        harness.runHealthy { $0.sentRequests.contains { $0.node == "server-1" && $0.command.name == "commit" } }
        harness.runHealthy(rounds: 10) { $0.engine.unansweredRequests.isEmpty }
        harness.advance(seconds: 600)
        harness.runHealthy(rounds: 20)
        return harness
    }

    @Test func aWaveDueAfterTheWindowClosedBlocksUntilResumedInTheNextOne() throws {
        var harness = try Self.closedBeforeTheSecondWave()
        guard case .blocked(let reason) = harness.engine.status else {
            Issue.record("expected blocked, got \(harness.engine.status)")
            return
        }
        #expect(reason.contains("outside the maintenance windows (Thu 00:00-00:05 UTC); the next opens at Thu 1970-01-08 00:00 UTC"), "\(reason)")
        #expect(!harness.sentRequests.contains { $0.node.hasPrefix("agent-") && $0.command.name != "stage" },
                "no agent node was touched outside the window: \(harness.sentRequests.map { "\($0.node) \($0.command.name)" })")
        #expect(harness.engine.cordonedByUpkeep.isEmpty)

        // Resumed outside again: blocked again at once. Resumed in next week's window: it finishes.
        harness.handle(.resume)
        harness.observe()
        guard case .blocked = harness.engine.status else {
            Issue.record("resumed outside the window, expected blocked, got \(harness.engine.status)")
            return
        }
        harness.now = Self.at("1970-01-08T00:01:00Z")
        harness.handle(.resume)
        harness.observe()
        harness.runHealthy()
        #expect(harness.outcome == .completed)
    }

    /// A window never traps a rollout: resumed with the windows of another configuration, it
    /// keeps those (and says so); resumed with none (`--ignore-window`), it finishes now.
    @Test func aResumedRolloutTakesTheWindowsItIsResumedWith() throws {
        var harness = try EngineHarness(plan: RolloutEngineTests.plan(), inventory: RolloutEngineTests.inventory,
                                        policy: try Self.policy("Sat 02:00-06:00"))
        harness.handle(.start)
        harness.observe()
        guard case .blocked(let reason) = harness.engine.status else {
            Issue.record("expected blocked, got \(harness.engine.status)")
            return
        }
        #expect(reason.contains("`upkeep resume --ignore-window` now"), "\(reason)")
        // Another configuration's window, closed now too: kept, said, and it blocks naming it.
        harness.handle(.setMaintenanceWindows([try Self.window("Sun 01:00-02:00")]))
        #expect(harness.notices.contains { $0.contains("maintenance windows from now on: Sun 01:00-02:00 UTC (were: Sat 02:00-06:00 UTC)") },
                "\(harness.notices)")
        #expect(harness.engine.policy.maintenanceWindows?.listed == "Sun 01:00-02:00 UTC")
        harness.handle(.resume)
        harness.observe()
        guard case .blocked(let again) = harness.engine.status else {
            Issue.record("expected blocked by the new window, got \(harness.engine.status)")
            return
        }
        #expect(again.contains("(Sun 01:00-02:00 UTC)") && !again.contains("Sat"), "\(again)")
        #expect(harness.sentRequests.isEmpty)
        // The same windows again: nothing to say.
        let said = harness.notices.count
        harness.handle(.setMaintenanceWindows([try Self.window("Sun 01:00-02:00")]))
        #expect(harness.notices.count == said)
        // --ignore-window: none from now on; it runs to the end.
        harness.handle(.setMaintenanceWindows(nil))
        harness.handle(.resume)
        harness.observe()
        harness.runHealthy()
        #expect(harness.outcome == .completed)
    }

    @Test func aRolloutStartedOutsideItsWindowsTouchesNothing() throws {
        var harness = try EngineHarness(plan: RolloutEngineTests.plan(), inventory: RolloutEngineTests.inventory,
                                        policy: try Self.policy("Sat 02:00-06:00"))
        harness.handle(.start)
        harness.observe()
        guard case .blocked(let reason) = harness.engine.status else {
            Issue.record("expected blocked, got \(harness.engine.status)")
            return
        }
        #expect(reason.contains("the next opens at Sat 1970-01-03 02:00 UTC"), "\(reason)")
        #expect(harness.sentRequests.isEmpty, "\(harness.sentRequests.map(\.operationID))")
    }
}
