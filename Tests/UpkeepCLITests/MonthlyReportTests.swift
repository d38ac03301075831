import Foundation
import Testing
@testable import UpkeepCLI
import UpkeepRollout
import UpkeepRuntimeTestSupport
import UpkeepStore
import UpkeepTestSupport
import UpkeepCore
import UpkeepPOSIX

/// `upkeep report --monthly` as the built binary writes it, over a state database holding a
/// month of history written through the store's own API (rollouts driven through the real
/// engine, GitOps updates, maintenance periods, backups) with records just outside the month
/// on both sides; the PDF read back by poppler's `pdfinfo`, `pdftotext` and `pdftoppm`, the HTML
/// by an XML parser.
@Suite struct MonthlyReportTests {
    /// 2026-11-`day` at `hour`:`minute` UTC.
    static func at(_ day: Int, _ hour: Int, _ minute: Int = 0, month: Int = 11) -> Instant {
        Instant(milliseconds: (CivilDate.days(year: 2026, month: Int64(month), day: Int64(day)) * 86_400 + Int64(hour * 3600 + minute * 60)) * 1000)
    }

    static let hostile = "<script>alert(\"x\")</script> & 'quoted' (paren) \\ back"
    static let alice = OperationStamp(.apply, by: Initiator(user: "alice", host: "ctl1"))

    /// Five rollouts in November 2026 (one rolled back), one on 31 October at 23:30 UTC and
    /// one on 30 November at 23:00 UTC (in November in UTC, in December in Berlin), one in
    /// December; two GitOps updates (one reverted), maintenance periods, backups.
    static func recordedState(_ directory: TemporaryDirectory) throws -> String {
        let store = try StateStore(stateDirectory: directory.file("state"))
        var failing = RolloutFixtures.world()
        failing.failingInstalls["agent-2"] = RolloutFixtures.target
        let rollouts: [(String, Instant, Int64, WorldModel)] = [
            ("r-oct31", at(31, 23, 30, month: 10), 1_000, RolloutFixtures.world()),
            ("r-nov02", at(2, 10), 3_000, RolloutFixtures.world()),
            ("r-nov09", at(9, 14), 2_000, failing),
            ("r-nov16", at(16, 9), 6_000, RolloutFixtures.world()),
            ("r-nov23", at(23, 22), 1_500, RolloutFixtures.world()),
            ("r-nov30", at(30, 23), 500, RolloutFixtures.world()),
            ("r-dec02", at(2, 8, month: 12), 500, RolloutFixtures.world()),
        ]
        for (id, start, step, world) in rollouts {
            try RolloutFixtures.record(try RolloutFixtures.engine(id, world: world), world: world, in: store, start: start, stepMilliseconds: step,
                                       stamp: alice)
        }
        try store.saveComponentUpdate(ComponentUpdateRecord(id: "u-longhorn-1", component: "longhorn", from: "1.7.2", to: "1.8.1",
                                                            repository: "git@example:fleet", file: "infra/longhorn.yaml", startedAt: at(5, 10),
                                                            finishedAt: at(5, 10, 7), commit: "abc", outcome: .completed, message: "healthy"))
        try store.saveComponentUpdate(ComponentUpdateRecord(id: "u-flux-1", component: "flux", from: "v2.3.0", to: "v2.4.0",
                                                            repository: "git@example:fleet", file: "flux-system/gotk-components.yaml",
                                                            startedAt: at(18, 11), finishedAt: at(18, 11, 12), commit: "def", revertCommit: "fed",
                                                            outcome: .reverted, message: "kustomize-controller not Ready: \(hostile)"))
        try store.recordOperation(OperationStamp(.update, by: Initiator(user: "bob", host: "ctl1")), subject: "u-flux-1", now: at(18, 11))
        try store.saveMaintenancePeriod(MaintenancePeriod(id: "m-oct31", state: .ended, since: at(31, 23, month: 10), reason: "network work",
                                                          by: "alice@ctl1", rollout: nil, suspended: [], alreadySuspended: [], endedAt: at(1, 1),
                                                          endedBy: "alice@ctl1"))
        try store.saveMaintenancePeriod(MaintenancePeriod(id: "m-nov09", state: .ended, since: at(9, 13, 30), reason: hostile, by: "alice@ctl1",
                                                          rollout: "r-nov09", suspended: ["Kustomization/flux-system/apps"], alreadySuspended: [],
                                                          endedAt: at(9, 15, 0), endedBy: "alice@ctl1"))
        for (id, taken, rollout) in [("b-oct", at(20, 3, month: 10), nil), ("b-nov02", at(2, 9, 59), "r-nov02"), ("b-nov20", at(20, 3), nil)] {
            try store.recordBackup(BackupRecord(id: id, rolloutID: rollout, takenAt: taken, node: "server-1", format: "etcd-snapshot",
                                                agentFile: "on-demand-\(id)", path: directory.file("state/backups/\(id).upkeep-backup"),
                                                bytes: 5 << 20, sha256: String(repeating: "cd", count: 32), hop: rollout == nil ? nil : 1,
                                                kind: rollout == nil ? .manual : .hop))
        }
        return try directory.write("stateDir: state\n", to: "upkeep.yaml")
    }

