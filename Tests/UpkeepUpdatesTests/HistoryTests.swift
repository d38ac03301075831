import Foundation
import Testing
import UpkeepTestSupport
import UpkeepUpdates

@Suite("The check history as JSON lines")
struct HistoryTests {
    static func record(_ index: Int) -> CheckRecord {
        CheckRecord(checkedAt: "2025-10-02T00:00:\(index < 10 ? "0" : "")\(index)Z", outcome: "up-to-date", exitCode: 0, releaseSource: "fixture",
                    components: [.init(component: .k3s, installed: "v1.33.5+k3s1", target: "v1.33.5+k3s1", updateAvailable: false, path: [], warnings: [])],
                    error: nil)
    }

    @Test("records append, read back in order, and survive a torn last line")
    func appendAndRead() throws {
        let state = try TemporaryDirectory()
        let history = JSONLinesCheckHistory(stateDirectory: state.file("nested/state"))
        for index in 0..<3 { try history.record(Self.record(index)) }
        #expect(try history.recent(limit: 10) == (0..<3).map(Self.record))
        #expect(try history.recent(limit: 2) == [Self.record(1), Self.record(2)])
        let handle = try #require(FileHandle(forWritingAtPath: history.path))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(#"{"checkedAt":"2025-10-"#.utf8))
        try handle.close()
        #expect(try history.recent(limit: 10).count == 3)
        try history.record(Self.record(4))
        #expect(try history.recent(limit: 10).last == Self.record(4))
        let directoryMode = try FileManager.default.attributesOfItem(atPath: state.file("nested/state"))[.posixPermissions] as? Int
        #expect(directoryMode == 0o700)
    }

    @Test("the file stays bounded: past its size the older half goes")
    func bounded() throws {
        let state = try TemporaryDirectory()
        let history = JSONLinesCheckHistory(stateDirectory: state.path, bytesMax: 4096)
        for index in 0..<60 { try history.record(Self.record(index)) }
        let size = try FileManager.default.attributesOfItem(atPath: history.path)[.size] as? Int ?? 0
        #expect(size <= 4096)
        let kept = try history.recent(limit: 100)
        #expect(kept.last == Self.record(59))
        #expect(kept.count < 60 && kept.count > 5)
        #expect(try FileManager.default.attributesOfItem(atPath: history.path)[.posixPermissions] as? Int == 0o600)
    }

    @Test("an unwritable state directory is a clear error")
    func unwritable() throws {
        let state = try TemporaryDirectory()
        let blocker = try state.write("a file, not a directory", to: "state")
        #expect(throws: CheckHistoryError.self) { try JSONLinesCheckHistory(stateDirectory: blocker).record(Self.record(0)) }
    }
}
