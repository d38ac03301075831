import COpenSSL
import UpkeepCore

/// HMAC-SHA256 (RFC 2104 with SHA-256, https://www.rfc-editor.org/rfc/rfc4231) on OpenSSL's
/// one-shot `HMAC()`: the signature of a notification webhook's body
/// (`X-Upkeep-Signature-256: sha256=<hex>`, docs/notifications.md), which a receiver checks
/// with the same shared key, e.g. `openssl dgst -sha256 -hmac KEY`.
///
/// It never keeps, prints or logs the key. To check a signature, compare with `matches`, which
/// does not stop at the first differing byte.
public enum HMACSHA256 {
    /// The length of a MAC in bytes.
    public static let macBytes = SHA256.digestBytes

    /// The MAC of `message` under `key` (any length; keys longer than a block are hashed first,
    /// as RFC 2104 says).
    public static func mac(key: [UInt8], message: [UInt8]) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        // Empty arrays may have no address; OpenSSL wants one even for zero bytes.
        let keyBytes = key.isEmpty ? [0] : key
        let messageBytes = message.isEmpty ? [0] : message
        let result = keyBytes.withUnsafeBufferPointer { keyBuffer in
            messageBytes.withUnsafeBufferPointer { messageBuffer in
                HMAC(EVP_sha256(), keyBuffer.baseAddress, Int32(key.count), messageBuffer.baseAddress, message.count, &output, &length)
            }
        }
        precondition(result != nil && Int(length) == macBytes, "OpenSSL HMAC(SHA-256) failed")
        return Array(output.prefix(macBytes))
    }

    /// The MAC as 64 lowercase hex digits, as `openssl dgst -sha256 -hmac` prints it.
    public static func hex(key: [UInt8], message: [UInt8]) -> String {
        SHA256Text.lowercaseHex(mac(key: key, message: message))
    }

    /// Whether `candidate` (hex, either case) is the MAC of `message` under `key`; the comparison
    /// takes the same time wherever the first difference is.
    public static func matches(_ candidate: String, key: [UInt8], message: [UInt8]) -> Bool {
        let expected = Array(hex(key: key, message: message).utf8)
        let given = Array(candidate.lowercased().utf8)
        guard expected.count == given.count else { return false }
        return zip(expected, given).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
