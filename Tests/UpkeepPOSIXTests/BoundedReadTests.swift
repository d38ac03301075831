#if canImport(Glibc)
import Glibc
#endif
import Testing
import UpkeepPOSIX

@Suite struct BoundedReadTests {
    /// A file of `count` bytes in a fresh directory; the directory is removed by the caller.
    func file(_ count: Int) throws -> (directory: String, path: String) {
        var template = Array("/tmp/upkeep-bounded-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        let directory = String(cString: try #require(made))
        let path = directory + "/data"
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        #expect(descriptor >= 0)
        let bytes = (0..<count).map { UInt8(truncatingIfNeeded: $0 * 7) }
        #expect(bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) } == count)
        close(descriptor)
        return (directory, path)
    }

    func remove(_ directory: String) {
        unlink(directory + "/data")
        rmdir(directory)
    }

    @Test func readsEveryByteUpToTheBound() throws {
        let (directory, path) = try file(200_000)
        defer { remove(directory) }
        let bytes = try BoundedRead.bytes(path, bytesMax: 200_000)
        #expect(bytes.count == 200_000 && bytes[199_999] == UInt8(truncatingIfNeeded: 199_999 * 7))
        #expect(throws: BoundedRead.Failure.tooLarge) { try BoundedRead.bytes(path, bytesMax: 199_999) }
        #expect(try BoundedRead.bytes(path, bytesMax: 10_000_000).count == 200_000)
    }

    @Test func namesTheFailedCall() throws {
        #expect(throws: BoundedRead.Failure.open(ENOENT)) { try BoundedRead.bytes("/nonexistent/upkeep", bytesMax: 10) }
        #expect(throws: BoundedRead.Failure.read(EISDIR)) { try BoundedRead.bytes("/tmp", bytesMax: 10) }
        let (directory, path) = try file(0)
        defer { remove(directory) }
        #expect(try BoundedRead.bytes(path, bytesMax: 0).isEmpty)
    }
}
