/// The few DNS messages the cluster-DNS check needs (RFC 1035, https://www.rfc-editor.org/rfc/rfc1035):
/// an A query for one name, the answer to it read back, and (for the sandbox's model of the
/// cluster DNS) a query read and an answer written. Plain bytes in and out: no socket, no
/// Foundation, so the agent links it. Reading never trusts a count or a pointer in the message:
/// every read is bounded by the message's length and by the bounds below, and a message that
/// breaks one is refused with a `DNSMessageError`, never a crash or a loop.
public enum DNSMessage {
    /// A message over UDP without EDNS(0) (RFC 1035 section 4.2.1); longer ones are refused.
    public static let udpBytesMax = 512
    /// A name's length in its wire form (RFC 1035 section 2.3.4).
    public static let nameBytesMax = 255
    /// One label's length (section 2.3.4).
    public static let labelBytesMax = 63
    /// Compression pointers followed while reading one name: more is a loop.
    public static let pointersMax = 16
    /// Records read from one answer: a 512-byte message holds at most 46 (11 bytes each).
    public static let recordsMax = 64

    public static let typeA: UInt16 = 1
    public static let typeCNAME: UInt16 = 5
    public static let classIN: UInt16 = 1

    /// The response codes the check tells apart (section 4.1.1).
    public enum ResponseCode: UInt8, Equatable, Sendable {
        case noError = 0
        case formatError = 1
        case serverFailure = 2
        case nameError = 3
        case notImplemented = 4
        case refused = 5

        /// `NXDOMAIN`, `SERVFAIL`: as dig prints them.
        public var text: String {
            switch self {
            case .noError: "NOERROR"
            case .formatError: "FORMERR"
            case .serverFailure: "SERVFAIL"
            case .nameError: "NXDOMAIN"
            case .notImplemented: "NOTIMP"
            case .refused: "REFUSED"
            }
        }
    }

    /// A response as the check reads it.
    public struct Answer: Equatable, Sendable {
        public var id: UInt16
        /// The RCODE; nil for one RFC 1035 does not define (kept as `rawCode`).
        public var code: ResponseCode?
        public var rawCode: UInt8
        /// TC: the answer did not fit; what it holds may be partial.
        public var truncated: Bool
        /// The question it answers, lower-cased, without the final dot.
        public var name: String
        /// The IPv4 addresses of the A records for `name` or a CNAME of it, dotted, in order.
        public var addresses: [String]

        public init(id: UInt16, code: ResponseCode?, rawCode: UInt8, truncated: Bool, name: String, addresses: [String]) {
            self.id = id
            self.code = code
            self.rawCode = rawCode
            self.truncated = truncated
            self.name = name
            self.addresses = addresses
        }
    }

    /// A query as the sandbox's DNS server reads it.
    public struct Question: Equatable, Sendable {
        public var id: UInt16
        /// Lower-cased, without the final dot.
        public var name: String
        public var type: UInt16
        public var qclass: UInt16

        public init(id: UInt16, name: String, type: UInt16, qclass: UInt16) {
            self.id = id
            self.name = name
            self.type = type
            self.qclass = qclass
        }
    }

    // MARK: - writing

    /// A standard query for the A records of `name` (RD set: the cluster DNS recurses for names
    /// outside the cluster; it answers its own zone itself).
    public static func query(id: UInt16, name: String) throws(DNSMessageError) -> [UInt8] {
        var bytes = header(id: id, flags: 0x0100, questions: 1, answers: 0)
        bytes += try encode(name: name)
        append(typeA, to: &bytes)
        append(classIN, to: &bytes)
        return bytes
    }

