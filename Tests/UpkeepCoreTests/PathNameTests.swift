import Foundation
import Testing
import UpkeepCore

/// `PathName` against coreutils' `dirname` and `basename` as the reference.
@Suite struct PathNameTests {
    static let paths = ["a", "/", "//", "/a", "/a/", "a/b", "a/b/", "a//b", "/a/b/c", "/a//b//", ".", "..", "a/", "./k3s", "/usr/local/bin/k3s"]

    static func coreutils(_ tool: String, _ path: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/\(tool)")
        process.arguments = ["--", path]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        return String(decoding: output, as: UTF8.self).replacingOccurrences(of: "\n", with: "")
    }

    @Test(arguments: paths) func directoryIsDirname(_ path: String) throws {
        #expect(PathName.directory(path) == (try Self.coreutils("dirname", path)))
    }

    @Test(arguments: paths) func baseIsBasename(_ path: String) throws {
        #expect(PathName.base(path) == (try Self.coreutils("basename", path)))
    }
}
