import UpkeepCore
import UpkeepStore

/// The monthly report laid out as Markdown, a self-contained HTML page (inline CSS, SVG charts)
/// or a PDF for A4 or Letter paper. Each shows `MonthlyReport`'s figures and nothing else. Pure.
extension MonthlyReport {
    var heading: String { "Upkeep monthly report: \(title)" }

    // MARK: - Markdown

    var markdown: String {
        var text = "# \(heading)\n\n" + RolloutReport.table(["", ""], facts.map { [$0.0, $0.1] }) + "\n"
        if truncated { text += "**\(truncatedText)**\n\n" }
        if isEmpty { return text + emptyText + "\n" }
        text += "## Rollout durations\n\n"
        let finished = rollouts.filter { $0.durationSeconds != nil }
        if finished.isEmpty {
            text += "No rollout finished in the month.\n\n"
        } else {
            let longest = max(finished.compactMap(\.durationSeconds).max() ?? 1, 1)
            let idWidth = finished.map(\.id.count).max() ?? 0
            text += "```text\n" + finished.map { rollout in
                let seconds = rollout.durationSeconds ?? 0
                let bar = String(repeating: "█", count: max(1, seconds * 40 / longest))
                return rollout.id + String(repeating: " ", count: idWidth - rollout.id.count) + "  \(bar) \(RolloutReport.clock(seconds)) (\(rollout.outcome))\n"
            }.joined() + "```\n\n"
        }
        text += "## Success per week\n\n" + RolloutReport.table(["Days", "Succeeded", "Failed, rolled back or reverted", "Unfinished", ""], weeks.map { week in
            ["\(week.days)", "\(week.succeeded)", "\(week.failed)", "\(week.unfinished)",
             String(repeating: "█", count: week.succeeded) + String(repeating: "░", count: week.failed) + String(repeating: "·", count: week.unfinished)]
        }) + "\n"
        for section in sections { text += "## \(section.title)\n\n" + RolloutReport.table(section.table.header, section.table.rows) + "\n" }
        return text
    }

    // MARK: - HTML

    /// One HTML page: no script, no external resource; every recorded text escaped.
    var html: String {
        let escape = HTMLText.escape
        var body = "<h1>\(escape(heading))</h1>\n" + HTMLText.table(nil, facts.map { [$0.0, $0.1] }, className: "facts")
        if truncated { body += "<p class=\"warning\">\(escape(truncatedText))</p>\n" }
        if isEmpty {
            body += "<p class=\"empty\">\(escape(emptyText))</p>\n"
        } else {
            for chart in [ReportChart.durations(rollouts, width: 640), ReportChart.weeks(weeks, width: 640)] {
                body += "<figure>\n<figcaption>\(escape(chart.title))</figcaption>\n" + (chart.shapes.isEmpty ? "" : chart.svg + "\n")
                    + (chart.caption.map { "<p class=\"caption\">\(escape($0))</p>\n" } ?? "") + "</figure>\n"
            }
            for section in sections {
                body += "<h2>\(escape(section.title))</h2>\n" + HTMLText.table(section.table.header, section.table.rows, className: "rows")
            }
        }
        body += "<p class=\"footer\">Made by Upkeep from its state database at \(escape(generatedAt.utcDescription)).</p>\n"
        return """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8"/>
            <title>\(escape(heading))</title>
            <style>
            body { font-family: Helvetica, Arial, sans-serif; font-size: 10pt; color: #1a1a1a; max-width: 60em; margin: 2em auto; padding: 0 1em; }
            h1 { font-size: 16pt; } h2 { font-size: 12pt; margin-top: 1.6em; }
            table { border-collapse: collapse; width: 100%; margin: 0.5em 0; }
            th, td { text-align: left; vertical-align: top; padding: 3px 6px; border-bottom: 1px solid #d9d9d9; }
            th { background: #efefef; }
            table.facts td:first-child { font-weight: bold; width: 11em; }
            figure { margin: 1em 0; } figcaption { font-weight: bold; margin-bottom: 0.3em; }
            svg text { font-family: Helvetica, Arial, sans-serif; }
            .caption, .footer { color: #555; } .warning { color: #a61c00; font-weight: bold; }
            @media print { body { margin: 0; max-width: none; } }
            </style>
            </head>
            <body>
            \(body)</body>
            </html>

            """
    }

    // MARK: - PDF

