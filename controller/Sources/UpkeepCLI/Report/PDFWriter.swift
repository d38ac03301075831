import UpkeepCore

/// A small, self-contained PDF 1.4 writer for reports: pages of text in two of the standard 14
/// fonts (Helvetica and Helvetica-Bold, which every PDF reader has, so nothing is embedded), in
/// WinAnsiEncoding, with filled rectangles and lines for charts. Uncompressed content streams, one
/// cross-reference table with each object's byte offset. It never reads or writes a file: pages
/// in, bytes out.
///
/// The format as ISO 32000-1 (PDF 1.7, which PDF 1.4 files conform to) defines it:
/// https://opensource.adobe.com/dc-acrobat-sdk-docs/pdfstandards/PDF32000_2008.pdf —
/// 7.3.4.2 literal strings and their escapes, 7.5 file structure (header, body, the
/// cross-reference table of 20-byte entries, trailer), 9.6.2.2 the standard 14 fonts, Annex D
/// WinAnsiEncoding. Widths are those of Adobe's Core 14 AFM files for Helvetica and Helvetica-Bold.
struct PDFDocument {
    /// Points (1/72 inch).
    let width: Double
    let height: Double
    private(set) var pages: [PDFPage] = []

    init(width: Double, height: Double) {
        self.width = width
        self.height = height
    }

    mutating func add(_ page: PDFPage) {
        pages.append(page)
    }

    /// The whole file. `title` goes to the document information dictionary (any characters,
    /// as UTF-16BE); `created` to its creation date.
    func bytes(title: String, created: Instant) -> [UInt8] {
        var out: [UInt8] = Array("%PDF-1.4\n%".utf8) + [0xE2, 0xE3, 0xCF, 0xD3, 0x0A]
        var offsets: [Int] = []
        func object(_ body: [UInt8]) {
            offsets.append(out.count)
            out += Array("\(offsets.count) 0 obj\n".utf8) + body + Array("\nendobj\n".utf8)
        }
        func objectText(_ body: String) { object(Array(body.utf8)) }
        // 1 catalog, 2 page tree, 3 and 4 fonts, 5 information; then per page its page and its content.
        let firstPage = 6
        let kids = pages.indices.map { "\(firstPage + 2 * $0) 0 R" }.joined(separator: " ")
        objectText("<< /Type /Catalog /Pages 2 0 R >>")
        objectText("<< /Type /Pages /Kids [\(kids)] /Count \(pages.count) /MediaBox [0 0 \(Self.number(width)) \(Self.number(height))] >>")
        for font in PDFFont.allCases {
            objectText("<< /Type /Font /Subtype /Type1 /BaseFont /\(font.baseFont) /Encoding /WinAnsiEncoding >>")
        }
        objectText("<< /Title \(Self.textString(title)) /Producer (Upkeep) /CreationDate (D:\(Self.date(created))Z) >>")
        for (index, page) in pages.enumerated() {
            objectText("<< /Type /Page /Parent 2 0 R /Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> /Contents \(firstPage + 2 * index + 1) 0 R >>")
            object(Array("<< /Length \(page.content.count) >>\nstream\n".utf8) + page.content + Array("\nendstream".utf8))
        }
        let xref = out.count
        out += Array("xref\n0 \(offsets.count + 1)\n0000000000 65535 f \n".utf8)
        for offset in offsets {
            let digits = String(offset)
            out += Array((String(repeating: "0", count: max(10 - digits.count, 0)) + digits + " 00000 n \n").utf8)
        }
        out += Array("trailer\n<< /Size \(offsets.count + 1) /Root 1 0 R /Info 5 0 R >>\nstartxref\n\(xref)\n%%EOF\n".utf8)
        return out
    }

    /// `12`, `12.5`, `-3.25`: at most two decimals, never an exponent (PDF numbers have none).
    static func number(_ value: Double) -> String {
        let hundredths = Int64((value * 100).rounded())
        let sign = hundredths < 0 ? "-" : ""
        let magnitude = hundredths.magnitude
        let fraction = magnitude % 100
        if fraction == 0 { return sign + String(magnitude / 100) }
        return sign + String(magnitude / 100) + "." + (fraction % 10 == 0 ? String(fraction / 10) : (fraction < 10 ? "0" : "") + String(fraction))
    }

    /// A text string for the information dictionary: UTF-16BE with its byte-order mark, in hex.
    static func textString(_ text: String) -> String {
        let hex = Array("0123456789ABCDEF")
        var out = "<FEFF"
        for unit in text.utf16 {
            for shift in [12, 8, 4, 0] { out.append(hex[Int(unit >> UInt16(shift)) & 0xF]) }
        }
        return out + ">"
    }

    /// `20261207133000` in UTC.
    static func date(_ instant: Instant) -> String {
        let seconds = CivilDate.floorDivide(instant.milliseconds, 1000)
        let day = CivilDate.date(days: CivilDate.floorDivide(seconds, 86_400))
        let rest = seconds - CivilDate.floorDivide(seconds, 86_400) * 86_400
        let two = { (value: Int64) in (value < 10 ? "0" : "") + String(value) }
        return String(day.year) + two(day.month) + two(day.day) + two(rest / 3600) + two(rest % 3600 / 60) + two(rest % 60)
    }
}

/// The two fonts the writer uses.
enum PDFFont: String, CaseIterable {
    case regular = "F1"
    case bold = "F2"

    var baseFont: String { self == .regular ? "Helvetica" : "Helvetica-Bold" }

    /// The width of `text` at `size` points, as the reader will set it.
    func width(_ text: String, size: Double) -> Double {
        let widths = self == .regular ? Self.helvetica : Self.helveticaBold
        let units = PDFText.winAnsi(text).reduce(0) { sum, byte in sum + (byte >= 32 && byte <= 126 ? widths[Int(byte) - 32] : 556) }
        return Double(units) * size / 1000
    }