    static func json(_ config: String, _ extra: [String] = []) throws -> [String: Any] {
        let result = try UpkeepBinary.run(["report", "--monthly", "--month", "2026-11", "-o", "json", "--config", config] + extra)
        #expect(result.status == 0, "\(result.error)")
        return try #require(try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any])
    }

    static func sha256(_ path: String) throws -> String {
        guard FileManager.default.fileExists(atPath: path) else { return "absent" }
        return try openssl(["dgst", "-sha256", "-r", path]).output
    }

    /// `pdfinfo FILE` as field → value.
    static func pdfinfo(_ file: String) throws -> [String: String] {
        let info = try runProcess("pdfinfo", [file])
        #expect(info.status == 0 && info.error.isEmpty, "pdfinfo: \(info.error)")
        var fields: [String: String] = [:]
        for line in info.output.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return fields
    }

    @Test func theMonthHoldsWhatBeganInItWithOutcomesDurationsNodesMaintenanceRollbacksAndBackups() throws {
        let directory = try TemporaryDirectory()
        let config = try Self.recordedState(directory)
        let report = try Self.json(config)
        #expect(report["month"] as? String == "2026-11" && report["timeZone"] as? String == "UTC")
        let rollouts = try #require(report["rollouts"] as? [[String: Any]])
        #expect(rollouts.map { $0["id"] as? String } == ["r-nov02", "r-nov09", "r-nov16", "r-nov23", "r-nov30"])
        #expect(rollouts.map { $0["outcome"] as? String } == ["completed", "rolled back", "completed", "completed", "completed"])
        #expect(rollouts.allSatisfy { ($0["durationSeconds"] as? Int ?? 0) > 0 && ($0["nodes"] as? [String])?.isEmpty == false })
        let durations = rollouts.compactMap { $0["durationSeconds"] as? Int }
        #expect(durations[2] > durations[0] && durations[0] > durations[4], "the slower recordings take longer: \(durations)")
        let updates = try #require(report["updates"] as? [[String: Any]])
        #expect(updates.map { $0["id"] as? String } == ["u-longhorn-1", "u-flux-1"])
        #expect(updates.map { $0["durationSeconds"] as? Int } == [420, 720])
        #expect(updates.last?["by"] as? String == "bob@ctl1")
        let totals = try #require(report["totals"] as? [String: Any])
        #expect(totals["rollouts"] as? Int == 5 && totals["updates"] as? Int == 2)
        // 5 completed of 7 finished (4 rollouts and the Longhorn update; a rollback and a revert failed).
        #expect(totals["successPercent"] as? Int == 5 * 100 / 7)
        #expect(totals["backups"] as? Int == 2 && totals["backupBytes"] as? Int == 10 << 20)
        // 1 h of the period that crossed into the month, 1 h 30 min of the one inside it.
        #expect(totals["maintenanceSeconds"] as? Int == 3600 + 5400, "\(totals)")
        let rollbacks = try #require(report["rollbacks"] as? [[String: Any]])
        #expect(rollbacks.map { $0["subject"] as? String } == ["r-nov09", "u-flux-1"])
        #expect(rollbacks.map { $0["kind"] as? String } == ["automatic", "git revert"])
        #expect((rollbacks.first?["cause"] as? String)?.contains("agent-2") == true, "\(rollbacks)")
        let nodes = try #require(report["nodes"] as? [[String: Any]])
        #expect(Set(nodes.compactMap { $0["node"] as? String }) == ["server-1", "agent-1", "agent-2"])
        #expect(nodes.first { $0["node"] as? String == "agent-2" }?["failedSteps"] as? Int == 1)
        let weeks = try #require(report["weeks"] as? [[String: Any]])
        #expect(weeks.map { $0["days"] as? String } == ["1–7", "8–14", "15–21", "22–28", "29–30"])
        #expect(weeks.map { $0["succeeded"] as? Int } == [2, 0, 1, 1, 1] && weeks.map { $0["failed"] as? Int } == [0, 1, 1, 0, 0])
    }