    /// The answer to `question`: one A record per address (`ttl` seconds), or none with `code`.
    /// Addresses that are not dotted IPv4 are refused.
    public static func response(to question: Question, code: ResponseCode = .noError, addresses: [String] = [],
                                ttl: UInt32 = 5) throws(DNSMessageError) -> [UInt8] {
        let octets = try addresses.map { (text) throws(DNSMessageError) -> [UInt8] in
            guard let octets = IPAddressText.ipv4(text) else { throw .malformed("\(text) is not an IPv4 address") }
            return octets
        }
        // QR, opcode 0, AA, RD copied (set by every query we answer), RA, RCODE.
        var bytes = header(id: question.id, flags: 0x8500 | 0x0080 | UInt16(code.rawValue), questions: 1, answers: UInt16(octets.count))
        let name = try encode(name: question.name)
        bytes += name
        append(question.type, to: &bytes)
        append(question.qclass, to: &bytes)
        for address in octets {
            bytes += [0xC0, 12]  // a pointer to the question's name
            append(typeA, to: &bytes)
            append(classIN, to: &bytes)
            append(UInt16(ttl >> 16), to: &bytes)
            append(UInt16(ttl & 0xFFFF), to: &bytes)
            append(4, to: &bytes)
            bytes += address
        }
        guard bytes.count <= udpBytesMax else { throw .malformed("an answer of \(bytes.count) bytes does not fit in \(udpBytesMax)") }
        return bytes
    }

    // MARK: - reading

    /// Reads a response: its header, its question, and the A records of the question's name
    /// (following CNAMEs inside the answer section). Refuses a query, a message longer than
    /// `udpBytesMax`, and any count, length or pointer that points outside the message.
    public static func answer(_ bytes: [UInt8]) throws(DNSMessageError) -> Answer {
        var reader = try Reader(bytes)
        let (id, flags, questions, answers) = try reader.header()
        guard flags & 0x8000 != 0 else { throw .malformed("a query, not a response") }
        guard questions == 1 else { throw .malformed("\(questions) questions, expected 1") }
        let name = try reader.name()
        _ = try reader.uint16()
        _ = try reader.uint16()
        let rawCode = UInt8(flags & 0x000F)
        guard Int(answers) <= recordsMax else { throw .malformed("\(answers) answer records, more than \(recordsMax)") }
        var aliases: Set<String> = [name]
        var addresses: [String] = []
        for _ in 0..<answers {
            let owner = try reader.name()
            let type = try reader.uint16()
            let rclass = try reader.uint16()
            _ = try reader.uint16()
            _ = try reader.uint16()
            let length = Int(try reader.uint16())
            let start = reader.offset
            guard length <= reader.remaining else { throw .malformed("a record's data of \(length) bytes runs past the message") }
            if rclass == classIN && aliases.contains(owner) {
                if type == typeA {
                    guard length == 4 else { throw .malformed("an A record of \(length) bytes, not 4") }
                    addresses.append(bytes[start..<start + 4].map(String.init).joined(separator: "."))
                } else if type == typeCNAME {
                    aliases.insert(try reader.name())
                }
            }
            reader.offset = start + length
        }
        return Answer(id: id, code: ResponseCode(rawValue: rawCode), rawCode: rawCode, truncated: flags & 0x0200 != 0, name: name, addresses: addresses)
    }

    /// Reads a query: its id and its one question. Refuses a response and anything malformed.
    public static func question(_ bytes: [UInt8]) throws(DNSMessageError) -> Question {
        var reader = try Reader(bytes)
        let (id, flags, questions, _) = try reader.header()
        guard flags & 0x8000 == 0 else { throw .malformed("a response, not a query") }
        guard questions == 1 else { throw .malformed("\(questions) questions, expected 1") }
        let name = try reader.name()
        return Question(id: id, name: name, type: try reader.uint16(), qclass: try reader.uint16())
    }

    // MARK: - parts

