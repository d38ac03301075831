/// Reads a TZif file, the compiled form of one zone of the IANA time zone database that the
/// system's tzdata installs under /usr/share/zoneinfo (RFC 8536,
/// https://www.rfc-editor.org/rfc/rfc8536): a header, the transitions and local time types, and
/// (version 2 and later) the same with 64-bit times followed by a footer holding the POSIX TZ
/// rule for the time after the last transition.
///
/// Pure: it is given the file's bytes. Every count is checked against the bytes that are there
/// before anything is read, so a short, long or hostile file is refused with a reason, never
/// read past its end.
public enum TZif {
    /// Larger than any zone of the database (the largest is a few KiB); the edge reads no more.
    public static let fileBytesMax = 256 * 1024

    /// The rule of zone `name` in `bytes`. The error's `problem` says what is wrong.
    public static func parse(_ bytes: [UInt8], name: String) throws(TZifError) -> TimeZoneRule {
        guard bytes.count <= fileBytesMax else { throw TZifError("larger than \(fileBytesMax) bytes") }
        var reader = ByteReader(bytes)
        let first = try Header.read(&reader)
        guard first.version >= 2 else {
            // Version 1: 32-bit times, no footer; the last offset holds for ever.
            return try Block.read(&reader, header: first, timeBytes: 4).rule(name: name, footer: nil)
        }
        try reader.skip(first.blockBytes(timeBytes: 4))
        let second = try Header.read(&reader)
        let block = try Block.read(&reader, header: second, timeBytes: 8)
        guard try reader.byte() == 0x0A else { throw TZifError("the footer does not start with a newline") }
        var footer: [UInt8] = []
        while true {
            let byte = try reader.byte()
            if byte == 0x0A { break }
            guard footer.count < 256 else { throw TZifError("the footer is longer than 256 bytes") }
            footer.append(byte)
        }
        let rule: PosixTimeZone?
        if footer.isEmpty {
            rule = nil
        } else {
            do { rule = try PosixTimeZone(String(decoding: footer, as: UTF8.self)) } catch { throw TZifError(error.description) }
        }
        return try block.rule(name: name, footer: rule)
    }

    struct Header {
        var version: Int
        var isUTCCount: Int, isStandardCount: Int, leapCount: Int, timeCount: Int, typeCount: Int, characterCount: Int

        static func read(_ reader: inout ByteReader) throws(TZifError) -> Header {
            guard try reader.take(4) == Array("TZif".utf8) else { throw TZifError("it does not start with TZif") }
            let versionByte = try reader.byte()
            let version: Int
            switch versionByte {
            case 0: version = 1
            case UInt8(ascii: "2"), UInt8(ascii: "3"), UInt8(ascii: "4"): version = Int(versionByte - UInt8(ascii: "0"))
            default: throw TZifError("unknown version byte \(versionByte)")
            }
            try reader.skip(15)
            var counts: [Int] = []
            for _ in 0..<6 { counts.append(Int(try reader.uint32())) }
            let header = Header(version: version, isUTCCount: counts[0], isStandardCount: counts[1], leapCount: counts[2],
                                timeCount: counts[3], typeCount: counts[4], characterCount: counts[5])
            guard header.typeCount >= 1, header.characterCount >= 1 else { throw TZifError("no local time types or no abbreviations") }
            guard header.isUTCCount == 0 || header.isUTCCount == header.typeCount,
                  header.isStandardCount == 0 || header.isStandardCount == header.typeCount else {
                throw TZifError("indicator counts differ from the number of local time types")
            }
            guard header.leapCount == 0 else {
                throw TZifError("it counts leap seconds (a right/ zone); name the zone without right/")
            }
            guard header.blockBytes(timeBytes: 4) <= reader.remaining else {
                throw TZifError("its counts need more bytes than the file has")
            }
            return header
        }

        func blockBytes(timeBytes: Int) -> Int {
            timeCount * timeBytes + timeCount + typeCount * 6 + characterCount + leapCount * (timeBytes + 4) + isStandardCount + isUTCCount
        }
    }