    /// A rollout an operator started with `upkeep rollback` and a hop restored from its snapshot
    /// count as rollbacks, each with who did it.
    @Test func rollbacksOperatorsAskedForAreListedWithWhoAskedAndRestoresWithTheirMoment() throws {
        let directory = try TemporaryDirectory()
        let store = try StateStore(stateDirectory: directory.file("state"))
        try RolloutFixtures.record(try RolloutFixtures.engine("r-apply"), world: RolloutFixtures.world(), in: store, start: Self.at(3, 10),
                                   stamp: Self.alice)
        try store.recordOperation(OperationStamp(.restore, by: Initiator(user: "root", sudoUser: "carol", host: "ctl1")), subject: "r-apply",
                                  now: Self.at(4, 8))
        try RolloutFixtures.record(try RolloutFixtures.engine("r-back"), world: RolloutFixtures.world(), in: store, start: Self.at(6, 10),
                                   stamp: OperationStamp(.rollback, by: Initiator(user: "dave", host: "ctl2")))
        let config = try directory.write("stateDir: state\n", to: "upkeep.yaml")
        let report = try Self.json(config)
        let rollbacks = try #require(report["rollbacks"] as? [[String: Any]])
        #expect(rollbacks.map { $0["kind"] as? String } == ["restore", "operator"], "\(rollbacks)")
        #expect(rollbacks.map { $0["subject"] as? String } == ["r-apply", "r-back"])
        #expect((rollbacks.first?["cause"] as? String)?.contains("root (sudo by carol)@ctl1") == true, "\(rollbacks)")
        #expect((rollbacks.last?["cause"] as? String)?.contains("dave@ctl2") == true, "\(rollbacks)")
        #expect((rollbacks.first?["at"] as? Int).map(Int64.init) == Self.at(4, 8).milliseconds)
        let rollouts = try #require(report["rollouts"] as? [[String: Any]])
        #expect(rollouts.map { $0["kind"] as? String } == ["apply", "rollback"])
        let markdown = try UpkeepBinary.run(["report", "--month", "2026-11", "--config", config]).output
        #expect(markdown.contains("| r-back (rollback) |") && markdown.contains("| Rollbacks | 2 |"), "\(markdown)")
    }

    /// The month follows the zone's calendar: in Berlin (UTC+1 in November) 31 October 23:30
    /// UTC is 1 November, and 30 November 23:00 UTC is 1 December.
    @Test func monthBoundariesFollowTheTimeZoneAsked() throws {
        let directory = try TemporaryDirectory()
        let config = try Self.recordedState(directory)
        let berlin = try Self.json(config, ["--time-zone", "Europe/Berlin"])
        #expect(berlin["timeZone"] as? String == "Europe/Berlin")
        let ids = (berlin["rollouts"] as? [[String: Any]])?.compactMap { $0["id"] as? String }
        #expect(ids == ["r-oct31", "r-nov02", "r-nov09", "r-nov16", "r-nov23"], "\(ids ?? [])")
        #expect((berlin["start"] as? Int).map(Int64.init) == Self.at(31, 23, month: 10).milliseconds)
        let unknown = try UpkeepBinary.run(["report", "--monthly", "--time-zone", "Mars/Olympus", "--config", config])
        #expect(unknown.status == 2 && unknown.error.contains("Mars/Olympus"), "\(unknown.error)")
    }