    /// The report as a PDF on `paper`, page numbers in the footer.
    func pdf(paper: Paper) -> [UInt8] {
        var flow = PDFFlow(paper: paper)
        flow.heading(heading, size: 16)
        flow.table(nil, facts.map { [$0.0, $0.1] }, boldFirstColumn: true)
        if truncated { flow.paragraph(truncatedText, bold: true) }
        if isEmpty {
            flow.paragraph(emptyText)
        } else {
            for chart in [ReportChart.durations(rollouts, width: flow.textWidth), ReportChart.weeks(weeks, width: flow.textWidth)] {
                flow.heading(chart.title, size: 12)
                flow.chart(chart)
                if let caption = chart.caption { flow.paragraph(caption) }
            }
            for section in sections {
                flow.heading(section.title, size: 12)
                flow.table(section.table.header, section.table.rows)
            }
        }
        let footer = "Upkeep monthly report \(month) · made \(generatedAt.utcDescription)"
        return flow.document(footer: footer).bytes(title: heading, created: generatedAt)
    }

    /// Paper sizes in points.
    enum Paper: String, CaseIterable {
        case a4
        case letter

        var size: (width: Double, height: Double) { self == .a4 ? (595, 842) : (612, 792) }
    }
}

/// Lays text, tables and charts down pages from the top, starting a new page when the next piece
/// does not fit (a table's header repeated on it).
struct PDFFlow {
    let paper: MonthlyReport.Paper
    let margin = 48.0
    let footerHeight = 20.0
    private var pages: [PDFPage] = []
    private var page = PDFPage()
    /// The top of the next piece, from the page's bottom.
    private var y: Double
    static let tableSize = 8.0
    /// Lines a table cell shows at most (the rest cut with …).
    static let cellLinesMax = 12

    init(paper: MonthlyReport.Paper) {
        self.paper = paper
        y = paper.size.height - margin
    }

    var textWidth: Double { paper.size.width - 2 * margin }
    private var bottom: Double { margin + footerHeight }

    private mutating func room(_ height: Double) {
        if y - height < bottom && y < paper.size.height - margin { newPage() }
    }

    private mutating func newPage() {
        pages.append(page)
        page = PDFPage()
        y = paper.size.height - margin
    }

    mutating func heading(_ text: String, size: Double) {
        // Kept with at least a few lines of what follows it.
        room(size * 1.6 + 40)
        y -= size * 1.3
        for line in Self.wrap(text, width: textWidth, font: .bold, size: size) {
            page.text(line, x: margin, y: y, size: size, font: .bold)
            y -= size * 1.25
        }
        y -= 4
    }

    mutating func paragraph(_ text: String, bold: Bool = false) {
        let size = 9.0
        for line in Self.wrap(text, width: textWidth, font: bold ? .bold : .regular, size: size) {
            room(size * 1.4)
            y -= size
            page.text(line, x: margin, y: y, size: size, font: bold ? .bold : .regular)
            y -= size * 0.4
        }
        y -= 6
    }

    mutating func chart(_ chart: ReportChart) {
        guard chart.height > 0 else { return }
        room(chart.height)
        chart.draw(on: &page, x: margin, top: y)
        y -= chart.height + 6
    }

    /// Columns share the width as `share` says; cells wrap.
    mutating func table(_ header: [String]?, _ rows: [[String]], boldFirstColumn: Bool = false) {
        let size = Self.tableSize, leading = size * 1.25, padding = 4.0
        let columns = header?.count ?? rows.first?.count ?? 0
        guard columns > 0 else { return }
        var natural = [Double](repeating: 12, count: columns)
        let measured = (header.map { [($0, true)] } ?? []) + rows.map { ($0, false) }
        for (row, isHeader) in measured {
            for (index, cell) in row.enumerated() where index < columns {
                let font: PDFFont = isHeader || (boldFirstColumn && index == 0) ? .bold : .regular
                natural[index] = max(natural[index], font.width(cell, size: size) + 2 * padding + 1)
            }
        }
        let widths = Self.share(textWidth, natural)
        let lines = { (row: [String], bold: Bool) -> [[String]] in
            row.prefix(columns).enumerated().map { index, cell in
                var wrapped = Self.wrap(cell, width: widths[index] - 2 * padding, font: bold || (boldFirstColumn && index == 0) ? .bold : .regular,
                                        size: size)
                if wrapped.count > Self.cellLinesMax {
                    wrapped = Array(wrapped.prefix(Self.cellLinesMax))
                    wrapped[Self.cellLinesMax - 1] += " …"
                }
                return wrapped
            }
        }
        let drawRow = { (flow: inout PDFFlow, cells: [[String]], isHeader: Bool) in
            let height = Double(cells.map(\.count).max() ?? 1) * leading + 2 * padding
            if isHeader {
                flow.page.rectangle(x: flow.margin, y: flow.y - height, width: widths.reduce(0, +), height: height,
                                    color: PDFPage.Color(red: 0.93, green: 0.93, blue: 0.93))
            }
            var x = flow.margin
            for (index, cell) in cells.enumerated() {
                for (number, line) in cell.enumerated() {
                    flow.page.text(line, x: x + padding, y: flow.y - padding - size - Double(number) * leading, size: size,
                                   font: isHeader || (boldFirstColumn && index == 0) ? .bold : .regular)
                }
                x += widths[index]
            }
            flow.y -= height
            flow.page.line(from: (flow.margin, flow.y), to: (flow.margin + widths.reduce(0, +), flow.y),
                           color: PDFPage.Color(red: 0.8, green: 0.8, blue: 0.8), width: 0.5)
        }
        let headerCells = header.map { lines($0, true) }
        let headerHeight = headerCells.map { Double($0.map(\.count).max() ?? 1) * leading + 2 * padding } ?? 0
        if let headerCells {
            room(headerHeight + leading + 2 * padding)
            drawRow(&self, headerCells, true)
        }
        for row in rows {
            let cells = lines(row, false)
            let height = Double(cells.map(\.count).max() ?? 1) * leading + 2 * padding
            if y - height < bottom {
                newPage()
                if let headerCells { drawRow(&self, headerCells, true) }
            }
            drawRow(&self, cells, false)
        }
        y -= 8
    }

