import Foundation
import Testing
import UpkeepPKI
import UpkeepTestSupport

/// The one SHA-256 helper: FIPS 180-2 vectors, the incremental form against the one-shot, and
/// `openssl dgst -sha256` as the peer.
@Suite struct SHA256Tests {
    /// 1 MiB of bytes that are not a repeated pattern (a linear congruential sequence).
    static let mebibyte: [UInt8] = {
        var state: UInt32 = 0x2545_F491
        return (0..<(1 << 20)).map { _ in
            state = state &* 1_664_525 &+ 1_013_904_223
            return UInt8(truncatingIfNeeded: state >> 24)
        }
    }()

    @Test func knownVectorsGiveTheirDigests() {
        let vectors = [
            ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
        ]
        for (input, expected) in vectors {
            #expect(SHA256.hex(Array(input.utf8)) == expected, "\"\(input)\"")
            #expect(SHA256.lowercaseHex(SHA256.digest(Array(input.utf8))) == expected, "\"\(input)\"")
            let hasher = SHA256.Hasher()
            for byte in input.utf8 { hasher.update([byte]) }
            #expect(hasher.finishHex() == expected, "\"\(input)\" a byte at a time")
        }
        #expect(SHA256.Hasher().finish() == SHA256.digest([]), "nothing fed is the empty input")
    }

    @Test func theIncrementalFormInUnevenPiecesEqualsTheOneShot() {
        let whole = SHA256.digest(Self.mebibyte)
        #expect(whole.count == SHA256.digestBytes)
        let hasher = SHA256.Hasher()
        var offset = 0
        let sizes = [0, 1, 63, 64, 65, 4096, 65_537, 1]
        var turn = 0
        while offset < Self.mebibyte.count {
            let end = min(offset + sizes[turn % sizes.count], Self.mebibyte.count)
            Self.mebibyte[offset..<end].withUnsafeBytes { hasher.update($0) }
            offset = end
            turn += 1
        }
        #expect(turn > 100, "fed in many pieces")
        #expect(hasher.finish() == whole)
        #expect(SHA256.hex(Self.mebibyte) != SHA256.hex(Array(Self.mebibyte.dropLast())))
    }

    @Test func digestsMatchOpenSSLDgstOnTheSameFile() throws {
        let directory = try TemporaryDirectory()
        for (name, bytes) in [("empty", [UInt8]()), ("abc", Array("abc".utf8)), ("mebibyte", Self.mebibyte)] {
            let path = directory.file(name)
            #expect(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
            let dgst = try openssl(["dgst", "-sha256", "-r", path])
            #expect(dgst.status == 0, "\(dgst.error)")
            let peer = String(dgst.output.prefix { $0 != " " })
            #expect(SHA256.isHex(peer), "openssl printed \(dgst.output)")
            #expect(SHA256.hex(bytes) == peer, "\(name)")
            let hasher = SHA256.Hasher()
            stride(from: 0, to: bytes.count, by: 100_000).forEach { start in
                bytes[start..<min(start + 100_000, bytes.count)].withUnsafeBytes { hasher.update($0) }
            }
            #expect(hasher.finishHex() == peer, "\(name), incrementally")
        }
    }

    @Test func onlySixtyFourLowercaseHexDigitsAreADigest() {
        let digest = SHA256.hex(Array("abc".utf8))
        #expect(SHA256.isHex(digest))
        #expect(!SHA256.isHex(digest.uppercased()))
        #expect(!SHA256.isHex(String(digest.dropLast())))
        #expect(!SHA256.isHex(digest + "0"))
        #expect(!SHA256.isHex(String(digest.dropLast()) + "g"))
        #expect(!SHA256.isHex(""))
        #expect(SHA256.lowercaseHex([0x00, 0x0f, 0xa0, 0xff]) == "000fa0ff")
    }
}
