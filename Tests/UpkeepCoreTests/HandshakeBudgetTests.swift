import Testing
import UpkeepCore

/// The TLS handshake budget (PROTOCOL.md 5.2, and the HTTP server with TLS): connections still
/// unauthenticated only ever push out the oldest of their own source, then the oldest of all; a
/// new connection always gets in.
@Suite struct HandshakeBudgetTests {
    @Test func aSourceOverItsCapPushesOutItsOwnOldest() {
        var budget = HandshakeBudget<Int>(handshakesMax: 6, handshakesPerSourceMax: 2)
        let closed1 = budget.begin(1, source: "10.0.0.9")
        #expect(closed1.isEmpty)
        let closed2 = budget.begin(2, source: "10.0.0.1")
        #expect(closed2.isEmpty)
        let closed3 = budget.begin(3, source: "10.0.0.9")
        #expect(closed3.isEmpty)
        let closed4 = budget.begin(4, source: "10.0.0.9")
        #expect(closed4 == [.init(key: 1, source: "10.0.0.9", reason: .perSource)])
        let closed5 = budget.begin(5, source: "10.0.0.9")
        #expect(closed5 == [.init(key: 3, source: "10.0.0.9", reason: .perSource)])
        #expect(budget.count == 3 && budget.count(from: "10.0.0.9") == 2 && budget.contains(2))
    }

    @Test func manySourcesOverTheBudgetPushOutTheOldestOfAll() {
        var budget = HandshakeBudget<Int>(handshakesMax: 3, handshakesPerSourceMax: 2)
        for key in 1...3 {
            let closed = budget.begin(key, source: "10.0.0.\(key)")
            #expect(closed.isEmpty)
        }
        let closed6 = budget.begin(4, source: "10.0.0.4")
        #expect(closed6 == [.init(key: 1, source: "10.0.0.1", reason: .overall)])
        #expect(budget.count == 3 && !budget.contains(1) && budget.count(from: "10.0.0.1") == 0)
    }

    @Test func anEndedHandshakeFreesItsPlaceAndAnEvictedOneIsIgnored() {
        var budget = HandshakeBudget<Int>(handshakesMax: 2, handshakesPerSourceMax: 2)
        _ = budget.begin(1, source: "a")
        _ = budget.begin(2, source: "a")
        let ended = budget.end(1)
        #expect(ended)
        let closed7 = budget.begin(3, source: "b")
        #expect(closed7.isEmpty)
        let closed8 = budget.begin(4, source: "b")
        #expect(closed8 == [.init(key: 2, source: "a", reason: .overall)])
        let endedAgain = budget.end(2)
        #expect(!endedAgain, "already pushed out")
        #expect(budget.count == 2 && budget.count(from: "a") == 0 && budget.count(from: "b") == 2)
    }

    /// A flood of 1,100 from one address holds at most the per-source cap, whatever its order.
    @Test func aFloodFromOneAddressHoldsOnlyItsCap() {
        var budget = HandshakeBudget<Int>(handshakesMax: 64, handshakesPerSourceMax: 8)
        var closed = 0
        for key in 0..<1_100 { closed += budget.begin(key, source: "127.0.0.1").count }
        #expect(closed == 1_092 && budget.count == 8)
        let controller = budget.begin(-1, source: "127.0.0.1")
        #expect(controller.count == 1 && budget.contains(-1))
    }
}
