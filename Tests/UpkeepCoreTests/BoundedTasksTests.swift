import Testing
import UpkeepCore

/// `BoundedTasks.map`: every item's result, in the items' order, never more bodies running at
/// once than allowed.
@Suite struct BoundedTasksTests {
    actor Gauge {
        var running = 0
        var most = 0
        func enter() { running += 1; most = max(most, running) }
        func leave() { running -= 1 }
    }

    @Test func resultsKeepTheItemsOrderAndAtMostAtOnceRun() async {
        let gauge = Gauge()
        let items = Array(0..<50)
        let results = await BoundedTasks.map(items, atOnce: 4) { item in
            await gauge.enter()
            // Later items finish first: the order of the results is the items', not completion's.
            for _ in 0..<(50 - item) { await Task.yield() }
            await gauge.leave()
            return item * 2
        }
        #expect(results == items.map { $0 * 2 })
        let most = await gauge.most
        #expect(most >= 1 && most <= 4, "\(most) ran at once")
        #expect(await BoundedTasks.map([Int](), atOnce: 4) { $0 }.isEmpty)
        #expect(await BoundedTasks.map([1, 2], atOnce: 0) { $0 } == [1, 2], "at least one at a time")
    }
}
