import COpenSSL
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import UpkeepCore
import UpkeepPOSIX
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A private key held by OpenSSL (an `EVP_PKEY`), freed when the last reference goes.
///
/// Sendable because OpenSSL 3 allows concurrent use of an `EVP_PKEY` for signing and reading;
/// nobody may mutate `pointer`. The key's bytes never appear in a description or log.
public final class PrivateKey: @unchecked Sendable {
    /// The owned `EVP_PKEY *`.
    public let pointer: OpaquePointer

    /// Takes ownership of an `EVP_PKEY *` (no extra reference is taken).
    init(owning pointer: OpaquePointer) {
        self.pointer = pointer
    }

    deinit { EVP_PKEY_free(pointer) }

    /// Reads an unencrypted PEM private key (PKCS#8, SEC1 or PKCS#1) from a file.
    public convenience init(pemFile path: String) throws {
        try self.init(pem: PEMFile.contents(path), source: path)
    }

    /// Parses an unencrypted PEM private key.
    public convenience init(pem: String) throws {
        try self.init(pem: pem, source: "PEM text")
    }

    private convenience init(pem: String, source: String) throws {
        let key: OpaquePointer? = try MemoryBIO.reading(pem, operation: "reading a private key") { bio in
            ERR_clear_error()
            // A callback that refuses every passphrase: OpenSSL must never prompt on a terminal.
            let key = PEM_read_bio_PrivateKey(bio, nil, { _, _, _, _ in 0 }, nil)
            ERR_clear_error()
            return key
        }
        guard let key else { throw PKIError.noPrivateKey(source: source) }
        self.init(owning: key)
    }

    /// Generates a fresh key from OpenSSL's default random generator.
    public static func generate(_ type: KeyType) throws -> PrivateKey {
        let algorithm = type == .ecdsaP256 ? "EC" : "ED25519"
        let operation = "generating an \(type.rawValue) key"
        ERR_clear_error()
        guard let context = EVP_PKEY_CTX_new_from_name(nil, algorithm, nil) else {
            throw OpenSSLError.capture(operation)
        }
        defer { EVP_PKEY_CTX_free(context) }
        guard EVP_PKEY_keygen_init(context) == 1 else { throw OpenSSLError.capture(operation) }
        if type == .ecdsaP256, EVP_PKEY_CTX_set_group_name(context, "P-256") != 1 {
            throw OpenSSLError.capture(operation)
        }
        var key: OpaquePointer?
        guard EVP_PKEY_generate(context, &key) == 1, let key else { throw OpenSSLError.capture(operation) }
        return PrivateKey(owning: key)
    }

    /// The key as unencrypted PKCS#8 PEM ("-----BEGIN PRIVATE KEY-----"). This is secret:
    /// write it only to a file with mode 0600.
    public func pkcs8PEM() throws -> String {
        try MemoryBIO.writing(operation: "encoding the private key as PKCS#8") { bio in
            PEM_write_bio_PrivateKey(bio, pointer, nil, nil, 0, nil, nil) == 1
        }
    }

    /// The key's algorithm when it is one Upkeep generates; nil for anything else (e.g. RSA).
    public var keyType: KeyType? { PrivateKey.keyType(of: pointer) }

    /// The algorithm of any `EVP_PKEY` (a key pair, or a request's public key) when it is one
    /// Upkeep generates; nil for anything else.
    static func keyType(of pointer: OpaquePointer) -> KeyType? {
        if EVP_PKEY_is_a(pointer, "ED25519") == 1 { return .ed25519 }
        guard EVP_PKEY_is_a(pointer, "EC") == 1 else { return nil }
        var name = [CChar](repeating: 0, count: 64)
        var length = 0
        guard EVP_PKEY_get_group_name(pointer, &name, name.count, &length) == 1 else {
            ERR_clear_error()
            return nil
        }
        let group = String(nulTerminated: name)
        return group == "prime256v1" || group == "P-256" ? .ecdsaP256 : nil
    }

    /// The digest to sign with: none for the EdDSA family (they hash internally), SHA-256 otherwise.
    var signingDigest: OpaquePointer? {
        EVP_PKEY_is_a(pointer, "ED25519") == 1 || EVP_PKEY_is_a(pointer, "ED448") == 1 ? nil : EVP_sha256()
    }
}

/// Reads PEM files with typed errors.
enum PEMFile {
    /// PEM files here are a key or a few certificates; anything larger is not one.
    static let bytesMax = 1 << 20

    /// The file's text, read with the C library rather than Foundation's string loading, which
    /// went through CoreFoundation's string code at every agent start for this alone.
    static func contents(_ path: String) throws -> String {
        let bytes: [UInt8]
        do {
            bytes = try BoundedRead.bytes(path, bytesMax: bytesMax)
        } catch {
            switch error {
            case .open(let code), .read(let code): throw unreadable(path, code)
            case .tooLarge: throw PKIError.fileUnreadable(path: path, reason: "larger than \(bytesMax / 1024) KiB; not a PEM key or certificate file")
            }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw PKIError.fileUnreadable(path: path, reason: "not a readable UTF-8 text file")
        }
        return text
    }

    private static func unreadable(_ path: String, _ code: Int32) -> PKIError {
        switch code {
        case ENOENT: .fileUnreadable(path: path, reason: "no such file")
        case EACCES, EPERM: .fileUnreadable(path: path, reason: "permission denied")
        case EISDIR: .fileUnreadable(path: path, reason: "is a directory, not a file")
        default: .fileUnreadable(path: path, reason: String(cString: strerror(code)))
        }
    }
}
