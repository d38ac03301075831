import Logging
import NIOConcurrencyHelpers
import Testing
import UpkeepHTTP
import UpkeepTestSupport
@testable import UpkeepHTTPServer

/// The connection's time bounds as scripts of events and instants, no sockets.
@Suite("Server connection deadlines")
struct ConnectionDeadlinesTests {
    static let bounds = ConnectionDeadlines.Bounds(headerReadNanoseconds: 10, requestNanoseconds: 100, idleNanoseconds: 50)
    typealias Deadline = ConnectionDeadlines.Deadline

    @Test("a new connection's first head is due within the header read time of accept, whether it says nothing or trickles")
    func firstHeadCountsFromAccept() {
        var silent = ConnectionDeadlines(bounds: Self.bounds, now: 0)
        #expect(silent.deadline == Deadline(at: 10, limit: .headerReadTimeout, answer: nil), "not the idle time (50)")
        #expect(silent.reached(now: 10) == Deadline(at: 10, limit: .headerReadTimeout, answer: nil))
        var trickling = ConnectionDeadlines(bounds: Self.bounds, now: 0)
        for now in 1...9 { trickling.handle(.bytesArrived, now: Int64(now)) }
        #expect(trickling.deadline?.at == 10, "one byte at a time buys nothing")
    }

    @Test("a streamed answer (a watch) stops the request time once its head is written; its end makes the connection idle")
    func streamingHasNoRequestDeadline() {
        var machine = ConnectionDeadlines(bounds: Self.bounds, now: 0)
        machine.handle(.headArrived, now: 1)
        machine.handle(.requestArrived, now: 1)
        #expect(machine.deadline == Deadline(at: 100, limit: .requestTimeout, answer: 503))
        machine.handle(.streamStarted, now: 5)
        #expect(machine.phase == .streaming && machine.deadline == nil)
        machine.handle(.bytesArrived, now: 500)
        #expect(machine.reached(now: 10_000) == nil, "the producer bounds a stream, not the request time")
        machine.handle(.answerWritten(keepAlive: true), now: 10_000)
        #expect(machine.deadline == Deadline(at: 10_050, limit: .idleTimeout, answer: nil))
    }

    @Test("after a keep-alive answer, idle until a byte arrives; then the header read time counts from that byte, whatever follows")
    func headerTimeCountsFromTheFirstByte() {
        var machine = ConnectionDeadlines(bounds: Self.bounds, now: 0)
        machine.handle(.headArrived, now: 1)
        machine.handle(.requestArrived, now: 1)
        machine.handle(.answerWritten(keepAlive: true), now: 2)
        #expect(machine.deadline == Deadline(at: 52, limit: .idleTimeout, answer: nil))
        machine.handle(.bytesArrived, now: 40)
        #expect(machine.deadline == Deadline(at: 50, limit: .headerReadTimeout, answer: nil))
        for now in 41...49 { machine.handle(.bytesArrived, now: Int64(now)) }
        #expect(machine.deadline?.at == 50, "one byte at a time buys nothing")
        #expect(machine.reached(now: 49) == nil)
        #expect(machine.reached(now: 50) == Deadline(at: 50, limit: .headerReadTimeout, answer: nil))
        #expect(machine.phase == .closed && machine.deadline == nil)
    }

    @Test("body and responder share the request time, counted from accept (later: the first byte); a keep-alive answer makes it idle again")
    func requestTimeAndKeepAlive() {
        var machine = ConnectionDeadlines(bounds: Self.bounds, now: 0)
        machine.handle(.bytesArrived, now: 5)
        machine.handle(.headArrived, now: 8)
        #expect(machine.deadline == Deadline(at: 100, limit: .requestTimeout, answer: 408))
        machine.handle(.bytesArrived, now: 60)
        machine.handle(.requestArrived, now: 70)
        #expect(machine.deadline == Deadline(at: 100, limit: .requestTimeout, answer: 503))
        machine.handle(.answerWritten(keepAlive: true), now: 80)
        #expect(machine.deadline == Deadline(at: 130, limit: .idleTimeout, answer: nil))
        machine.handle(.headArrived, now: 90)  // pipelined: its bytes came while answering
        #expect(machine.deadline == Deadline(at: 190, limit: .requestTimeout, answer: 408))
        machine.handle(.requestArrived, now: 91)
        machine.handle(.answerWritten(keepAlive: false), now: 92)
        #expect(machine.phase == .closed && machine.reached(now: 1_000) == nil)
    }

    @Test("a request time shorter than the header read time bounds the head too")
    func shorterRequestTimeBoundsTheHead() {
        var machine = ConnectionDeadlines(bounds: .init(headerReadNanoseconds: 100, requestNanoseconds: 30, idleNanoseconds: 50), now: 0)
        #expect(machine.deadline == Deadline(at: 30, limit: .requestTimeout, answer: nil))
        machine.handle(.bytesArrived, now: 1)
        #expect(machine.deadline == Deadline(at: 30, limit: .requestTimeout, answer: nil))
    }

    @Test("an early answer (413) closes; so does the connection going away")
    func earlyAnswerAndClose() {
        var machine = ConnectionDeadlines(bounds: Self.bounds, now: 0)
        machine.handle(.bytesArrived, now: 1)
        machine.handle(.headArrived, now: 2)
        machine.handle(.answerWritten(keepAlive: false), now: 3)
        #expect(machine.phase == .closed)
        var other = ConnectionDeadlines(bounds: Self.bounds, now: 0)
        other.handle(.closing, now: 1)
        other.handle(.bytesArrived, now: 2)
        #expect(other.phase == .closed && other.deadline == nil)
    }
}

@Suite("Limit log")
struct LimitLogTests {
    @Test("every hit is counted; a line per bound per interval, saying how many went unlogged")
    func rateLimited() {
        let log = RecordedLog()
        let clock = NIOLockedValueBox<UInt64>(0)
        let limits = LimitLog<ServerLimit>(logger: log.logger, intervalSeconds: 60, level: { $0 == .idleTimeout ? .debug : .warning },
                                           now: { clock.withLockedValue { $0 } })
        for second in 0..<5 {
            clock.withLockedValue { $0 = UInt64(second) * 1_000_000_000 }
            limits.record(.headerReadTimeout, "slow head \(second)")
        }
        limits.record(.idleTimeout, "idle")
        clock.withLockedValue { $0 = 61_000_000_000 }
        limits.record(.headerReadTimeout, "slow head again")
        #expect(limits.count(.headerReadTimeout) == 6 && limits.count(.idleTimeout) == 1 && limits.count(.connections) == 0)
        #expect(limits.counts.map(\.limit) == ServerLimit.allCases)
        let lines = log.lines
        #expect(lines.map(\.1) == ["slow head 0", "idle", "slow head again"])
        #expect(lines.map(\.0) == [.warning, .debug, .warning])
        #expect(lines[2].2["not_logged_since_last"] == "4" && lines[0].2["not_logged_since_last"] == nil)
        #expect(lines[0].2["limit"] == "header_read_timeout")
    }
}
