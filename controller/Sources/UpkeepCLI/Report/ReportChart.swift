/// A chart as shapes in a box (points, origin at the top-left, y down), made once and drawn by
/// both the HTML report (as SVG) and the PDF one, so the two show the same bars. Pure.
struct ReportChart: Equatable {
    enum Color: String, Equatable {
        case succeeded, failed, unfinished, axis, grid, ink

        /// sRGB, 0 … 1.
        var rgb: (Double, Double, Double) {
            switch self {
            case .succeeded: (0.18, 0.55, 0.34)
            case .failed: (0.80, 0.22, 0.17)
            case .unfinished: (0.60, 0.60, 0.60)
            case .axis: (0.25, 0.25, 0.25)
            case .grid: (0.85, 0.85, 0.85)
            case .ink: (0.1, 0.1, 0.1)
            }
        }

        /// `#2e8c57`.
        var hex: String {
            let digits = Array("0123456789abcdef")
            let (r, g, b) = rgb
            return "#" + [r, g, b].map { component in
                let byte = Int((component * 255).rounded())
                return String([digits[byte / 16], digits[byte % 16]])
            }.joined()
        }
    }

    enum Anchor: String, Equatable {
        case start, middle, end
    }

    enum Shape: Equatable {
        case rectangle(x: Double, y: Double, width: Double, height: Double, color: Color)
        case line(x1: Double, y1: Double, x2: Double, y2: Double, color: Color)
        /// `y` is the baseline.
        case text(String, x: Double, y: Double, size: Double, anchor: Anchor, bold: Bool, color: Color)
    }

    var title: String
    var width: Double
    var height: Double
    var shapes: [Shape]
    /// Said under the chart (what was left out, what nothing means).
    var caption: String?

    /// How many rollouts the durations chart shows at most.
    static let barsMax = 30
    static let labelSize = 7.0

    /// One horizontal bar per rollout (in the order given), its length its duration, coloured
    /// by outcome; unfinished rollouts have no bar. Past `barsMax` rollouts, the longest are
    /// shown, in their order, and the caption says so.
    static func durations(_ rollouts: [MonthlyReport.Rollout], width: Double) -> ReportChart {
        let title = "Rollout durations"
        let finished = rollouts.filter { $0.durationSeconds != nil }
        guard !finished.isEmpty else {
            return ReportChart(title: title, width: width, height: 0, shapes: [], caption: "No rollout finished in the month.")
        }
        var shown = finished
        var caption: String?
        if finished.count > barsMax {
            let kept = Set(finished.sorted { ($0.durationSeconds ?? 0) > ($1.durationSeconds ?? 0) }.prefix(barsMax).map(\.id))
            shown = finished.filter { kept.contains($0.id) }
            caption = "The \(barsMax) longest of \(finished.count) finished rollouts."
        }
        let rowHeight = 13.0, top = 4.0, labelWidth = min(130, width * 0.28), valueWidth = 52.0
        let plot = max(width - labelWidth - valueWidth - 8, 40)
        let longest = Double(shown.compactMap(\.durationSeconds).max() ?? 1)
        var shapes: [Shape] = []
        for (row, rollout) in shown.enumerated() {
            let y = top + Double(row) * rowHeight
            let seconds = Double(rollout.durationSeconds ?? 0)
            let length = max(plot * seconds / max(longest, 1), 1)
            shapes.append(.text(fit(rollout.id, width: labelWidth - 6), x: labelWidth - 6, y: y + 9, size: labelSize, anchor: .end, bold: false, color: .ink))
            shapes.append(.rectangle(x: labelWidth, y: y + 2, width: length, height: rowHeight - 4,
                                     color: MonthlyReport.Verdict(rolloutOutcome: rollout.outcome) == .succeeded ? .succeeded : .failed))
            shapes.append(.text(RolloutReport.clock(Int(seconds)), x: labelWidth + length + 4, y: y + 9, size: labelSize, anchor: .start, bold: false,
                                color: .ink))
        }
        let bottom = top + Double(shown.count) * rowHeight
        shapes.append(.line(x1: labelWidth, y1: top, x2: labelWidth, y2: bottom + 2, color: .axis))
        shapes.append(.text("green: completed, red: rolled back, failed or abandoned", x: labelWidth, y: bottom + 13, size: labelSize, anchor: .start,
                            bold: false, color: .ink))
        return ReportChart(title: title, width: width, height: bottom + 18, shapes: shapes, caption: caption)
    }

