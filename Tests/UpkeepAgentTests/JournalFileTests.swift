import Foundation
import Testing
import UpkeepAgent
import UpkeepAgentCore
import UpkeepCore
import UpkeepTestSupport

@Suite struct JournalFileTests {
    private func entry(_ id: String) -> JournalRecord {
        .began(OperationEntry(id: id, kind: .cordon, fingerprint: "cordon", startedAt: Instant(milliseconds: 1), plan: nil))
    }

    @Test func recordsSurviveReopeningAndATornLastLineIsDropped() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("journal.jsonl")
        let journal = JournalFile(path: path)
        #expect(try journal.open().isEmpty)
        try journal.append(entry("a"))
        try journal.append(entry("b"))
        // A crash in the middle of an append leaves half a line.
        let handle = try #require(FileHandle(forWritingAtPath: path))
        handle.seekToEndOfFile()
        handle.write(Data(#"{"began":{"_0":{"id":"c","ki"#.utf8))
        try handle.close()
        let reopened = JournalFile(path: path)
        let records = try reopened.open()
        #expect(records == [entry("a"), entry("b")])
        try reopened.append(entry("d"))
        #expect(try JournalFile(path: path).open() == [entry("a"), entry("b"), entry("d")])
    }

    @Test func damagedLineBeforeTheLastIsAnErrorNamingIt() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("journal.jsonl")
        let journal = JournalFile(path: path)
        _ = try journal.open()
        try journal.append(entry("a"))
        var text = try String(contentsOfFile: path, encoding: .utf8)
        text = "garbage\n" + text
        try text.write(toFile: path, atomically: false, encoding: .utf8)
        let error = try #require(throws: AgentFailure.self) { try JournalFile(path: path).open() }
        #expect(error.message.contains("line 1 is damaged") && error.message.contains("move the file aside"))
    }

    @Test func compactionKeepsTheStateInOneRecord() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("journal.jsonl")
        let journal = JournalFile(path: path)
        _ = try journal.open()
        var state = JournalState()
        for index in 0..<10 {
            let record = entry("op-\(index)")
            state.apply(record)
            try journal.append(record)
        }
        try journal.compact(state)
        try journal.append(entry("after"))
        state.apply(entry("after"))
        let records = try JournalFile(path: path).open()
        #expect(records.count == 2)
        #expect(JournalState(records: records) == state)
    }
}