    @Test func theDefaultIsTheLastCompleteMonth() throws {
        let directory = try TemporaryDirectory()
        let config = try Self.recordedState(directory)
        let result = try UpkeepBinary.run(["report", "--monthly", "-o", "json", "--config", config])
        #expect(result.status == 0, "\(result.error)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any])
        #expect(report["month"] as? String == ReportMonth.lastComplete(at: .wallClockNow(), zone: .utc).description)
    }

    @Test func markdownAndJSONCarryTheSameFigures() throws {
        let directory = try TemporaryDirectory()
        let config = try Self.recordedState(directory)
        let report = try Self.json(config)
        let result = try UpkeepBinary.run(["report", "--monthly", "--month", "2026-11", "--config", config])
        #expect(result.status == 0, "\(result.error)")
        let markdown = result.output
        #expect(markdown.hasPrefix("# Upkeep monthly report: November 2026\n"), "\(markdown.prefix(200))")
        let totals = try #require(report["totals"] as? [String: Any])
        #expect(markdown.contains("| Rollouts | 5 (4 completed, 1 rolled back) |"), "\(markdown)")
        #expect(markdown.contains("| GitOps updates | 2 (1 completed, 1 reverted) |"), "\(markdown)")
        #expect(markdown.contains("| Success | \(totals["successPercent"] as? Int ?? -1) % of finished rollouts and updates |"))
        #expect(markdown.contains("| Maintenance mode | \(RolloutReport.clock(totals["maintenanceSeconds"] as? Int ?? 0)) in 2 periods |"))
        for rollout in try #require(report["rollouts"] as? [[String: Any]]) {
            let id = try #require(rollout["id"] as? String)
            let took = RolloutReport.clock(try #require(rollout["durationSeconds"] as? Int))
            let row = try #require(markdown.split(separator: "\n").first { $0.hasPrefix("| \(id) |") }, "no row for \(id)")
            #expect(row.contains("| \(took) |"), "\(row)")
            #expect(markdown.contains("\(id)  ") && markdown.contains(" \(took) (\(rollout["outcome"] as? String ?? "")"), "the chart names \(id)")
        }
        for update in try #require(report["updates"] as? [[String: Any]]) {
            let took = RolloutReport.clock(try #require(update["durationSeconds"] as? Int))
            #expect(markdown.contains("| \(update["id"] as? String ?? "") | \(update["component"] as? String ?? "") |") && markdown.contains(took))
        }
        #expect(markdown.contains("| 8–14 | 0 | 1 | 0 |"), "\(markdown)")
        #expect(markdown.contains("| r-nov09 | ") && markdown.contains("| automatic |"))
    }

