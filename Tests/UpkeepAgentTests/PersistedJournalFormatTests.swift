import Foundation
import Testing
import UpkeepAgent
import UpkeepAgentCore
import UpkeepCore
import UpkeepTestSupport

/// An agent upgraded in place reads the journal its previous build wrote.
/// Tests/Fixtures/agent-journal.jsonl was written by the agent before its times became
/// `UpkeepCore.Instant`: a cordon, a committed install, a reverted one, one the watchdog kept, and
/// one whose watch is open, then a snapshot of the whole state. It must still load, mean the same
/// moments, and be written back byte for byte.
@Suite struct PersistedJournalFormatTests {
    static let fixture = URL(filePath: #filePath).deletingLastPathComponent()
        .appending(path: "../Fixtures/agent-journal.jsonl").standardized

    @Test func aJournalWrittenEarlierLoadsAndIsWrittenBackByteForByte() throws {
        let directory = try TemporaryDirectory()
        let original = try Data(contentsOf: Self.fixture)
        let copy = directory.file("journal.jsonl")
        try original.write(to: URL(filePath: copy))
        let records = try JournalFile(path: copy).open()
        #expect(records.count == 38)
        let rewritten = JournalFile(path: directory.file("rewritten.jsonl"))
        _ = try rewritten.open()
        for record in records { try rewritten.append(record) }
        #expect(try Data(contentsOf: URL(filePath: rewritten.path)) == original)
        // The snapshot holds what the records fold into.
        guard case .snapshot(let snapshot) = records.last else { Issue.record("the last record is not a snapshot"); return }
        #expect(JournalState(records: records.dropLast()) == snapshot)
    }

    @Test func theOpenWatchFiresAtTheDeadlineThatWasWritten() throws {
        let records = try JournalFile(path: Self.fixture.path).open()
        let state = JournalState(records: records)
        let watch = try #require(state.watch)
        #expect(watch.installID == "r1:f3:install:1")
        var machine = UpgradeMachine(journal: state)
        let live = LiveBinary(sha256: watch.installed.sha256, k3sVersion: watch.installed.k3sVersion)
        #expect(machine.handle(.recover(live: live), now: Instant(milliseconds: 1_765_001_207_693)).isEmpty)
        #expect(machine.nextWake == Instant(milliseconds: 1_765_001_207_694))
        let due = machine.handle(.tick, now: Instant(milliseconds: 1_765_001_207_694))
        #expect(due == [.perform(.probe(expectedK3sVersion: "v1.31.2+k3s1", notBefore: Instant(milliseconds: 1_765_001_207_694)), token: 1)])
        let started = try #require(state.operation("r1:f0:cordon:1"))
        #expect(started.startedAt == Instant(milliseconds: 1_765_000_000_000) && started.finishedAt == Instant(milliseconds: 1_765_000_000_120))
    }
}