    // Adobe Core 14 AFM widths of the characters 32 (space) … 126 (~), in 1/1000 of the size.
    private static let helvetica: [Int] = [
        278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556, 556, 556, 556, 556, 556, 556, 556,
        278, 278, 584, 584, 584, 556, 1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778, 667, 778, 722, 667,
        611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556, 333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833,
        556, 556, 556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
    ]
    private static let helveticaBold: [Int] = [
        278, 333, 474, 556, 556, 889, 722, 238, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556, 556, 556, 556, 556, 556, 556, 556,
        333, 333, 584, 584, 584, 611, 975, 722, 722, 722, 722, 667, 611, 778, 722, 278, 556, 722, 611, 833, 722, 778, 667, 778, 722, 667,
        611, 722, 667, 944, 667, 667, 611, 333, 278, 333, 584, 556, 333, 556, 611, 556, 611, 556, 333, 611, 611, 278, 278, 556, 278, 889,
        611, 611, 611, 611, 389, 556, 333, 611, 556, 778, 556, 556, 500, 389, 280, 389, 584,
    ]
}

/// Text as the standard fonts can show it.
enum PDFText {
    /// `text` in WinAnsiEncoding: ASCII and Latin-1 as they are, the typographic marks of
    /// 0x80–0x9F (– — … • ‘ ’ “ ” €) at their codes, a few arrows and signs spelled out (→ as
    /// ->), control characters as spaces, anything else as `?`.
    static func winAnsi(_ text: String) -> [UInt8] {
        var out: [UInt8] = []
        for scalar in text.unicodeScalars {
            let value = scalar.value
            switch value {
            case 0x20...0x7E, 0xA0...0xFF: out.append(UInt8(value))
            case 0...0x1F, 0x7F...0x9F: out.append(0x20)
            default:
                if let code = special[value] {
                    out.append(code)
                } else if let spelled = spelledOut[value] {
                    out += Array(spelled.utf8)
                } else {
                    out.append(UInt8(ascii: "?"))
                }
            }
        }
        return out
    }

    /// A literal string operand, `(…)`: `\`, `(` and `)` escaped, every byte outside printable
    /// ASCII as an octal escape, so the content stream stays ASCII.
    static func literal(_ text: String) -> String {
        var out = "("
        for byte in winAnsi(text) {
            switch byte {
            case UInt8(ascii: "\\"), UInt8(ascii: "("), UInt8(ascii: ")"): out += "\\" + String(UnicodeScalar(byte))
            case 0x20...0x7E: out.append(Character(UnicodeScalar(byte)))
            default:
                let octal = String(byte, radix: 8)
                out += "\\" + String(repeating: "0", count: 3 - octal.count) + octal
            }
        }
        return out + ")"
    }

    private static let special: [UInt32: UInt8] = [
        0x20AC: 0x80, 0x201A: 0x82, 0x0192: 0x83, 0x201E: 0x84, 0x2026: 0x85, 0x2020: 0x86, 0x2021: 0x87, 0x02C6: 0x88, 0x2030: 0x89,
        0x0160: 0x8A, 0x2039: 0x8B, 0x0152: 0x8C, 0x017D: 0x8E, 0x2018: 0x91, 0x2019: 0x92, 0x201C: 0x93, 0x201D: 0x94, 0x2022: 0x95,
        0x2013: 0x96, 0x2014: 0x97, 0x02DC: 0x98, 0x2122: 0x99, 0x0161: 0x9A, 0x203A: 0x9B, 0x0153: 0x9C, 0x017E: 0x9E, 0x0178: 0x9F,
    ]
    private static let spelledOut: [UInt32: String] = [0x2192: "->", 0x2190: "<-", 0x2264: "<=", 0x2265: ">=", 0x2212: "-", 0x2009: " ", 0x202F: " "]
}

/// One page's drawing, in points from the bottom-left corner.
struct PDFPage {
    struct Color: Equatable {
        var red: Double
        var green: Double
        var blue: Double

        static let black = Color(red: 0, green: 0, blue: 0)
    }

    private(set) var content: [UInt8] = []

    /// `text` on one line with its baseline at `y`, from `x`.
    mutating func text(_ text: String, x: Double, y: Double, size: Double, font: PDFFont = .regular, color: Color = .black) {
        emit("\(fill(color)) BT /\(font.rawValue) \(PDFDocument.number(size)) Tf \(PDFDocument.number(x)) \(PDFDocument.number(y)) Td "
             + PDFText.literal(text) + " Tj ET")
    }

    mutating func rectangle(x: Double, y: Double, width: Double, height: Double, color: Color) {
        emit("\(fill(color)) \(PDFDocument.number(x)) \(PDFDocument.number(y)) \(PDFDocument.number(width)) \(PDFDocument.number(height)) re f")
    }

    mutating func line(from start: (x: Double, y: Double), to end: (x: Double, y: Double), color: Color, width: Double) {
        let (r, g, b) = (PDFDocument.number(color.red), PDFDocument.number(color.green), PDFDocument.number(color.blue))
        emit("\(r) \(g) \(b) RG \(PDFDocument.number(width)) w \(PDFDocument.number(start.x)) \(PDFDocument.number(start.y)) m "
             + "\(PDFDocument.number(end.x)) \(PDFDocument.number(end.y)) l S")
    }

    private func fill(_ color: Color) -> String {
        "\(PDFDocument.number(color.red)) \(PDFDocument.number(color.green)) \(PDFDocument.number(color.blue)) rg"
    }

    private mutating func emit(_ operation: String) {
        content += Array(operation.utf8)
        content.append(0x0A)
    }
}