    @Test func thePDFIsLaidOutForA4AndLetterAndReadsBack() throws {
        let directory = try TemporaryDirectory()
        let config = try Self.recordedState(directory)
        let report = try Self.json(config)
        for (paper, size) in [("a4", "595 x 842 pts (A4)"), ("letter", "612 x 792 pts (letter)")] {
            let file = directory.file("report-\(paper).pdf")
            let written = try UpkeepBinary.run(["report", "--monthly", "--month", "2026-11", "-o", "pdf", "--paper", paper, "--output", file,
                                                "--config", config])
            #expect(written.status == 0 && written.output == "wrote \(file)\n", "\(written.output)\(written.error)")
            let info = try Self.pdfinfo(file)
            #expect(info["Page size"] == size && info["PDF version"] == "1.4", "\(info)")
            #expect(info["Title"] == "Upkeep monthly report: November 2026" && info["Producer"] == "Upkeep", "\(info)")
            let pages = try #require(info["Pages"].flatMap { Int($0) })
            let text = try runProcess("pdftotext", ["-layout", file, "-"])
            #expect(text.status == 0 && text.error.isEmpty, "pdftotext: \(text.error)")
            #expect(text.output.contains("Upkeep monthly report: November 2026") && text.output.contains("Upkeep monthly report 2026-11"))
            #expect(text.output.contains("Page \(pages) of \(pages)"), "the footer counts \(pages) pages")
            for rollout in try #require(report["rollouts"] as? [[String: Any]]) {
                let id = try #require(rollout["id"] as? String)
                #expect(text.output.contains(id), "\(id) in the PDF")
                #expect(text.output.contains(RolloutReport.clock(try #require(rollout["durationSeconds"] as? Int))))
            }
            // Words a table cell may wrap between are looked for one by one.
            for word in ["completed", "rolled back", "u-flux-1", "reverted", "Rollout durations", "Success per week", "days 8–14", "b-nov20",
                         "Rollbacks and their causes", "Maintenance mode", "2h 30m 00s", "->", "v1.31.4+k3s1", "<script>alert(\"x\")</script>",
                         "'quoted'", "(paren)", " \\ "] {
                #expect(text.output.contains(word), "\(word) in the PDF text")
            }
            let render = try runProcess("pdftoppm", ["-png", "-r", "50", "-f", "1", "-l", "1", file, directory.file("page-\(paper)")])
            #expect(render.status == 0 && render.error.isEmpty, "pdftoppm: \(render.error)")
            let png = try #require(FileManager.default.contentsOfDirectory(atPath: directory.path).first { $0.hasPrefix("page-\(paper)") })
            let image = try Data(contentsOf: URL(fileURLWithPath: directory.file(png)))
            #expect(image.prefix(4) == Data([0x89, 0x50, 0x4E, 0x47]))
            // `swift test --attachments-path DIR` keeps the page to look at.
            Attachment.record(Array(image), named: "monthly-report-\(paper)-page-1.png")
        }
    }

    @Test func theHTMLIsOneWellFormedPageWithEveryNameEscaped() throws {
        let directory = try TemporaryDirectory()
        let config = try Self.recordedState(directory)
        let file = directory.file("report.html")
        let written = try UpkeepBinary.run(["report", "--monthly", "--month", "2026-11", "-o", "html", "--output", file, "--config", config])
        #expect(written.status == 0, "\(written.error)")
        let html = try String(contentsOfFile: file, encoding: .utf8)
        // Python's XML parser is strict: a tag left open or a bare & fails it.
        let parse = try runProcess("python3", ["-c", """
            import sys, xml.etree.ElementTree as ET
            root = ET.parse(sys.argv[1]).getroot()
            ns = '{http://www.w3.org/2000/svg}'
            print(len(root.findall('.//' + ns + 'svg')), len(root.findall('.//table')), len(root.findall('.//script')))
            print(''.join(root.itertext()))
            """, file])
        #expect(parse.status == 0, "not well formed: \(parse.error)")
        #expect(parse.output.hasPrefix("2 7 0\n"), "two charts, the facts and six tables, no script: \(parse.output.prefix(40))")
        #expect(parse.output.contains(Self.hostile), "the hostile reason reads back as written")
        #expect(!html.contains("<script") && html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;quoted&#39;"))
        #expect(!html.contains("src=") && !html.contains("<link") && !html.contains("url("), "nothing loaded from elsewhere")
    }

    @Test func anEmptyMonthIsAValidReportSayingSo() throws {
        let directory = try TemporaryDirectory()
        let config = try Self.recordedState(directory)
        let markdown = try UpkeepBinary.run(["report", "--monthly", "--month", "2026-06", "--config", config])
        #expect(markdown.status == 0 && markdown.output.contains("Nothing was recorded in June 2026"), "\(markdown.output)\(markdown.error)")
        let file = directory.file("empty.pdf")
        let pdf = try UpkeepBinary.run(["report", "--month", "2026-06", "-o", "pdf", "--output", file, "--config", config])
        #expect(pdf.status == 0, "\(pdf.error)")
        #expect(try Self.pdfinfo(file)["Pages"] == "1")
        #expect(try runProcess("pdftotext", [file, "-"]).output.contains("Nothing was recorded in June 2026"))
        let html = directory.file("empty.html")
        #expect(try UpkeepBinary.run(["report", "--month", "2026-06", "-o", "html", "--output", html, "--config", config]).status == 0)
        #expect(try runProcess("python3", ["-c", "import sys, xml.etree.ElementTree as ET; ET.parse(sys.argv[1])", html]).status == 0)
        let fresh = try directory.write("stateDir: fresh\n", to: "fresh.yaml")
        let json = try UpkeepBinary.run(["report", "--monthly", "--month", "2026-11", "-o", "json", "--config", fresh])
        let totals = (try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any])?["totals"] as? [String: Any]
        #expect(json.status == 0 && totals?["rollouts"] as? Int == 0 && totals?["backups"] as? Int == 0, "\(json.output)\(json.error)")
        #expect(!FileManager.default.fileExists(atPath: directory.file("fresh/upkeep.db")), "a report creates no database")
    }

    @Test func theReportNeverWritesTheStateDatabase() throws {
        let directory = try TemporaryDirectory()
        let config = try Self.recordedState(directory)
        let database = directory.file("state/upkeep.db")
        let before = try Self.sha256(database)
        for format in ["markdown", "json", "html", "pdf"] {
            let result = try UpkeepBinary.run(["report", "--monthly", "--month", "2026-11", "-o", format, "--output", directory.file("r.\(format)"),
                                               "--config", config])
            #expect(result.status == 0, "\(format): \(result.error)")
        }
        #expect(try Self.sha256(database) == before)
        // A reader of a database in WAL mode may create the log and its index, never write to the log.
        let log = (try? FileManager.default.attributesOfItem(atPath: database + "-wal"))?[.size] as? Int ?? 0
        #expect(log == 0, "nothing written to the write-ahead log")
    }

    @Test func badInputIsAUsageError() throws {
        let directory = try TemporaryDirectory()
        let config = try Self.recordedState(directory)
        for month in ["2026-13", "2026-1", "nov", "2026-11-01", "1969-12", "２０２６-11"] {
            let result = try UpkeepBinary.run(["report", "--monthly", "--month", month, "--config", config])
            #expect(result.status == 2 && result.error.contains("--month \(month): write a calendar month as YYYY-MM"), "\(month): \(result.error)")
        }
        let future = try UpkeepBinary.run(["report", "--month", "2999-01", "--config", config])
        #expect(future.status == 2 && future.error.contains("has not begun"), "\(future.error)")
        let withID = try UpkeepBinary.run(["report", "r-nov02", "--monthly", "--config", config])
        #expect(withID.status == 2 && withID.error.contains("leave out the rollout id"), "\(withID.error)")
        let pdfOfRollout = try UpkeepBinary.run(["report", "r-nov02", "-o", "pdf", "--config", config])
        #expect(pdfOfRollout.status == 2 && pdfOfRollout.error.contains("add --monthly"), "\(pdfOfRollout.error)")
        let paper = try UpkeepBinary.run(["report", "--monthly", "--paper", "letter", "--config", config])
        #expect(paper.status == 2 && paper.error.contains("--paper is for --format pdf"), "\(paper.error)")
        let badPaper = try UpkeepBinary.run(["report", "--monthly", "-o", "pdf", "--paper", "a5", "--output", directory.file("x.pdf"), "--config", config])
        #expect(badPaper.status == 2, "\(badPaper.error)")
    }
}

