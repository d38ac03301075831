import Testing
import UpkeepCore

/// The cluster-DNS check's codec (RFC 1035): what it writes, what it reads back, and every
/// malformed answer refused as a value rather than a crash or a loop.
@Suite struct DNSMessageTests {
    static let name = "kubernetes.default.svc.cluster.local"

    @Test func aQueryIsOneQuestionForTheARecordsWithRecursionDesired() throws {
        let query = try DNSMessage.query(id: 0xBEEF, name: Self.name + ".")
        // Header: id, flags (RD), QDCOUNT 1, no records; then the labels, type A, class IN.
        #expect(Array(query[0..<12]) == [0xBE, 0xEF, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0])
        #expect(Array(query[12..<24]) == [10] + Array("kubernetes".utf8) + [7])
        #expect(Array(query.suffix(5)) == [0, 0, 1, 0, 1])
        #expect(query.count == 12 + Self.name.utf8.count + 2 + 4)
        let question = try DNSMessage.question(query)
        #expect(question == DNSMessage.Question(id: 0xBEEF, name: Self.name, type: 1, qclass: 1))
    }

    @Test func anAnswerWrittenForAQuestionReadsBackItsAddresses() throws {
        let question = try DNSMessage.question(try DNSMessage.query(id: 7, name: "Kubernetes.Default.svc.cluster.local"))
        let bytes = try DNSMessage.response(to: question, addresses: ["10.43.0.1", "10.43.0.2"])
        let answer = try DNSMessage.answer(bytes)
        #expect(answer == DNSMessage.Answer(id: 7, code: .noError, rawCode: 0, truncated: false, name: Self.name, addresses: ["10.43.0.1", "10.43.0.2"]))
        let failed = try DNSMessage.answer(try DNSMessage.response(to: question, code: .serverFailure))
        #expect(failed.code == .serverFailure && failed.code?.text == "SERVFAIL" && failed.addresses.isEmpty)
    }

    @Test func aCNAMEChainInTheAnswerIsFollowedAndOtherNamesIgnored() throws {
        // www.x -> CNAME web.x, web.x A 10.0.0.5, other.x A 10.9.9.9 (not ours).
        var bytes: [UInt8] = [0, 9, 0x81, 0x80, 0, 1, 0, 3, 0, 0, 0, 0]
        bytes += [3] + Array("www".utf8) + [1, 0x78, 0] + [0, 1, 0, 1]
        bytes += [0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 5, 0, 6] + [3] + Array("web".utf8) + [0xC0, 16]
        let web = bytes.count - 6
        bytes += [0xC0, UInt8(web), 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 0, 0, 5]
        bytes += [5] + Array("other".utf8) + [0xC0, 16, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 9, 9, 9]
        let answer = try DNSMessage.answer(bytes)
        #expect(answer.name == "www.x" && answer.addresses == ["10.0.0.5"])
    }

    @Test func malformedAnswersAreRefused() throws {
        let good = try DNSMessage.response(to: DNSMessage.question(try DNSMessage.query(id: 1, name: Self.name)), addresses: ["10.43.0.1"])
        func refused(_ bytes: [UInt8], _ because: String) {
            #expect(throws: DNSMessageError.self, "\(because)") { try DNSMessage.answer(bytes) }
        }
        refused([], "empty")
        refused(Array(good.prefix(11)), "shorter than a header")
        refused(try DNSMessage.query(id: 1, name: Self.name), "a query, not a response")
        refused(Array(repeating: 0, count: 513), "longer than 512 bytes")
        // Every truncation of a good answer: refused, never read past the end.
        for length in 12..<good.count { refused(Array(good.prefix(length)), "cut at \(length)") }
        var loop = good
        loop[12] = 0xC0
        loop[13] = 12
        refused(loop, "a pointer to itself")
        var forwards = good
        forwards[12] = 0xC0
        forwards[13] = 40
        refused(forwards, "a pointer forwards")
        var labelType = good
        labelType[12] = 0x40
        refused(labelType, "a label type of 01")
        var records = good
        records[6] = 0x01
        records[7] = 0x00
        refused(records, "256 answers claimed")
        var rdata = good
        rdata[rdata.count - 5] = 200
        refused(rdata, "a record's length past the end")
        var shortA = good
        shortA[shortA.count - 5] = 3
        refused(Array(shortA.dropLast()), "an A record of 3 bytes")
        var twoQuestions = good
        twoQuestions[5] = 2
        refused(twoQuestions, "two questions")
        // A record whose owner is a name of 257 bytes (four labels of 63).
        var long: [UInt8] = [0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 1, 0x78, 0, 0, 1, 0, 1]
        for _ in 0..<4 { long += [63] + Array(repeating: 0x61, count: 63) }
        long += [0, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 0, 0, 1]
        refused(long, "a name of more than 255 bytes")
    }

    @Test func randomBytesNeverCrashTheReader() {
        var generator = SeededGenerator(seed: 18)
        let good = (try? DNSMessage.response(to: DNSMessage.question(try DNSMessage.query(id: 1, name: Self.name)), addresses: ["10.43.0.1"])) ?? []
        for _ in 0..<20_000 {
            var bytes = good
            for _ in 0..<Int.random(in: 1...6, using: &generator) {
                bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
            }
            if Bool.random(using: &generator) { bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &generator))) }
            if let answer = try? DNSMessage.answer(bytes) { #expect(answer.addresses.count <= DNSMessage.recordsMax) }
            _ = try? DNSMessage.question(bytes)
        }
    }

    @Test func namesAndAddressesThatCannotBeWrittenAreRefused() throws {
        #expect(throws: DNSMessageError.self) { try DNSMessage.query(id: 1, name: "") }
        #expect(throws: DNSMessageError.self) { try DNSMessage.query(id: 1, name: "a..b") }
        #expect(throws: DNSMessageError.self) { try DNSMessage.query(id: 1, name: String(repeating: "a", count: 64) + ".x") }
        #expect(throws: DNSMessageError.self) { try DNSMessage.query(id: 1, name: "spaces are. not names") }
        #expect(throws: DNSMessageError.self) {
            try DNSMessage.query(id: 1, name: Array(repeating: String(repeating: "a", count: 60), count: 5).joined(separator: "."))
        }
        let question = DNSMessage.Question(id: 1, name: "x", type: 1, qclass: 1)
        #expect(throws: DNSMessageError.self) { try DNSMessage.response(to: question, addresses: ["10.43.0"]) }
    }
}
