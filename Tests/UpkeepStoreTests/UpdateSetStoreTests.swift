import Foundation
import Testing
import UpkeepCore
import UpkeepStore
import UpkeepTestSupport

/// The parent record of `upkeep apply --all` (issue 18, item 4) in a real SQLite file: written
/// again after every stage, read back through another connection, the unfinished one found.
@Suite struct UpdateSetStoreTests {
    static let t0 = Instant(milliseconds: 1_790_000_000_000)
    static let by = Initiator(user: "alice", host: "ctl1")

    static func stages() -> [UpdateSetRecord.Stage] {
        [UpdateSetRecord.Stage(component: "longhorn", from: "v1.7.2", to: "v1.8.0", why: "before k3s"),
         UpdateSetRecord.Stage(component: "k3s", from: "v1.31.4+k3s1", to: "v1.32.4+k3s1", why: "after Longhorn v1.8.0"),
         UpdateSetRecord.Stage(component: "flux", from: "v2.4.0", to: "v2.5.1", why: "after k3s")]
    }

    @Test func aSetIsRewrittenStageByStageAndReadBackThroughAnotherConnection() throws {
        let directory = try TemporaryDirectory()
        let store = try StateStore(stateDirectory: directory.file("state"))
        var set = UpdateSetRecord(id: "s20261207-101500", createdAt: Self.t0, stages: Self.stages(), by: Self.by)
        try store.saveUpdateSet(set)
        set.stages[0].state = .done
        set.stages[0].ref = "u20261207-101501"
        set.stages[1].state = .running
        set.stages[1].startedAt = Self.t0.adding(seconds: 60)
        try store.saveUpdateSet(set)

        let other = try StateStore.reading(stateDirectory: directory.file("state"))
        #expect(try other.unfinishedUpdateSet() == set)
        #expect(try other.updateSet(id: set.id)?.runningStage?.component == "k3s")
        #expect(try other.updateSet(id: "s-none") == nil)

        set.stages[1].state = .failed
        set.stages[1].exitCode = 1
        set.stages[2].state = .notRun
        set.outcome = .failed
        set.finishedAt = Self.t0.adding(seconds: 600)
        try store.saveUpdateSet(set)
        #expect(try other.unfinishedUpdateSet() == nil, "a finished set is not carried on")
        var newer = UpdateSetRecord(id: "s20261207-121500", createdAt: Self.t0.adding(seconds: 7200), stages: Self.stages(), by: Self.by)
        newer.outcome = .completed
        try store.saveUpdateSet(newer)
        #expect(try other.updateSets(limit: 10).map(\.id) == [newer.id, set.id], "newest first")
        #expect(try other.updateSets(limit: 10).last?.stageSummary == "longhorn done, k3s failed, flux notRun")
    }
}
