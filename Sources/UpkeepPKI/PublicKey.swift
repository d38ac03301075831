import COpenSSL
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A public key that checks detached signatures made by someone else's private key (the
/// operator's mirror-index key): Ed25519 or ECDSA P-256, read from a PEM
/// `-----BEGIN PUBLIC KEY-----` block (SubjectPublicKeyInfo, what `openssl pkey -pubout` writes).
///
/// Sendable for the same reason as `PrivateKey`: OpenSSL 3 allows concurrent verification
/// with one `EVP_PKEY`, and nobody mutates it.
public final class PublicKey: @unchecked Sendable {
    let pointer: OpaquePointer
    public let keyType: KeyType

    /// Reads a PEM public key from a file.
    public convenience init(pemFile path: String) throws {
        try self.init(pem: PEMFile.contents(path), source: path)
    }

    /// Parses a PEM public key.
    public convenience init(pem: String) throws {
        try self.init(pem: pem, source: "PEM text")
    }

    private init(pem: String, source: String) throws {
        let key: OpaquePointer? = try MemoryBIO.reading(pem, operation: "reading a public key") { bio in
            ERR_clear_error()
            let key = PEM_read_bio_PUBKEY(bio, nil, nil, nil)
            ERR_clear_error()
            return key
        }
        guard let key else { throw PKIError.noPublicKey(source: source) }
        guard let type = PrivateKey.keyType(of: key) else {
            EVP_PKEY_free(key)
            throw PKIError.noPublicKey(source: source)
        }
        pointer = key
        keyType = type
    }

    deinit { EVP_PKEY_free(pointer) }

    /// Whether `signature` is this key's signature of `message`: Ed25519 over the message itself
    /// (`openssl pkeyutl -sign -rawin`), ECDSA P-256 over its SHA-256, DER-encoded
    /// (`openssl dgst -sha256 -sign`). A wrong or malformed signature is `false`, not an error.
    public func verifies(signature: [UInt8], of message: [UInt8]) -> Bool {
        guard let context = EVP_MD_CTX_new() else { return false }
        defer {
            EVP_MD_CTX_free(context)
            ERR_clear_error()
        }
        let digest = keyType == .ed25519 ? nil : EVP_sha256()
        guard EVP_DigestVerifyInit(context, nil, digest, nil, pointer) == 1 else { return false }
        let verdict = signature.withUnsafeBufferPointer { signed in
            message.withUnsafeBufferPointer { text in
                EVP_DigestVerify(context, signed.baseAddress, signed.count, text.baseAddress, text.count)
            }
        }
        return verdict == 1
    }
}
