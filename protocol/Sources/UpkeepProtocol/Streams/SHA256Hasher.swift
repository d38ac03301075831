import COpenSSL
import NIOCore

/// Incremental SHA-256 on OpenSSL's EVP interface (hardware-accelerated where the CPU allows).
/// Not Sendable: one owner feeds it and reads the digest once.
public final class SHA256Hasher {
    private let context: OpaquePointer

    public init() {
        guard let context = EVP_MD_CTX_new() else { preconditionFailure("EVP_MD_CTX_new failed: out of memory") }
        guard EVP_DigestInit_ex(context, EVP_sha256(), nil) == 1 else { preconditionFailure("EVP_DigestInit_ex(sha256) failed") }
        self.context = context
    }

    deinit { EVP_MD_CTX_free(context) }

    public func update(_ buffer: ByteBuffer) {
        buffer.withUnsafeReadableBytes { bytes in
            guard let base = bytes.baseAddress else { return }
            guard EVP_DigestUpdate(context, base, bytes.count) == 1 else { preconditionFailure("EVP_DigestUpdate failed") }
        }
    }

    /// The 32-byte digest; the hasher must not be used afterwards.
    public func update(_ bytes: [UInt8]) {
        guard EVP_DigestUpdate(context, bytes, bytes.count) == 1 else { preconditionFailure("EVP_DigestUpdate failed") }
    }

    public func finish() -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        guard EVP_DigestFinal_ex(context, &digest, &length) == 1, length == 32 else {
            preconditionFailure("EVP_DigestFinal_ex failed")
        }
        return digest
    }
}

@available(*, unavailable)
extension SHA256Hasher: Sendable {}
