import COpenSSL
import UpkeepCore

/// SHA-256 on OpenSSL's EVP interface (hardware-accelerated where the CPU allows): the one
/// implementation behind every digest Upkeep computes or checks — k3s artifacts and backups in
/// the controller, staged binaries in the agent, the protocol's chunk streams, Flux's
/// `install.yaml`, the sandbox's release server. As text a digest is 64 lowercase hex digits, as
/// `sha256sum` and `openssl dgst -sha256` print it.
///
/// A plain digest: never use it where a keyed MAC, a signature or a password hash is needed.
public enum SHA256 {
    /// The length of a digest in bytes.
    public static let digestBytes = SHA256Text.digestBytes

    /// The digest of `bytes` in one call.
    public static func digest(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let ok = EVP_Digest(bytes.baseAddress, bytes.count, &digest, &length, EVP_sha256(), nil)
        precondition(ok == 1 && Int(length) == digestBytes, "OpenSSL EVP_Digest(SHA-256) failed")
        return Array(digest.prefix(digestBytes))
    }

    /// The digest of `bytes` in one call.
    public static func digest(_ bytes: [UInt8]) -> [UInt8] {
        bytes.withUnsafeBytes { digest($0) }
    }

    /// The digest of `bytes` as 64 lowercase hex digits.
    public static func hex(_ bytes: [UInt8]) -> String {
        lowercaseHex(digest(bytes))
    }

    /// Bytes (normally a digest) as lowercase hex digits, two per byte (`UpkeepCore.SHA256Text`).
    public static func lowercaseHex(_ bytes: some Sequence<UInt8>) -> String { SHA256Text.lowercaseHex(bytes) }

    /// True when `text` is a digest as this type writes it: exactly 64 lowercase hex digits.
    public static func isHex(_ text: String) -> Bool { SHA256Text.isHex(text) }

    /// The incremental form, for input that arrives in pieces (uploads, files, streams): feed
    /// it with `update`, then read the digest once with `finish` or `finishHex`; the result
    /// equals the one-shot digest of all pieces in order. Not Sendable: one owner feeds it.
    public final class Hasher {
        private let context: OpaquePointer
        private var finished = false

        public init() {
            guard let context = EVP_MD_CTX_new() else { preconditionFailure("EVP_MD_CTX_new failed: out of memory") }
            guard EVP_DigestInit_ex(context, EVP_sha256(), nil) == 1 else {
                EVP_MD_CTX_free(context)
                preconditionFailure("EVP_DigestInit_ex(SHA-256) failed")
            }
            self.context = context
        }

        deinit { EVP_MD_CTX_free(context) }

        public func update(_ bytes: UnsafeRawBufferPointer) {
            precondition(!finished, "SHA256.Hasher used after finish")
            guard let base = bytes.baseAddress, bytes.count > 0 else { return }
            guard EVP_DigestUpdate(context, base, bytes.count) == 1 else { preconditionFailure("EVP_DigestUpdate(SHA-256) failed") }
        }

        public func update(_ bytes: [UInt8]) {
            bytes.withUnsafeBytes { update($0) }
        }

        /// The 32-byte digest of everything fed so far; the hasher cannot be used afterwards.
        public func finish() -> [UInt8] {
            precondition(!finished, "SHA256.Hasher finished twice")
            finished = true
            var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
            var length: UInt32 = 0
            guard EVP_DigestFinal_ex(context, &digest, &length) == 1, Int(length) == SHA256.digestBytes else {
                preconditionFailure("EVP_DigestFinal_ex(SHA-256) failed")
            }
            return Array(digest.prefix(SHA256.digestBytes))
        }

        /// `finish()` as 64 lowercase hex digits.
        public func finishHex() -> String {
            SHA256.lowercaseHex(finish())
        }
    }
}

@available(*, unavailable)
extension SHA256.Hasher: Sendable {}