    private static func header(id: UInt16, flags: UInt16, questions: UInt16, answers: UInt16) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(udpBytesMax)
        for field in [id, flags, questions, answers, 0, 0] { append(field, to: &bytes) }
        return bytes
    }

    private static func append(_ value: UInt16, to bytes: inout [UInt8]) {
        bytes.append(UInt8(value >> 8))
        bytes.append(UInt8(value & 0xFF))
    }

    /// `a.b.` or `a.b` as labels; letters, digits, `-` and `_`.
    static func encode(name: String) throws(DNSMessageError) -> [UInt8] {
        let trimmed = name.hasSuffix(".") ? String(name.dropLast()) : name
        guard !trimmed.isEmpty else { throw .malformed("an empty name") }
        var bytes: [UInt8] = []
        for label in trimmed.split(separator: ".", omittingEmptySubsequences: false) {
            let utf8 = Array(label.utf8)
            guard !utf8.isEmpty, utf8.count <= labelBytesMax,
                  utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) || $0 == 0x2D || $0 == 0x5F }) else {
                throw .malformed("\(name) is not a DNS name (labels of 1 to 63 letters, digits, - or _)")
            }
            bytes.append(UInt8(utf8.count))
            bytes += utf8
        }
        bytes.append(0)
        guard bytes.count <= nameBytesMax else { throw .malformed("\(name) is longer than \(nameBytesMax) bytes") }
        return bytes
    }

    /// A cursor over one message that never reads past its end.
    struct Reader {
        let bytes: [UInt8]
        var offset = 0

        init(_ bytes: [UInt8]) throws(DNSMessageError) {
            guard bytes.count <= DNSMessage.udpBytesMax else { throw .malformed("\(bytes.count) bytes, more than \(DNSMessage.udpBytesMax)") }
            guard bytes.count >= 12 else { throw .malformed("\(bytes.count) bytes, shorter than a header") }
            self.bytes = bytes
        }

        var remaining: Int { bytes.count - offset }

        mutating func uint16() throws(DNSMessageError) -> UInt16 {
            guard remaining >= 2 else { throw .malformed("ends inside a field at byte \(offset)") }
            defer { offset += 2 }
            return UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
        }

        mutating func header() throws(DNSMessageError) -> (id: UInt16, flags: UInt16, questions: UInt16, answers: UInt16) {
            let id = try uint16()
            let flags = try uint16()
            let questions = try uint16()
            let answers = try uint16()
            _ = try uint16()
            _ = try uint16()
            return (id, flags, questions, answers)
        }

        /// A name at the cursor, compression pointers followed (each strictly backwards, at most
        /// `pointersMax`); the cursor moves past the name as written here.
        mutating func name() throws(DNSMessageError) -> String {
            var labels: [String] = []
            var position = offset
            var resume: Int?
            var pointers = 0
            var length = 1
            while true {
                guard position < bytes.count else { throw .malformed("a name runs past the message") }
                let byte = bytes[position]
                switch byte & 0xC0 {
                case 0xC0:
                    guard position + 1 < bytes.count else { throw .malformed("a name's pointer runs past the message") }
                    let target = Int(byte & 0x3F) << 8 | Int(bytes[position + 1])
                    pointers += 1
                    guard target < position, pointers <= DNSMessage.pointersMax else { throw .malformed("a name's pointer loops or points forwards") }
                    if resume == nil { resume = position + 2 }
                    position = target
                case 0x00:
                    let count = Int(byte)
                    if count == 0 {
                        offset = resume ?? position + 1
                        return labels.joined(separator: ".")
                    }
                    guard position + 1 + count <= bytes.count else { throw .malformed("a label runs past the message") }
                    length += count + 1
                    guard length <= DNSMessage.nameBytesMax else { throw .malformed("a name longer than \(DNSMessage.nameBytesMax) bytes") }
                    let label = bytes[position + 1...position + count].map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }
                    labels.append(String(decoding: label, as: UTF8.self))
                    position += 1 + count
                default:
                    throw .malformed("a label type RFC 1035 does not define (\(byte >> 6))")
                }
            }
        }
    }
}

/// A DNS message that cannot be written or read: what is wrong, for the check's evidence.
public enum DNSMessageError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformed(String)

    public var description: String {
        switch self {
        case .malformed(let why): "malformed DNS message: \(why)"
        }
    }
}
