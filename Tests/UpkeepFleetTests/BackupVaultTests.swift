import Foundation
import NIOCore
import Testing
import UpkeepFleet
import UpkeepTestSupport

/// Sealed backups on real files: what goes in comes out, an independent AES-GCM implementation
/// (Python's `cryptography`, on the system OpenSSL) reads the documented format, and any damage,
/// another key or a key others can read is refused without leaving a byte behind.
@Suite struct BackupVaultTests {
    let directory: TemporaryDirectory
    let vault: BackupVault

    init() throws {
        directory = try TemporaryDirectory()
        vault = BackupVault(directory: directory.file("state/backups"), keyFile: directory.file("state/backup.key"))
    }

    static func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return UInt8(truncatingIfNeeded: state >> 33)
        }
    }

    /// Seals `bytes` in uneven pieces (1 byte, 64 KiB, the rest) as a download would arrive.
    func seal(_ bytes: [UInt8], name: String = "b1-server-1") throws -> String {
        let writer = try vault.seal(name: name)
        var offset = 0
        for size in [1, 65_536, bytes.count] where offset < bytes.count {
            let end = min(bytes.count, offset + size)
            try writer.append(ByteBuffer(bytes: bytes[offset..<end]))
            offset = end
        }
        #expect(try writer.finish() == Int64(bytes.count))
        return writer.path
    }

    func mode(_ path: String) throws -> Int {
        (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int) ?? -1
    }

    func sha256sum(_ path: String) throws -> String {
        let result = try runProcess("/usr/bin/sha256sum", [path])
        return String(result.output.prefix(64))
    }

    @Test func whatIsSealedOpensIntact() throws {
        let bytes = Self.randomBytes(3 << 20 + 17, seed: 1)
        let sealed = try seal(bytes)
        #expect(sealed.hasSuffix("/b1-server-1.upkb"))
        #expect(try mode(sealed) == 0o600 && mode(vault.directory) == 0o700 && mode(vault.keyFile) == 0o600)
        #expect(try Data(contentsOf: URL(fileURLWithPath: vault.keyFile)).count == 32)
        let sealedBytes = try Data(contentsOf: URL(fileURLWithPath: sealed))
        #expect(sealedBytes.count == bytes.count + 8 + 12 + 16)
        #expect(Array(sealedBytes.prefix(8)) == Array("UPKEEPB1".utf8))
        #expect(sealedBytes.range(of: Data(bytes.prefix(64))) == nil, "the plaintext must not appear in the sealed file")

        let output = directory.file("restore.db")
        let opened = try vault.open(sealed, to: output)
        #expect(try Array(Data(contentsOf: URL(fileURLWithPath: output))) == bytes)
        #expect(opened.bytes == Int64(bytes.count))
        #expect(opened.sha256 == (try sha256sum(output)), "the reported SHA-256 is the plaintext's, as sha256sum says")
        #expect(try mode(output) == 0o600)
        #expect(!FileManager.default.fileExists(atPath: output + ".partial"))
    }

    @Test func pythonsAESGCMReadsTheDocumentedFormat() throws {
        let bytes = Self.randomBytes(200_003, seed: 2)
        let sealed = try seal(bytes)
        let output = directory.file("python.out")
        // docs/backups.md: magic(8) | nonce(12) | ciphertext | tag(16); the first 20 bytes are the AAD.
        let script = """
            import sys
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
            key = open(sys.argv[1], 'rb').read()
            blob = open(sys.argv[2], 'rb').read()
            header, body = blob[:20], blob[20:]
            assert header[:8] == b'UPKEEPB1'
            open(sys.argv[3], 'wb').write(AESGCM(key).decrypt(header[8:20], body, header))
            """
        let result = try runProcess("/usr/bin/python3", ["-c", script, vault.keyFile, sealed, output])
        #expect(result.status == 0, "\(result.error)")
        #expect(try Array(Data(contentsOf: URL(fileURLWithPath: output))) == bytes)
    }

    @Test(arguments: [("magic", 0), ("nonce", 10), ("ciphertext", 5_000), ("tag", -1)])
    func anyDamagedByteIsRefusedAndLeavesNothing(part: String, offset: Int) throws {
        let sealed = try seal(Self.randomBytes(70_000, seed: 3))
        var bytes = try Data(contentsOf: URL(fileURLWithPath: sealed))
        let index = offset >= 0 ? offset : bytes.count + offset
        bytes[index] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: sealed))
        let output = directory.file("damaged.out")
        #expect(throws: BackupError.self, "a flipped bit in the \(part)") { try vault.open(sealed, to: output) }
        #expect(!FileManager.default.fileExists(atPath: output) && !FileManager.default.fileExists(atPath: output + ".partial"))
    }

    @Test func aTruncatedFileIsRefused() throws {
        let sealed = try seal(Self.randomBytes(70_000, seed: 4))
        let bytes = try Data(contentsOf: URL(fileURLWithPath: sealed))
        try bytes.prefix(bytes.count - 1).write(to: URL(fileURLWithPath: sealed))
        let output = directory.file("short.out")
        #expect(throws: BackupError.self) { try vault.open(sealed, to: output) }
        #expect(!FileManager.default.fileExists(atPath: output))
        try Data("not a backup".utf8).write(to: URL(fileURLWithPath: sealed))
        let error = #expect(throws: BackupError.self) { try vault.open(sealed, to: output) }
        #expect(error?.description.contains("not a sealed Upkeep backup") == true, "\(String(describing: error))")
    }

    @Test func anotherKeyCannotOpenIt() throws {
        let sealed = try seal(Self.randomBytes(1000, seed: 5))
        let other = BackupVault(directory: directory.file("other"), keyFile: directory.file("other.key"))
        _ = try other.seal(name: "make-the-key").finish()
        let error = #expect(throws: BackupError.self) { try other.open(sealed, to: directory.file("x")) }
        #expect(error?.description.contains("another key") == true, "\(String(describing: error))")
    }

    @Test func aKeyOthersCanReadOrOfTheWrongSizeIsRefused() throws {
        _ = try seal(Self.randomBytes(10, seed: 6))
        chmod(vault.keyFile, 0o644)
        let loose = #expect(throws: BackupError.self) { _ = try vault.seal(name: "again") }
        #expect(loose?.description.contains("chmod 600") == true, "\(String(describing: loose))")
        chmod(vault.keyFile, 0o600)
        try Data(repeating: 7, count: 16).write(to: URL(fileURLWithPath: vault.keyFile))
        let short = #expect(throws: BackupError.self) { _ = try vault.seal(name: "again") }
        #expect(short?.description.contains("exactly 32 bytes") == true, "\(String(describing: short))")
    }

    @Test func openingWithoutAKeySaysTheKeyIsNeeded() throws {
        let error = #expect(throws: BackupError.self) { try vault.open(directory.file("none.upkb"), to: directory.file("out")) }
        #expect(error?.description.contains("cannot be opened without it") == true, "\(String(describing: error))")
        #expect(!FileManager.default.fileExists(atPath: vault.keyFile), "opening never makes a key")
    }

    @Test func anExistingOutputIsKeptUnlessReplaced() throws {
        let sealed = try seal(Self.randomBytes(100, seed: 7))
        let output = try directory.write("precious", to: "existing")
        #expect(throws: BackupError.self) { try vault.open(sealed, to: output) }
        #expect(try String(contentsOfFile: output, encoding: .utf8) == "precious")
        try vault.open(sealed, to: output, replace: true)
        #expect(try Array(Data(contentsOf: URL(fileURLWithPath: output))) == Self.randomBytes(100, seed: 7))
    }

    @Test func anAbandonedWriterLeavesNoFile() throws {
        let writer = try vault.seal(name: "abandoned")
        try writer.append(ByteBuffer(bytes: Self.randomBytes(1000, seed: 8)))
        writer.abandon()
        #expect(try FileManager.default.contentsOfDirectory(atPath: vault.directory).isEmpty)
        #expect(throws: BackupError.self) { _ = try vault.seal(name: "../escape") }
    }
}