    /// One stacked column per week: succeeded (bottom), failed, unfinished; the count on top.
    static func weeks(_ weeks: [MonthlyReport.Week], width: Double) -> ReportChart {
        let title = "Success per week (rollouts and GitOps updates begun)"
        let plotHeight = 110.0, top = 12.0, left = 28.0, legend = 16.0
        let highest = max(weeks.map { $0.succeeded + $0.failed + $0.unfinished }.max() ?? 0, 1)
        let step = Double(max(1, (highest + 3) / 4))
        let scaleTop = step * Double(Int((Double(highest) / step).rounded(.up)))
        let plotWidth = min(width - left - 8, 420)
        let slot = plotWidth / Double(max(weeks.count, 1))
        var shapes: [Shape] = []
        var tick = 0.0
        while tick <= scaleTop {
            let y = top + plotHeight - plotHeight * tick / scaleTop
            shapes.append(.line(x1: left, y1: y, x2: left + plotWidth, y2: y, color: .grid))
            shapes.append(.text(String(Int(tick)), x: left - 4, y: y + 2.5, size: labelSize, anchor: .end, bold: false, color: .ink))
            tick += step
        }
        for (index, week) in weeks.enumerated() {
            let x = left + slot * Double(index) + slot * 0.2
            var y = top + plotHeight
            for (count, color) in [(week.succeeded, Color.succeeded), (week.failed, .failed), (week.unfinished, .unfinished)] where count > 0 {
                let height = plotHeight * Double(count) / scaleTop
                y -= height
                shapes.append(.rectangle(x: x, y: y, width: slot * 0.6, height: height, color: color))
            }
            let total = week.succeeded + week.failed + week.unfinished
            shapes.append(.text("\(total)", x: x + slot * 0.3, y: y - 3, size: labelSize, anchor: .middle, bold: true, color: .ink))
            shapes.append(.text("days " + week.days, x: x + slot * 0.3, y: top + plotHeight + 10, size: labelSize, anchor: .middle, bold: false,
                                color: .ink))
        }
        shapes.append(.line(x1: left, y1: top + plotHeight, x2: left + plotWidth, y2: top + plotHeight, color: .axis))
        let legendY = top + plotHeight + 14 + legend
        var x = left
        for (name, color) in [("succeeded", Color.succeeded), ("failed, rolled back or reverted", .failed), ("unfinished", .unfinished)] {
            shapes.append(.rectangle(x: x, y: legendY - 7, width: 8, height: 8, color: color))
            shapes.append(.text(name, x: x + 11, y: legendY, size: labelSize, anchor: .start, bold: false, color: .ink))
            x += 11 + PDFFont.regular.width(name, size: labelSize) + 14
        }
        let empty = weeks.allSatisfy { $0.succeeded + $0.failed + $0.unfinished == 0 }
        return ReportChart(title: title, width: width, height: legendY + 4, shapes: shapes,
                           caption: empty ? "No rollout or GitOps update began in the month." : nil)
    }

    /// `text`, cut with `…` to fit `width` at the label size.
    static func fit(_ text: String, width: Double) -> String {
        guard PDFFont.regular.width(text, size: labelSize) > width else { return text }
        var cut = text
        while !cut.isEmpty && PDFFont.regular.width(cut + "…", size: labelSize) > width { cut.removeLast() }
        return cut + "…"
    }

    // MARK: - Drawing

    /// The chart as an inline SVG element; every text escaped.
    var svg: String {
        var out = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(PDFDocument.number(width))\" height=\"\(PDFDocument.number(height))\" "
            + "viewBox=\"0 0 \(PDFDocument.number(width)) \(PDFDocument.number(height))\" role=\"img\" aria-label=\"\(HTMLText.escape(title))\">\n"
        for shape in shapes {
            switch shape {
            case .rectangle(let x, let y, let width, let height, let color):
                out += "<rect x=\"\(PDFDocument.number(x))\" y=\"\(PDFDocument.number(y))\" width=\"\(PDFDocument.number(width))\" "
                    + "height=\"\(PDFDocument.number(height))\" fill=\"\(color.hex)\"/>\n"
            case .line(let x1, let y1, let x2, let y2, let color):
                out += "<line x1=\"\(PDFDocument.number(x1))\" y1=\"\(PDFDocument.number(y1))\" x2=\"\(PDFDocument.number(x2))\" "
                    + "y2=\"\(PDFDocument.number(y2))\" stroke=\"\(color.hex)\" stroke-width=\"0.7\"/>\n"
            case .text(let text, let x, let y, let size, let anchor, let bold, let color):
                out += "<text x=\"\(PDFDocument.number(x))\" y=\"\(PDFDocument.number(y))\" font-size=\"\(PDFDocument.number(size))\" "
                    + "text-anchor=\"\(anchor.rawValue)\"\(bold ? " font-weight=\"bold\"" : "") fill=\"\(color.hex)\">\(HTMLText.escape(text))</text>\n"
            }
        }
        return out + "</svg>"
    }

    /// Draws the chart on `page` with its top-left corner at (`x`, `top`) in page coordinates.
    func draw(on page: inout PDFPage, x: Double, top: Double) {
        let color = { (color: Color) in PDFPage.Color(red: color.rgb.0, green: color.rgb.1, blue: color.rgb.2) }
        for shape in shapes {
            switch shape {
            case .rectangle(let left, let y, let width, let height, let fill):
                page.rectangle(x: x + left, y: top - y - height, width: width, height: height, color: color(fill))
            case .line(let x1, let y1, let x2, let y2, let stroke):
                page.line(from: (x + x1, top - y1), to: (x + x2, top - y2), color: color(stroke), width: 0.7)
            case .text(let text, let left, let y, let size, let anchor, let bold, let ink):
                let font: PDFFont = bold ? .bold : .regular
                let shift = switch anchor {
                case .start: 0.0
                case .middle: font.width(text, size: size) / 2
                case .end: font.width(text, size: size)
                }
                page.text(text, x: x + left - shift, y: top - y, size: size, font: font, color: color(ink))
            }
        }
    }
}
