import COpenSSL

/// AES-256-GCM on OpenSSL's EVP interface, one direction per instance, for data that arrives in
/// pieces: authenticate the additional data first, feed the text, then take the tag (sealing) or
/// check it (opening). The controller seals datastore backups with it (docs/backups.md).
///
/// It never draws its own nonce: callers pass a fresh 12-byte nonce from `SecureRandom` for every
/// key and message. Plaintext produced while opening is unauthenticated until `verify(tag:)`
/// answers true; a caller must not let it be used before that.
public final class AES256GCM {
    public static let keyBytes = 32
    public static let nonceBytes = 12
    public static let tagBytes = 16

    public enum Direction: Sendable { case sealing, opening }

    private let context: OpaquePointer
    public let direction: Direction

    /// Fails (with what OpenSSL said) when the key or nonce has the wrong length or the cipher
    /// cannot be set up.
    public init(key: [UInt8], nonce: [UInt8], direction: Direction) throws(AEADError) {
        guard key.count == Self.keyBytes else { throw AEADError("an AES-256-GCM key is \(Self.keyBytes) bytes, not \(key.count)") }
        guard nonce.count == Self.nonceBytes else { throw AEADError("an AES-256-GCM nonce is \(Self.nonceBytes) bytes, not \(nonce.count)") }
        guard let context = EVP_CIPHER_CTX_new() else { throw AEADError("OpenSSL could not make a cipher context") }
        let ok = direction == .sealing
            ? EVP_EncryptInit_ex(context, EVP_aes_256_gcm(), nil, key, nonce)
            : EVP_DecryptInit_ex(context, EVP_aes_256_gcm(), nil, key, nonce)
        guard ok == 1 else {
            EVP_CIPHER_CTX_free(context)
            throw AEADError("OpenSSL could not set up AES-256-GCM")
        }
        self.context = context
        self.direction = direction
    }

    deinit { EVP_CIPHER_CTX_free(context) }

    /// Additional data: authenticated by the tag, not encrypted. Before any `update`.
    public func authenticate(_ bytes: [UInt8]) throws(AEADError) {
        var length: Int32 = 0
        let ok = direction == .sealing
            ? EVP_EncryptUpdate(context, nil, &length, bytes, Int32(bytes.count))
            : EVP_DecryptUpdate(context, nil, &length, bytes, Int32(bytes.count))
        guard ok == 1 else { throw AEADError("OpenSSL refused the additional authenticated data") }
    }

    /// Encrypts (sealing) or decrypts (opening) the next piece; output and input have one length.
    public func update(_ input: [UInt8]) throws(AEADError) -> [UInt8] {
        guard !input.isEmpty else { return [] }
        var output = [UInt8](repeating: 0, count: input.count + Self.tagBytes)
        var length: Int32 = 0
        let ok = direction == .sealing
            ? EVP_EncryptUpdate(context, &output, &length, input, Int32(input.count))
            : EVP_DecryptUpdate(context, &output, &length, input, Int32(input.count))
        guard ok == 1 else { throw AEADError("AES-256-GCM failed") }
        return Array(output.prefix(Int(length)))
    }

    /// Sealing: ends the message and returns its 16-byte tag.
    public func finishTag() throws(AEADError) -> [UInt8] {
        precondition(direction == .sealing, "finishTag() is for sealing; an opening checks the tag with verify(tag:)")
        var rest = [UInt8](repeating: 0, count: Self.tagBytes)
        var length: Int32 = 0
        var tag = [UInt8](repeating: 0, count: Self.tagBytes)
        guard EVP_EncryptFinal_ex(context, &rest, &length) == 1, length == 0,
              EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_AEAD_GET_TAG, Int32(tag.count), &tag) == 1 else {
            throw AEADError("AES-256-GCM could not finish")
        }
        return tag
    }

    /// Opening: true only when `tag` authenticates the additional data and every byte fed.
    public func verify(tag: [UInt8]) -> Bool {
        precondition(direction == .opening, "verify(tag:) is for opening; a sealing ends with finishTag()")
        guard tag.count == Self.tagBytes else { return false }
        var tag = tag
        var rest = [UInt8](repeating: 0, count: Self.tagBytes)
        var length: Int32 = 0
        guard EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_AEAD_SET_TAG, Int32(tag.count), &tag) == 1 else { return false }
        return EVP_DecryptFinal_ex(context, &rest, &length) == 1 && length == 0
    }
}

/// Bytes from OpenSSL's CSPRNG: keys and nonces.
public enum SecureRandom {
    public static func bytes(_ count: Int) throws(AEADError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        guard RAND_bytes(&bytes, Int32(count)) == 1 else { throw AEADError("OpenSSL could not draw \(count) random bytes") }
        return bytes
    }
}

/// Why sealing or opening could not go on; the message names what failed.
public struct AEADError: Error, CustomStringConvertible, Equatable, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