/// The PDF writer's own rules, read back by poppler.
@Suite struct PDFWriterTests {
    @Test func stringsAreEscapedAndEncodedForTheStandardFonts() {
        #expect(PDFText.literal("a (b) \\ c") == "(a \\(b\\) \\\\ c)")
        #expect(PDFText.literal("é – → ✓") == "(\\351 \\226 -> ?)")
        #expect(PDFText.literal("line\nbreak") == "(line break)")
        #expect(PDFDocument.number(12) == "12" && PDFDocument.number(12.5) == "12.5" && PDFDocument.number(-0.05) == "-0.05")
        #expect(PDFDocument.number(3.14159) == "3.14" && PDFDocument.number(1e9) == "1000000000")
        #expect(PDFDocument.textString("Ab") == "<FEFF00410062>")
        #expect(PDFFont.regular.width("Hello", size: 10) == 22.78 && PDFFont.bold.width("i", size: 10) == 2.78)
    }

    /// Every cross-reference entry points at its object's first byte, and `startxref` at the table.
    @Test func theCrossReferenceTableHoldsEachObjectsOffset() throws {
        var page = PDFPage()
        page.text("one", x: 10, y: 10, size: 9)
        var document = PDFDocument(width: 595, height: 842)
        document.add(page)
        document.add(PDFPage())
        let bytes = document.bytes(title: "t", created: Instant(milliseconds: 0))
        let text = String(decoding: bytes, as: UTF8.self)
        let tail = try #require(text.components(separatedBy: "startxref\n").last)
        let xref = try #require(Int(tail.split(separator: "\n").first ?? ""))
        #expect(Array(bytes[xref..<xref + 5]) == Array("xref\n".utf8))
        let entries = String(decoding: bytes[xref...], as: UTF8.self).split(separator: "\n").dropFirst(3).prefix { $0.hasSuffix(" n ") }
        #expect(entries.count == 9, "catalog, pages, two fonts, information, two pages and their contents")
        for (index, entry) in entries.enumerated() {
            #expect(entry.utf8.count == 19, "20 bytes with the newline")
            let offset = try #require(Int(entry.prefix(10)))
            #expect(String(decoding: bytes[offset..<offset + 8], as: UTF8.self).hasPrefix("\(index + 1) 0 obj"), "object \(index + 1)")
        }
    }