    struct Block {
        var times: [Int64]
        var typeIndices: [Int]
        var types: [TimeZoneRule.Offset]

        static func read(_ reader: inout ByteReader, header: Header, timeBytes: Int) throws(TZifError) -> Block {
            guard header.blockBytes(timeBytes: timeBytes) <= reader.remaining else { throw TZifError("it ends inside its data") }
            var times: [Int64] = []
            for _ in 0..<header.timeCount {
                let time = timeBytes == 8 ? Int64(bitPattern: try reader.uint64()) : Int64(Int32(bitPattern: try reader.uint32()))
                if let last = times.last, time <= last { throw TZifError("its transition times are not in increasing order") }
                times.append(time)
            }
            var typeIndices: [Int] = []
            for _ in 0..<header.timeCount {
                let index = Int(try reader.byte())
                guard index < header.typeCount else { throw TZifError("a transition names local time type \(index) of \(header.typeCount)") }
                typeIndices.append(index)
            }
            var records: [(seconds: Int, isDaylight: Bool, abbreviationIndex: Int)] = []
            for _ in 0..<header.typeCount {
                let seconds = Int(Int32(bitPattern: try reader.uint32()))
                let daylight = try reader.byte()
                let index = Int(try reader.byte())
                // RFC 8536 3.2: -89999…93599 seconds (just under -25 and +26 hours).
                guard (-89_999...93_599).contains(seconds), daylight <= 1, index < header.characterCount else {
                    throw TZifError("a local time type is out of range (offset \(seconds) s, dst \(daylight), abbreviation \(index))")
                }
                records.append((seconds, daylight == 1, index))
            }
            let characters = try reader.take(header.characterCount)
            try reader.skip(header.isStandardCount + header.isUTCCount)
            let types = records.map { record in
                let tail = characters[record.abbreviationIndex...]
                let abbreviation = String(decoding: tail.prefix { $0 != 0 }, as: UTF8.self)
                return TimeZoneRule.Offset(seconds: record.seconds, isDaylight: record.isDaylight, abbreviation: abbreviation)
            }
            return Block(times: times, typeIndices: typeIndices, types: types)
        }

        /// Before the first transition, type 0 applies (RFC 8536 3.2).
        func rule(name: String, footer: PosixTimeZone?) throws(TZifError) -> TimeZoneRule {
            let transitions = zip(times, typeIndices).map { TimeZoneRule.Transition(at: $0, offset: types[$1]) }
            return TimeZoneRule(name: name, initial: types[0], transitions: transitions, rule: footer)
        }
    }

    /// Big-endian reads that throw at the end instead of reading past it.
    struct ByteReader {
        let bytes: [UInt8]
        var index = 0

        init(_ bytes: [UInt8]) { self.bytes = bytes }

        var remaining: Int { bytes.count - index }

        mutating func byte() throws(TZifError) -> UInt8 {
            guard index < bytes.count else { throw TZifError("it ends early") }
            defer { index += 1 }
            return bytes[index]
        }

        mutating func take(_ count: Int) throws(TZifError) -> [UInt8] {
            guard count <= remaining else { throw TZifError("it ends early") }
            defer { index += count }
            return Array(bytes[index..<index + count])
        }

        mutating func skip(_ count: Int) throws(TZifError) {
            guard count <= remaining else { throw TZifError("it ends early") }
            index += count
        }

        mutating func uint32() throws(TZifError) -> UInt32 {
            try take(4).reduce(0) { $0 << 8 | UInt32($1) }
        }

        mutating func uint64() throws(TZifError) -> UInt64 {
            try take(8).reduce(0) { $0 << 8 | UInt64($1) }
        }
    }
}

/// Why bytes are not a TZif file we read; `problem` in words.
public struct TZifError: Error, Equatable, Sendable, CustomStringConvertible {
    public let problem: String
    init(_ problem: String) { self.problem = problem }
    public var description: String { problem }
}