    /// The pages so far, each with `footer` and its number of the whole.
    mutating func document(footer: String) -> PDFDocument {
        pages.append(page)
        page = PDFPage()
        var document = PDFDocument(width: paper.size.width, height: paper.size.height)
        for index in pages.indices {
            var finished = pages[index]
            let number = "Page \(index + 1) of \(pages.count)"
            let grey = PDFPage.Color(red: 0.4, green: 0.4, blue: 0.4)
            finished.text(footer, x: margin, y: margin - 14, size: 7, color: grey)
            finished.text(number, x: paper.size.width - margin - PDFFont.regular.width(number, size: 7), y: margin - 14, size: 7, color: grey)
            document.add(finished)
        }
        return document
    }

    /// Widths for columns that would like `natural` within `total`: all of them when they fit;
    /// else each column narrower than an equal share of what is left keeps its width, and the
    /// wider ones split the rest equally (max-min fair), so short columns (ids, dates, durations)
    /// never wrap for the sake of long ones.
    static func share(_ total: Double, _ natural: [Double]) -> [Double] {
        guard natural.reduce(0, +) > total else { return natural }
        var widths = [Double?](repeating: nil, count: natural.count)
        var left = total
        while true {
            let open = natural.indices.filter { widths[$0] == nil }
            guard !open.isEmpty else { break }
            let equal = left / Double(open.count)
            let fitting = open.filter { natural[$0] <= equal }
            if fitting.isEmpty {
                for index in open { widths[index] = equal }
                break
            }
            for index in fitting {
                widths[index] = natural[index]
                left -= natural[index]
            }
        }
        return widths.map { $0 ?? 0 }
    }

    /// `text` broken into lines no wider than `width` at spaces, a word wider than the line
    /// broken where it must.
    static func wrap(_ text: String, width: Double, font: PDFFont, size: Double) -> [String] {
        var lines: [String] = []
        var line = ""
        for word in text.split(separator: " ", omittingEmptySubsequences: true).map(String.init) {
            let candidate = line.isEmpty ? word : line + " " + word
            if font.width(candidate, size: size) <= width {
                line = candidate
                continue
            }
            if !line.isEmpty { lines.append(line) }
            line = ""
            var rest = word
            while font.width(rest, size: size) > width, rest.count > 1 {
                var cut = rest.count - 1
                while cut > 1 && font.width(String(rest.prefix(cut)), size: size) > width { cut -= 1 }
                lines.append(String(rest.prefix(cut)))
                rest = String(rest.dropFirst(cut))
            }
            line = rest
        }
        if !line.isEmpty || lines.isEmpty { lines.append(line) }
        return lines
    }
}

/// Text for HTML pages.
enum HTMLText {
    /// `&`, `<`, `>`, `"` and `'` as character references (text and attribute values alike).
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default:
                // Control characters other than tab and newline are not allowed in HTML (or XML) text.
                if let scalar = character.unicodeScalars.first, character.unicodeScalars.count == 1,
                   scalar.value < 0x20 && scalar != "\t" && scalar != "\n" || (0x7F...0x9F).contains(scalar.value) {
                    out += " "
                } else {
                    out.append(character)
                }
            }
        }
        return out
    }

    static func table(_ header: [String]?, _ rows: [[String]], className: String) -> String {
        var out = "<table class=\"\(className)\">\n"
        if let header { out += "<thead><tr>" + header.map { "<th>\(escape($0))</th>" }.joined() + "</tr></thead>\n" }
        out += "<tbody>\n" + rows.map { "<tr>" + $0.map { "<td>\(escape($0))</td>" }.joined() + "</tr>\n" }.joined() + "</tbody>\n</table>\n"
        return out
    }
}