    /// A table longer than a page continues on the next with its header again; poppler counts
    /// the pages and reads every row.
    @Test func aLongTableBreaksAcrossPagesWithItsHeaderRepeated() throws {
        var flow = PDFFlow(paper: .letter)
        flow.heading("Many rows", size: 12)
        flow.table(["Row", "Text"], (1...200).map { ["row-\($0)", "a long cell that wraps " + String(repeating: "word ", count: $0 % 30)] })
        let bytes = flow.document(footer: "footer").bytes(title: "rows", created: Instant(milliseconds: 0))
        let directory = try TemporaryDirectory()
        let file = directory.file("rows.pdf")
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        let pages = try #require(try MonthlyReportTests.pdfinfo(file)["Pages"].flatMap { Int($0) })
        #expect(pages > 3)
        let text = try runProcess("pdftotext", [file, "-"]).output
        for row in [1, 57, 200] { #expect(text.contains("row-\(row)\n") || text.contains("row-\(row) "), "row-\(row)") }
        #expect(text.components(separatedBy: "Row").count - 1 == pages, "the header on each of \(pages) pages")
        #expect(text.contains("Page \(pages) of \(pages)"))
    }

    /// Short columns keep their width; the long ones split what is left.
    @Test func columnsShareTheWidthMaxMinFair() {
        #expect(PDFFlow.share(100, [10, 200, 30, 300]) == [10, 30, 30, 30])
        #expect(PDFFlow.share(100, [10, 20]) == [10, 20])
        #expect(PDFFlow.share(90, [100, 100, 100]) == [30, 30, 30])
    }

    @Test func aMonthIsParsedStrictlyAndSpansItsZonesCalendar() {
        #expect(ReportMonth("2026-11") == ReportMonth(year: 2026, month: 11) && ReportMonth("2026-00") == nil && ReportMonth("+202-11") == nil)
        #expect(ReportMonth(year: 2028, month: 2).days == 29 && ReportMonth(year: 2026, month: 2).days == 28)
        #expect(ReportMonth(year: 2026, month: 12).next == ReportMonth(year: 2027, month: 1))
        let span = ReportMonth(year: 2026, month: 11).span(zone: .utc)
        #expect(span.start == MonthlyReportTests.at(1, 0) && span.end == MonthlyReportTests.at(1, 0, month: 12))
        #expect(ReportMonth.lastComplete(at: MonthlyReportTests.at(1, 0, month: 12), zone: .utc) == ReportMonth(year: 2026, month: 11))
    }
}
