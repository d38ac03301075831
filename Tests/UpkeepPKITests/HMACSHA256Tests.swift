import Foundation
import Testing
import UpkeepPKI
import UpkeepTestSupport

/// The webhook signature's MAC: RFC 4231's vectors, and `openssl dgst -sha256 -hmac` as the peer
/// a receiver would use.
@Suite struct HMACSHA256Tests {
    static func bytes(hex: String) -> [UInt8] {
        var result: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            result.append(UInt8(hex[index..<next], radix: 16) ?? 0)
            index = next
        }
        return result
    }

    /// https://www.rfc-editor.org/rfc/rfc4231#section-4: cases 1, 2, 3 and 6 (a key longer than a block).
    @Test func rfc4231VectorsGiveTheirMACs() {
        let cases: [(key: [UInt8], data: [UInt8], mac: String)] = [
            ([UInt8](repeating: 0x0b, count: 20), Array("Hi There".utf8),
             "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
            (Array("Jefe".utf8), Array("what do ya want for nothing?".utf8),
             "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
            ([UInt8](repeating: 0xaa, count: 20), [UInt8](repeating: 0xdd, count: 50),
             "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
            ([UInt8](repeating: 0xaa, count: 131), Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8),
             "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
        ]
        for vector in cases {
            #expect(HMACSHA256.hex(key: vector.key, message: vector.data) == vector.mac)
            #expect(HMACSHA256.mac(key: vector.key, message: vector.data) == Self.bytes(hex: vector.mac))
        }
    }

    @Test func macsMatchOpenSSLOnTheSameBody() throws {
        let directory = try TemporaryDirectory()
        let body = #"{"cluster":"prod","details":{},"event":"rollout.started","id":"x","time":"2026-12-07T10:00:00Z"}"#
        for (name, message) in [("empty", ""), ("body", body), ("unicode", "Grüße → ✓\n")] {
            let path = directory.file(name)
            #expect(FileManager.default.createFile(atPath: path, contents: Data(message.utf8)))
            let key = "0a1b2c3d4e5f-shared-secret"
            let peer = try openssl(["dgst", "-sha256", "-hmac", key, "-r", path])
            try #require(peer.status == 0, "\(peer.error)")
            let expected = String(peer.output.prefix { $0 != " " })
            #expect(HMACSHA256.hex(key: Array(key.utf8), message: Array(message.utf8)) == expected, "\(name): openssl printed \(peer.output)")
            #expect(HMACSHA256.matches(expected.uppercased(), key: Array(key.utf8), message: Array(message.utf8)))
            #expect(!HMACSHA256.matches(expected, key: Array((key + "x").utf8), message: Array(message.utf8)), "another key, another MAC")
            #expect(!HMACSHA256.matches(String(expected.dropLast()), key: Array(key.utf8), message: Array(message.utf8)))
        }
    }
}
