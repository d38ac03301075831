/// How SHA-256 digests are written as text (64 lowercase hex digits), without the hashing:
/// the protocol's message types check that format, and they are also compiled on their own for
/// the frame decoder's fuzzer (fuzz/run.sh), which must not need OpenSSL. `UpkeepPKI.SHA256`
/// hashes and answers with the same functions.
public enum SHA256Text {
    public static let digestBytes = 32

    /// Bytes (normally a digest) as lowercase hex digits, two per byte.
    public static func lowercaseHex(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(2 * digestBytes)
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// True when `text` is a digest as written here: exactly 64 lowercase hex digits.
    public static func isHex(_ text: String) -> Bool {
        text.utf8.count == 2 * digestBytes && text.utf8.allSatisfy {
            (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0)
        }
    }
}
