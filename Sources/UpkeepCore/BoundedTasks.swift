/// One task per item, at most `atOnce` running at a time: the fan-out the controller makes to its
/// agents and an agent to its peers. Each body bounds its own wait; this bounds how many wait
/// together. Never throws: a body returns what happened to its item.
public enum BoundedTasks {
    /// The bodies' results in the items' order.
    public static func map<Item: Sendable, Result: Sendable>(_ items: [Item], atOnce: Int,
                                                             _ body: @escaping @Sendable (Item) async -> Result) async -> [Result] {
        var results = [Result?](repeating: nil, count: items.count)
        await withTaskGroup(of: (Int, Result).self) { tasks in
            var next = 0
            func launch() -> Bool {
                guard next < items.count else { return false }
                let (index, item) = (next, items[next])
                next += 1
                tasks.addTask { (index, await body(item)) }
                return true
            }
            var running = 0
            while running < max(1, atOnce), launch() { running += 1 }
            for await (index, result) in tasks {
                results[index] = result
                _ = launch()
            }
        }
        return results.compactMap { $0 }
    }
}
